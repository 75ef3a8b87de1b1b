"""The REST API's blueprint, whose routes declare their OpenAPI operation next to the view.

    @api.operation("GET", "/campaigns/<int:campaign_id>", summary="One campaign",
                   permission="campaigns.view", response=CAMPAIGN)
    def get_campaign(campaign_id: int): ...

registers the route, guards it with `requires(permission)` (or `public` for PUBLIC), checks a
declared `request` body and `query` parameters before the view runs (InvalidInput -> 400 naming
the field), and records the operation that /api/v1/openapi.json is generated from. A route added
any other way makes create_app fail, so the document cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Callable, Mapping

from flask import Blueprint, current_app, g, request

from dashboard.api.schema import REF_PREFIX, coerce_query_value, validate
from dashboard.auth import public, requires
from dashboard.permissions import PUBLIC, roles_with
from farm.errors import InvalidInput

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Operation:
    endpoint: str
    method: str
    rule: str
    summary: str
    permission: str
    response: Schema
    status: int = 200
    request: Schema | None = None
    query: Mapping[str, Schema] = field(default_factory=dict)
    required_query: tuple[str, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = ()
    # What a successful answer is: JSON, or a file (application/zip, image/png) described by `response`.
    content_type: str = "application/json"


class ApiBlueprint(Blueprint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.operations: dict[tuple[str, str], Operation] = {}  # (endpoint, METHOD) -> operation
        self.schemas: dict[str, Schema] = {}

    def schema(self, name: str, schema: Schema) -> Schema:
        """Name a schema (a component of the OpenAPI document); returns a $ref to use in declarations."""
        if name in self.schemas and self.schemas[name] != schema:
            raise ValueError(f"API schema {name} is declared twice, differently")
        self.schemas[name] = schema
        return {"$ref": REF_PREFIX + name}

    def operation(self, method: str, rule: str, *, summary: str, permission: str, response: Schema,
                  status: int = 200, request: Schema | None = None, query: Mapping[str, Schema] | None = None,
                  required_query: tuple[str, ...] = (), description: str = "",
                  tags: tuple[str, ...] = (), content_type: str = "application/json") -> Callable:
        """Declare and register one API operation (one method of one route); see the module docstring.
        Read the checked body with `api_body()` and query parameters with `api_query()`."""
        method = method.upper()
        if permission != PUBLIC:
            roles_with(permission)  # unknown permission names fail here

        def decorator(view: Callable) -> Callable:
            endpoint = f"{self.name}.{view.__name__}"
            operation = Operation(endpoint=endpoint, method=method, rule=rule, summary=summary,
                                  permission=permission, response=response, status=status, request=request,
                                  query=dict(query or {}), required_query=tuple(required_query),
                                  description=description, tags=tuple(tags), content_type=content_type)

            @wraps(view)
            def checked(*args, **kwargs):
                g.api_query = _checked_query(operation, self.schemas)
                if operation.request is not None:
                    g.api_body = _checked_body(operation, self.schemas)
                result = view(*args, **kwargs)
                if current_app.config.get("CHECK_API_RESPONSES"):
                    result = _checked_response(operation, result, self.schemas)
                return result

            guarded = public(checked) if permission == PUBLIC else requires(permission)(checked)
            self.add_url_rule(rule, endpoint=view.__name__, view_func=guarded, methods=[method])
            self.operations[(endpoint, method)] = operation
            return guarded

        return decorator


def _checked_query(operation: Operation, components: Mapping[str, Schema]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, schema in operation.query.items():
        raw = request.args.get(name)
        if raw is None:
            if name in operation.required_query:
                raise InvalidInput(name, "is required")
            if "default" in schema:
                values[name] = schema["default"]
            continue
        value = coerce_query_value(schema, raw, name)
        validate(schema, value, components, name)
        values[name] = value
    return values


def _checked_body(operation: Operation, components: Mapping[str, Schema]) -> Any:
    if not request.is_json:
        raise InvalidInput("body", "must be JSON (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        raise InvalidInput("body", "is not valid JSON")
    validate(operation.request, body, components)
    return body


def _checked_response(operation: Operation, result: Any, components: Mapping[str, Schema]):
    # Tests turn this on (CHECK_API_RESPONSES): every response a test sees matches its declaration.
    response = current_app.make_response(result)
    if response.status_code == operation.status and response.mimetype != operation.content_type:
        raise AssertionError(f"{operation.method} {operation.rule} answered {response.mimetype}, "
                             f"not its declared {operation.content_type}")
    if response.status_code == operation.status and response.is_json:
        try:
            validate(operation.response, response.get_json(), components, "response")
        except InvalidInput as error:
            raise AssertionError(f"{operation.method} {operation.rule} answered outside its declared "
                                 f"response schema: {error}") from None
    return response


def api_body() -> Any:
    """The request's JSON body, already checked against the operation's `request` schema."""
    return g.api_body


def api_query() -> dict[str, Any]:
    """The operation's declared query parameters, converted and checked (defaults filled in)."""
    return g.api_query


api = ApiBlueprint("api", __name__, url_prefix="/api/v1")

ERROR = api.schema("Error", {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string"},
            "field": {"type": "string", "description": "The input the error is about, e.g. `rows[2].product`."},
            "model": {"type": "string", "description": "A license policy refusal: the model refused."},
            "license": {"type": "string", "description": "A license policy refusal: the license whose terms refuse it."},
            "rule": {"type": "string", "description": "A license policy refusal: the rule, e.g. "
                                                      "`commercial_use_forbidden` (farm.licenses.policy.RULES)."},
        },
    }},
})
