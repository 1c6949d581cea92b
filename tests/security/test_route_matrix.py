"""Every URL route × every persona answers the status in route_matrix.ROUTES; clinicians never see a system name.

The routes come from the URL configuration itself, so a new route without a matrix entry fails here.
"""

import json

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.security.conftest import OTHER_SYSTEM_NAME, SYSTEM_NAME
from tests.security.route_matrix import CLINICIAN_PERSONAS, PERSONAS, ROUTES, Check, Skip

SKIPPED_PREFIXES = ("admin/",)  # Django's admin has its own staff-only permission checks


def _walk(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name


def routes_in_urlconf() -> dict[str, str]:
    """URL name -> route, for every route outside the skipped prefixes. Unnamed routes map from their route."""
    found = {}
    for route, name in _walk(get_resolver().url_patterns):
        if route.startswith(SKIPPED_PREFIXES):
            continue
        found[name or f"<unnamed {route}>"] = route
    return found


def test_every_route_has_a_matrix_entry():
    missing = sorted(set(routes_in_urlconf()) - set(ROUTES))
    assert not missing, f"Add these routes to tests/security/route_matrix.py (name them if unnamed): {missing}"


def test_every_matrix_entry_is_a_route():
    stale = sorted(set(ROUTES) - set(routes_in_urlconf()))
    assert not stale, f"These matrix entries name no route any more: {stale}"


def _request(client: Client, check: Check, url: str, data):
    is_api = url.startswith("/api/v1/")
    method = check.method.lower()
    if method == "get":
        return client.get(url, check.query)
    if is_api:
        body = json.dumps(data) if data is not None else ""
        return client.generic(method.upper(), url, body, content_type="application/json")
    return client.generic(
        method.upper(),
        url,
        "&".join(f"{k}={v}" for k, v in (data or {}).items()),
        content_type="application/x-www-form-urlencoded",
    )


def _body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_route_permissions(name, world):
    entry = ROUTES[name]
    if isinstance(entry, Skip):
        pytest.skip(entry.reason)
    mismatches, leaks = [], []
    for check in entry:
        url = reverse(name, kwargs=check.kwargs(world) if check.kwargs else None)
        data = check.data(world) if callable(check.data) else check.data
        for persona in PERSONAS:
            client = Client()
            user = world.user(persona)
            if user is not None:
                client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
            response = _request(client, check, url, data)
            wanted = check.expect[persona]
            allowed = wanted if isinstance(wanted, tuple) else (wanted,)
            if response.status_code not in allowed:
                mismatches.append(
                    f"{check.method.upper()} {url} as {persona}: {response.status_code}, expected {wanted}"
                )
            if persona in CLINICIAN_PERSONAS:
                body = _body(response)
                for system_name in (SYSTEM_NAME, OTHER_SYSTEM_NAME):
                    if system_name in body:
                        leaks.append(f"{check.method.upper()} {url} as {persona} shows system {system_name!r}")
    assert not leaks, "Blinding broken:\n" + "\n".join(leaks)
    assert not mismatches, "\n".join(mismatches)
