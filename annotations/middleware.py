import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse


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
                        {"error": {"code": "session_expired", "message": "Session expired."}}, status=401
                    )
                return redirect_to_login(request.get_full_path())
            # Writing the session on every request is cheap next to the page itself, but skip it within a minute.
            if last_seen is None or now - last_seen > 60:
                request.session[self.session_key] = now
        return self.get_response(request)
