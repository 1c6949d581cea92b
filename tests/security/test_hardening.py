"""CSRF on session writes, axes lockout, failed-login audit without passwords, headers, one error shape,
idle timeout, and an API docs page that covers every API route."""

import logging
import time

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from annotations.models import ApiToken, AuditEvent
from annotations.services.accounts import api_token_issue
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
WRONG = "definitely-not-the-password-81"


def test_session_authenticated_api_write_needs_a_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.researcher, backend="django.contrib.auth.backends.ModelBackend")
    url = f"/api/v1/studies/{world.study.slug}/members"
    body = {"username": world.other_clinician.username, "role": "clinician"}

    refused = client.post(url, body, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in refused.json()["error"]["message"]

    client.get("/accounts/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(url, body, content_type="application/json", headers={"X-CSRFToken": token})
    assert accepted.status_code == 200


def test_token_authenticated_write_needs_no_csrf_token(world):
    _, key = api_token_issue(user=world.researcher)
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        f"/api/v1/studies/{world.study.slug}/members",
        {"username": world.other_clinician.username, "role": "clinician"},
        content_type="application/json",
        headers={"Authorization": f"Token {key}"},
    )
    assert response.status_code == 200


def test_html_form_post_without_csrf_token_is_refused(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.researcher, backend="django.contrib.auth.backends.ModelBackend")
    response = client.post(f"/studies/{world.study.slug}/close")
    assert response.status_code == 403
    world.study.refresh_from_db()
    assert world.study.status != "closed"


def test_repeated_failed_logins_lock_the_account_and_are_audited_without_passwords(researcher, caplog):
    client = Client()
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        client.post("/accounts/login/", {"username": researcher.username, "password": WRONG})
    locked = client.post("/accounts/login/", {"username": researcher.username, "password": PASSWORD})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session

    failed = AuditEvent.objects.filter(action="auth.login_failed")
    assert failed.count() == 6  # five wrong passwords and the refused right one
    assert all(event.data["username"] == researcher.username for event in failed)
    assert AuditEvent.objects.filter(action="auth.locked_out").exists()
    everything_recorded = " ".join(str(e.data) for e in AuditEvent.objects.all()) + caplog.text
    assert WRONG not in everything_recorded
    assert PASSWORD not in everything_recorded


def test_token_endpoint_locks_out_in_the_api_error_shape(researcher):
    client = Client()
    for _ in range(5):
        client.post("/api/v1/auth/token", {"username": researcher.username, "password": WRONG})
    response = client.post("/api/v1/auth/token", {"username": researcher.username, "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "locked_out"
    assert not ApiToken.objects.filter(user=researcher).exists()


def test_token_endpoint_issues_a_working_token_and_is_throttled(researcher):
    client = Client()
    response = client.post("/api/v1/auth/token", {"username": researcher.username, "password": PASSWORD})
    assert response.status_code == 200
    key = response.json()["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Token {key}"})
    assert me.json()["username"] == researcher.username
    assert AuditEvent.objects.filter(action="auth.token_issue", actor=researcher).count() == 1

    statuses = [
        client.post("/api/v1/auth/token", {"username": researcher.username, "password": PASSWORD}).status_code
        for _ in range(25)
    ]
    assert statuses[-1] == 429  # AUTH_THROTTLE_RATE (20/min) per client address
    assert client.post("/api/v1/auth/token", {}).json()["error"]["code"] == "throttled"


def test_revoked_token_is_refused(researcher):
    _, key = api_token_issue(user=researcher)
    client = Client(headers={"Authorization": f"Token {key}"})
    assert client.delete("/api/v1/me/token").status_code == 204
    refused = client.get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "authentication_failed"


def test_pages_carry_security_headers(client):
    response = client.get("/accounts/login/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/v1/no-such-endpoint", 404, "not_found"),
        ("get", "/api/v1/me", 401, "not_authenticated"),
        ("put", "/api/v1/me", 405, "method_not_allowed"),
        ("get", "/api/v1/studies/no-such-study/", 404, "not_found"),
    ],
)
def test_api_errors_have_one_shape(researcher, method, path, status, code):
    client = Client()
    if status != 401:
        client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    response = getattr(client, method)(path)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code


def test_idle_session_is_logged_out(clinician, settings):
    client = Client()
    client.force_login(clinician, backend="django.contrib.auth.backends.ModelBackend")
    assert client.get("/api/v1/me").status_code == 200
    session = client.session
    session["last_seen"] = time.time() - settings.IDLE_TIMEOUT_SECONDS - 5
    session.save()
    expired = client.get("/api/v1/me")
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "session_expired"
    assert client.get("/api/v1/me").status_code == 401  # the session really ended


def _api_routes():
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern)

    return [route for route in walk(get_resolver().url_patterns) if route.startswith("api/v1/")]


def _as_openapi_path(route: str) -> str:
    import re

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def test_docs_page_and_schema_cover_every_api_route(client):
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "<script>" not in html  # the split view keeps Swagger UI's setup in a file, inside the CSP
    assert "/api/schema/" in client.get("/api/docs/?script").content.decode()

    schema = client.get("/api/schema/?format=json").json()
    documented = set(schema["paths"])
    missing = sorted(_as_openapi_path(route) for route in _api_routes() if _as_openapi_path(route) not in documented)
    assert not missing, f"API routes missing from the schema (and so from /api/docs/): {missing}"
    for path_item in schema["paths"].values():
        for method, operation in path_item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                assert "404" in operation["responses"] and "400" in operation["responses"]
