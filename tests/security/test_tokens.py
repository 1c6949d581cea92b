"""API tokens: shown once and stored as SHA-256 only, expiring, revocable from the user's page and the API, and
noting when they were last used without a write per request."""

import hashlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotations.models import ApiToken, AuditEvent
from annotations.services.accounts import api_token_issue
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _bearer(key: str) -> Client:
    return Client(headers={"Authorization": f"Token {key}"})


def _session(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_a_token_is_stored_only_as_its_sha256(researcher, settings):
    response = Client().post("/api/v1/auth/token", {"username": researcher.username, "password": PASSWORD})
    key = response.json()["token"]
    token = ApiToken.objects.get(user=researcher)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(token.prefix) and len(token.prefix) < len(key) // 4
    stored = [str(value) for value in ApiToken.objects.values_list().get()]
    assert not any(key in value for value in stored)
    assert not any(key in str(event.data) for event in AuditEvent.objects.all())
    expected_expiry = timezone.now() + timedelta(days=settings.API_TOKEN_DAYS)
    assert abs((token.expires_at - expected_expiry).total_seconds()) < 60
    assert _bearer(key).get("/api/v1/me").json()["username"] == researcher.username


def test_an_expired_token_is_refused(researcher):
    token, key = api_token_issue(user=researcher)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = _bearer(key).get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "authentication_failed"


def test_last_use_is_noted_at_most_once_a_minute(researcher):
    token, key = api_token_issue(user=researcher)
    client = _bearer(key)
    client.get("/api/v1/me")
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    client.get("/api/v1/me")
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/me")
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_my_account_page_shows_a_new_key_once_lists_tokens_and_revokes_one(researcher):
    page = _session(researcher)
    response = page.post("/accounts/me/tokens/new", {"name": "notebook"}, follow=True)
    token = ApiToken.objects.get(user=researcher)
    html = response.content.decode()
    key = html.split('class="token-key" readonly value="', 1)[1].split('"', 1)[0]
    assert hashlib.sha256(key.encode()).hexdigest() == token.key_hash
    again = page.get("/accounts/me/").content.decode()
    assert key not in again and f"{token.prefix}…" in again and "notebook" in again
    assert _bearer(key).get("/api/v1/me").status_code == 200

    page.post(f"/accounts/me/tokens/{token.pk}/revoke")
    assert _bearer(key).get("/api/v1/me").status_code == 401
    assert AuditEvent.objects.filter(action="auth.token_revoke", actor=researcher).count() == 1


def test_nobody_revokes_another_users_token(researcher, other_researcher):
    token, key = api_token_issue(user=researcher)
    intruder = _session(other_researcher)
    assert intruder.post(f"/accounts/me/tokens/{token.pk}/revoke").status_code == 404
    assert intruder.delete(f"/api/v1/me/tokens/{token.pk}").status_code == 404
    assert _bearer(key).get("/api/v1/me").status_code == 200


def test_the_api_lists_issues_and_revokes_tokens_without_showing_stored_keys(researcher):
    _, key = api_token_issue(user=researcher, name="first")
    client = _bearer(key)
    created = client.post("/api/v1/me/tokens", {"name": "second", "days": 7}, content_type="application/json")
    assert created.status_code == 201
    second_key = created.json()["token"]
    listed = client.get("/api/v1/me/tokens").json()["results"]
    assert {row["name"] for row in listed} == {"first", "second"}
    assert all("token" not in row for row in listed)
    second = ApiToken.objects.get(name="second")
    assert (second.expires_at - timezone.now()).days == 6

    assert client.delete(f"/api/v1/me/tokens/{second.pk}").status_code == 204
    assert _bearer(second_key).get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me").status_code == 200  # the other token still works


def test_delete_me_token_revokes_only_the_token_sending_it(researcher):
    _, kept = api_token_issue(user=researcher)
    _, used = api_token_issue(user=researcher)
    assert _bearer(used).delete("/api/v1/me/token").status_code == 204
    assert _bearer(used).get("/api/v1/me").status_code == 401
    assert _bearer(kept).get("/api/v1/me").status_code == 200
