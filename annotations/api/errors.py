"""One error shape for the whole API: {"error": {"code": ..., "message": ..., "details": ...}}."""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from annotations.views.common import error_dict


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    # DRF turns Django's Http404 and PermissionDenied into its own exceptions for the response, not for `exc`.
    if isinstance(exc, Http404):
        code = "not_found"
    elif isinstance(exc, DjangoPermissionDenied):
        code = "permission_denied"
    else:
        code = getattr(exc, "default_code", "error")
    detail = response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        message, details = str(detail["detail"]), None
    else:
        message, details = "Invalid input.", detail
    response.data = {"error": {"code": code, "message": message, "details": details}}
    return response


_ERROR_COMPONENT = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"nullable": True},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}
_ERROR_STATUSES = {
    "400": "Invalid input; details maps each field to its errors.",
    "401": "Not authenticated, or the session expired.",
    "403": "Authenticated but not allowed (or a CSRF failure on a session-authenticated write).",
    "404": "No such object, or not visible to you.",
    "405": "Method not allowed.",
    "429": "Throttled or locked out.",
}


def document_error_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents the one error shape for its error statuses."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = _ERROR_COMPONENT
    reference = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status_code, description in _ERROR_STATUSES.items():
                operation["responses"].setdefault(
                    status_code,
                    {"description": description, "content": {"application/json": {"schema": reference}}},
                )
    return result


def api_validation_error(exc: DjangoValidationError, key: str = "non_field_errors") -> ValidationError:
    """A service's ValidationError as the API's 400: per-field messages, or all of them under `key`."""
    return ValidationError(error_dict(exc, key))
