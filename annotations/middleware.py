import json
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils.cache import add_never_cache_headers

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


def _wait_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    minutes = (seconds + 59) // 60
    return f"{minutes} minutes"


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: says what happened and when to retry, with Retry-After; the API in its error shape.

    The words are the same whether or not the username belongs to an account, so a lockout confirms nothing.
    """
    from axes.helpers import get_client_username

    from annotations.lockout import client_address, lockout_for

    username = get_client_username(request, credentials or getattr(request, "axes_credentials", None)) or ""
    address = getattr(request, "axes_ip_address", None) or client_address(request)
    lockout = lockout_for(username=str(username), ip_address=address)
    retry_after = lockout.retry_after_seconds if lockout else settings.LOCKOUT_FIRST_DELAY_SECONDS
    message = (
        f"Too many failed logins for this username from your network. Logins for it from here are paused; "
        f"try again in {_wait_words(retry_after)}."
    )
    if request.path.startswith(API_PREFIX):
        response = api_error(429, "locked_out", message, {"retry_after_seconds": retry_after})
    else:
        context = {"wait": _wait_words(retry_after), "retry_at": lockout.until if lockout else None}
        response = render(request, "accounts/locked_out.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response


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


# A NUL written as a JSON escape (an odd run of backslashes, then u0000): it becomes NUL once decoded.
_JSON_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_JSON_NUL_ESCAPE_BYTES = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_nul(text: str) -> bool:
    return "\x00" in text or _JSON_NUL_ESCAPE.search(text) is not None


def _nested_too_deep(text: str | bytes) -> bool:
    """Whether JSON text nests deeper than the parser can follow (it raises RecursionError, not ValueError)."""
    try:
        json.loads(text)
    except RecursionError:
        return True
    except ValueError:
        return False  # malformed or not JSON at all: the view answers that itself
    return False


def _bad_input_problem(request: HttpRequest) -> tuple[int, str] | None:
    if _has_nul(request.path):
        return 400, "The address contains a NUL character."
    for key, values in request.GET.lists():
        if _has_nul(key) or any(_has_nul(value) for value in values):
            return 400, f"The query parameter {key.replace(chr(0), '')!r} contains a NUL character."
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, "The Content-Length header is not a number."
    if length > settings.MAX_UPLOAD_BYTES:
        return 413, f"The upload is {filesizeformat(length)}; the limit is {filesizeformat(settings.MAX_UPLOAD_BYTES)}."
    if not length:
        return None
    content_type = request.content_type or ""
    if content_type in _FORM_CONTENT_TYPES:
        if request.method == "POST":
            form = request.POST
        elif content_type == "application/x-www-form-urlencoded":
            form = QueryDict(request.body, encoding=request.encoding)  # DRF parses PUT and PATCH forms too
        else:
            return None
        for key, values in form.lists():
            if _has_nul(key) or any(_has_nul(value) for value in values):
                return 400, f"The form field {key.replace(chr(0), '')!r} contains a NUL character."
            if any(value.lstrip()[:1] in ("[", "{") and _nested_too_deep(value) for value in values):
                return 400, f"The form field {key!r} holds JSON nested too deeply."
        for key, upload in request.FILES.items():
            if _has_nul(key) or _has_nul(upload.name or ""):
                return 400, "An uploaded file's name contains a NUL character."
        return None
    body = request.body
    if b"\x00" in body or _JSON_NUL_ESCAPE_BYTES.search(body):
        return 400, "The request body contains a NUL character."
    if content_type.endswith("json") and _nested_too_deep(body):
        return 400, "The request body holds JSON nested too deeply."
    return None


class BadInputMiddleware:
    """Refuses, once for every view, input the database cannot store or the server must not take: NUL
    characters (raw or as a JSON escape) in the address, the query, form fields or the body; JSON nested
    beyond the parser's depth; bodies over MAX_UPLOAD_BYTES. A 400 (413 for size) page, or the API's error shape."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = _bad_input_problem(request)
        if problem is None:
            return self.get_response(request)
        status, message = problem
        if request.path.startswith("/api/"):
            return api_error(status, "bad_input" if status == 400 else "too_large", message)
        return render(request, "bad_input.html", {"message": message}, status=status)


class NoStoreMiddleware:
    """Cache-Control: no-store on every response the application makes (static files are served before it).

    Pair pages, the pair API, reports, exports and job artifacts carry clinical text; one rule for all of them,
    rather than a list of views, so a new page cannot forget it. Browsers and proxies keep no copy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        add_never_cache_headers(response)
        return response
