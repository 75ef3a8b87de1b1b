"""A small JSON Schema checker for API bodies and query strings: the subset our declarations use.

Supported: type (one or a list), enum, const, properties, required, additionalProperties (false
or a schema), items, minItems, maxItems, minLength, maxLength, pattern, minimum, maximum,
anyOf, and $ref to "#/components/schemas/Name". Anything else in a schema is documentation only.
Errors are farm.errors.InvalidInput naming the field by its path, such as `rows[2].product`.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from farm.errors import InvalidInput

REF_PREFIX = "#/components/schemas/"

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    # JSON has no separate booleans-as-integers; Python does, so keep them apart.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def validate(schema: Mapping[str, Any], value: Any, components: Mapping[str, Any], path: str = "") -> None:
    """Raise InvalidInput(path, reason) at the first place `value` does not fit `schema`."""
    field = path or "body"
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith(REF_PREFIX) or ref[len(REF_PREFIX):] not in components:
            raise KeyError(f"unknown schema reference {ref}")
        validate(components[ref[len(REF_PREFIX):]], value, components, path)
        return
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            try:
                validate(option, value, components, path)
                return
            except InvalidInput:
                continue
        raise InvalidInput(field, "does not match any of the accepted forms")
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_TYPE_CHECKS[t](value) for t in types):
            raise InvalidInput(field, f"must be {' or '.join(types)}")
    if "const" in schema and value != schema["const"]:
        raise InvalidInput(field, f"must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidInput(field, f"must be one of: {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise InvalidInput(field, "is required" if not value else f"must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidInput(field, f"must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise InvalidInput(field, f"must match {schema['pattern']}")
    if _TYPE_CHECKS["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidInput(field, f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidInput(field, f"must be at most {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise InvalidInput(field, f"needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidInput(field, f"takes at most {schema['maxItems']} items")
        if "items" in schema:
            for index, item in enumerate(value):
                validate(schema["items"], item, components, _join(path, index))
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                raise InvalidInput(_join(path, name), "is required")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                validate(properties[name], item, components, _join(path, name))
            elif extra is False:
                raise InvalidInput(_join(path, name), "is not a field of this request")
            elif isinstance(extra, Mapping):
                validate(extra, item, components, _join(path, name))


def coerce_query_value(schema: Mapping[str, Any], raw: str, field: str) -> Any:
    """A query-string value converted to the declared scalar type (then checked by `validate`)."""
    kind = schema.get("type", "string")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        raise InvalidInput(field, f"must be {'an integer' if kind == 'integer' else 'a number'}") from None
    if kind == "boolean":
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise InvalidInput(field, "must be true or false")
    return raw
