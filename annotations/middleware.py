import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

API_PREFIX = "/api/v1/"

# Codes for error responses made outside DRF (URL not found, Django's 500 page, lockouts), same shape as DRF's.
_STATUS_CODES = {
    400: ("bad_request", "Bad request."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("too_large", "Request body too large."),
    429: ("throttled", "Too many requests."),
    500: ("server_error", "Server error."),
}


def api_error(status: int, code: str | None = None, message: str | None = None, details=None) -> JsonResponse:
    """The API's one error shape, for responses made outside DRF's exception handler."""
    default_code, default_message = _STATUS_CODES.get(status, ("error", "Error."))
    return JsonResponse(
        {"error": {"code": code or default_code, "message": message or default_message, "details": details}},
        status=status,
    )


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the API answers in its error shape; the login page says the account is locked."""
    if request.path.startswith(API_PREFIX):
        return api_error(429, "locked_out", "Too many failed logins; this account is locked for a while.")
    return render(request, "accounts/locked_out.html", status=429)


class ApiErrorShapeMiddleware:
    """Gives non-DRF error responses under /api/v1/ (404 for unknown URLs, 500 pages) the API's one error shape."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            shaped = api_error(response.status_code)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    shaped[header] = response[header]
            return shaped
        return response


class ContentSecurityPolicyMiddleware:
    """Sends the Content-Security-Policy header: scripts and styles come from our own origin only."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


class IdleTimeoutMiddleware:
    """Ends a browser session after IDLE_TIMEOUT_SECONDS without a request (clinical data on shared screens)."""

    session_key = "last_seen"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session") and request.session.session_key:
            now = time.time()
            last_seen = request.session.get(self.session_key)
            if last_seen is not None and now - last_seen > settings.IDLE_TIMEOUT_SECONDS:
                logout(request)
                if request.path.startswith("/api/"):
                    return JsonResponse(
                        {"error": {"code": "session_expired", "message": "Session expired.", "details": None}},
                        status=401,
                    )
                return redirect_to_login(request.get_full_path())
            # Writing the session on every request is cheap next to the page itself, but skip it within a minute.
            if last_seen is None or now - last_seen > 60:
                request.session[self.session_key] = now
        return self.get_response(request)
