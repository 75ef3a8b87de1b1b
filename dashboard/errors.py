"""Errors as pages for people and as JSON for the API (everything under /api/).

JSON errors look like {"error": {"message": "...", "field": "..."}}: `field` is there when the
error is about one input (farm.errors.InvalidInput), so a client can point at it. A license
policy refusal adds `model`, `license` and `rule`.
"""

from __future__ import annotations

from flask import Flask, jsonify, render_template
from werkzeug.exceptions import HTTPException, InternalServerError

from dashboard.helpers import is_api_request
from farm.errors import InvalidInput, NotFound
from farm.licenses.policy import PolicyRefused

PAGE_MESSAGES = {
    401: "Please sign in.",
    403: "Your role does not allow this. Ask an admin if you need it.",
    404: "There is nothing here.",
    405: "This address does not accept that kind of request.",
    413: "That upload is too large.",
}
API_MESSAGES = {
    401: "A valid API token is required: Authorization: Bearer <token>.",
    403: "This token's user lacks the permission this operation requires.",
}


def _json_error(status: int, message: str, field: str | None = None, **details: str):
    error = {"message": message}
    if field is not None:
        error["field"] = field
    error.update(details)
    response = jsonify({"error": error})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="farm"'
    return response


def _page_error(status: int, title: str, message: str):
    return render_template("error.html", status=status, title=title, message=message), status


def _http_error(error: HTTPException):
    status = error.code or 500
    if is_api_request():
        message = API_MESSAGES.get(status, error.description)
        response = _json_error(status, message)
        if status == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response
    custom = error.description != type(error).description
    message = error.description if custom else PAGE_MESSAGES.get(status, error.description)
    return _page_error(status, error.name, message)


def _policy_details(error: InvalidInput) -> dict[str, str]:
    """A license policy refusal also names the model, its license and the rule, apart."""
    if isinstance(error, PolicyRefused):
        refusal = error.decision.refusal
        return {"model": refusal.model, "license": refusal.license, "rule": refusal.rule}
    return {}


def _invalid_input(error: InvalidInput):
    if is_api_request():
        return _json_error(400, error.message, error.field, **_policy_details(error))
    return _page_error(400, "Bad input", f"{error.field}: {error.message}")


def _not_found(error: NotFound):
    message = f"No {error.what} {error.key}."
    if is_api_request():
        return _json_error(404, message)
    return _page_error(404, "Not found", message)


def _internal_error(error: InternalServerError):
    # Reached for unhandled exceptions when they do not propagate (production; tests propagate).
    message = "Something went wrong on our side; it has been logged."
    if is_api_request():
        return _json_error(500, message)
    return _page_error(500, "Server error", message)


def init_errors(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InvalidInput, _invalid_input)
    app.register_error_handler(NotFound, _not_found)
    app.register_error_handler(InternalServerError, _internal_error)
