"""API: its own description."""

from __future__ import annotations

from flask import current_app

from dashboard.api.blueprint import api
from dashboard.api.openapi import openapi_document
from dashboard.permissions import PUBLIC


@api.operation("GET", "/openapi.json", summary="This API's OpenAPI 3.1 document", permission=PUBLIC,
               response={"type": "object", "required": ["openapi", "paths"]}, tags=("meta",))
def openapi_json():
    return openapi_document(current_app)
