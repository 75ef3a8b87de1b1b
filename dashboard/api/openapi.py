"""The OpenAPI 3.1 document, generated from the operations the API's routes declare."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from dashboard.api.blueprint import ERROR, ApiBlueprint, Operation
from dashboard.permissions import PUBLIC, SIGNED_IN, roles_with

_RULE_VARIABLE = re.compile(r"<(?:(?P<converter>[a-zA-Z_]\w*)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_]\w*)>")
_CONVERTER_TYPES = {"int": "integer", "float": "number"}
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})


def openapi_path(rule: str) -> str:
    """/api/v1/jobs/<int:job_id> -> /api/v1/jobs/{job_id}"""
    return _RULE_VARIABLE.sub(lambda m: "{" + m["name"] + "}", rule)


def api_blueprints(app: Flask) -> list[ApiBlueprint]:
    return [bp for bp in app.blueprints.values() if isinstance(bp, ApiBlueprint)]


def api_routes(app: Flask):
    """Every (werkzeug rule, method, operation or None) the app serves under an ApiBlueprint."""
    operations = {key: op for bp in api_blueprints(app) for key, op in bp.operations.items()}
    api_names = {bp.name for bp in api_blueprints(app)}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in api_names:
            continue
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            yield rule, method, operations.get((rule.endpoint, method))


def undeclared_api_routes(app: Flask) -> list[str]:
    return [f"{method} {rule.rule}" for rule, method, operation in api_routes(app) if operation is None]


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _operation_object(rule_text: str, operation: Operation) -> dict[str, Any]:
    parameters = [
        {"name": m["name"], "in": "path", "required": True,
         "schema": {"type": _CONVERTER_TYPES.get(m["converter"] or "", "string")}}
        for m in _RULE_VARIABLE.finditer(rule_text)
    ]
    parameters += [
        {"name": name, "in": "query", "required": name in operation.required_query, "schema": dict(schema)}
        for name, schema in operation.query.items()
    ]
    responses: dict[str, Any] = {
        str(operation.status): {"description": operation.summary,
                                "content": {operation.content_type: {"schema": dict(operation.response)}}},
    }
    if parameters or operation.request is not None:
        responses["400"] = _error_response("Bad input; `error.field` names it")
    if operation.permission != PUBLIC:
        responses["401"] = _error_response("No valid bearer token")
    if operation.permission not in (PUBLIC, SIGNED_IN):
        responses["403"] = _error_response("The token's user lacks the permission")
    if any(p["in"] == "path" for p in parameters):
        responses["404"] = _error_response("Not found, or not visible to this user")
    result: dict[str, Any] = {
        "operationId": operation.endpoint.split(".", 1)[1],
        "summary": operation.summary,
        "responses": responses,
        "x-permission": operation.permission,
    }
    if operation.description:
        result["description"] = operation.description
    if operation.tags:
        result["tags"] = list(operation.tags)
    if parameters:
        result["parameters"] = parameters
    if operation.request is not None:
        result["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(operation.request)}}}
    if operation.permission == PUBLIC:
        result["security"] = []
    else:
        result["x-roles"] = sorted(roles_with(operation.permission))
    return result


def openapi_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for bp in api_blueprints(app):
        schemas.update(bp.schemas)
    for rule, method, operation in api_routes(app):
        if operation is None:
            raise RuntimeError(f"{method} {rule.rule} has no OpenAPI declaration (use api.operation)")
        paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = _operation_object(rule.rule, operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Render farm API",
            "version": "1",
            "description": "JSON in and out. Authenticate with `Authorization: Bearer <token>` "
                           "(`farm users create NAME --role ROLE --token`). Errors are "
                           "{\"error\": {\"message\": ..., \"field\": ...}}.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
