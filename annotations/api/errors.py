"""One error shape for the whole API: {"error": {"code": ..., "message": ..., "details": ...}}."""

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = getattr(exc, "default_code", "error")
    detail = response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        message, details = str(detail["detail"]), None
    else:
        message, details = "Invalid input.", detail
    response.data = {"error": {"code": code, "message": message, "details": details}}
    return response
