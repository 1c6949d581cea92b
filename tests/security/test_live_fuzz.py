"""Schemathesis against a live server (pytest-django's live_server: real HTTP, real threads, committed data),
as a researcher and as a clinician, each logged in by session cookie with the CSRF header, as the browser is.

Every operation in /api/schema/ gets a few generated requests, valid and invalid by the schema; any 5xx fails.
Bounded in time: FUZZ_LIVE_EXAMPLES examples per operation and mode (default 2) keeps the run near a minute on
two cores. Complements test_api_fuzz.py (in-process, token, full schema conformance checks).
"""

import os
import time

import pytest
import requests
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

EXAMPLES = int(os.environ.get("FUZZ_LIVE_EXAMPLES", "2"))
TIME_LIMIT_SECONDS = 240  # a safety net far above the measured time: a hang must fail, not stall make test


def _session_for(user, base_url: str) -> requests.Session:
    """A requests session carrying the user's Django session cookie and a CSRF token, as a logged-in browser."""
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    session.get(f"{base_url}/accounts/login/", timeout=30)  # sets the csrftoken cookie
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    session.headers["Referer"] = base_url + "/"
    return session


def _fuzz_as(user, world, base_url: str, schema) -> tuple[list[str], dict[int, int], int]:
    session = _session_for(user, base_url)
    fixed_path_values = {"slug": world.study.slug, "username": world.clinician.username}
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Invalid input needs something to make invalid: a body or a query (path slugs are fixed above).
        negatable = len(operation.body) > 0 or len(operation.query) > 0
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if negatable else (GenerationMode.POSITIVE,)
        for mode in modes:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case):
                for name, value in fixed_path_values.items():
                    if case.path_parameters and name in case.path_parameters:
                        case.path_parameters[name] = value
                response = case.call_and_validate(
                    base_url=base_url, session=session, checks=[not_a_server_error], timeout=30
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            try:
                exercise()
            except Unsatisfiable:
                pass  # the schema leaves no invalid request to make for this operation
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them together
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
        assert time.monotonic() - started < TIME_LIMIT_SECONDS, f"fuzzing took over {TIME_LIMIT_SECONDS} s"
    return failures, statuses, operations


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ["researcher", "clinician"])
def test_no_api_operation_answers_a_server_error_on_a_live_server(live_server, world, persona):
    client = Client()
    client.force_login(world.researcher, backend="django.contrib.auth.backends.ModelBackend")
    schema = schemathesis.openapi.from_dict(client.get("/api/schema/?format=json").json())
    started = time.monotonic()
    failures, statuses, operations = _fuzz_as(world.user(persona), world, live_server.url, schema)
    print(
        f"{persona}: {operations} operations, {sum(statuses.values())} requests in {time.monotonic() - started:.1f} s"
    )
    print(f"statuses {sorted(statuses.items())}")
    assert operations >= 10, "The schema lists suspiciously few operations."
    assert statuses.get(401, 0) < sum(statuses.values()) / 2, f"The session was refused: {statuses}"
    assert not failures, "\n\n".join(failures)


@pytest.mark.django_db(transaction=True)
def test_the_requests_that_once_answered_500_answer_4xx_over_http(live_server, world):
    """The fault probe's seven causes, replayed over real HTTP (the generator above rarely hits them)."""
    base = live_server.url
    anonymous = requests.Session()
    researcher = _session_for(world.researcher, base)
    clinician = _session_for(world.clinician, base)
    pair = f"{base}/api/v1/workspace/pairs/{world.assignment.public_id}/draft"
    answers = {
        "NUL in a path": anonymous.get(f"{base}/invitations/%00/", timeout=30),
        "NUL in a form": researcher.post(f"{base}/studies/", data={"slug": "x", "title": "a\x00b"}, timeout=30),
        "NUL in a draft": clinician.put(pair, json={"draft": {"note": "a\x00b"}}, timeout=30),
        "deep JSON": clinician.put(
            pair,
            data='{"draft": ' + "[" * 100_000 + "]" * 100_000 + "}",
            timeout=30,
            headers={"Content-Type": "application/json"},
        ),
        "huge limit": researcher.get(f"{base}/api/v1/studies/", params={"limit": 2**64}, timeout=30),
        "huge quota": researcher.post(
            f"{base}/api/v1/studies/{world.study.slug}/clinicians",
            json={"username": world.other_clinician.username, "quota": 2**31},
            timeout=30,
        ),
        "gold as a list": researcher.post(
            f"{base}/studies/{world.study.slug}/gold",
            data={"comparison": world.comparison.pk, "expected": "[1]"},
            timeout=30,
        ),
        "negative seed": researcher.get(f"{base}/api/v1/studies/{world.study.slug}/report?seed=-1", timeout=30),
        "taken slug": researcher.post(
            f"{base}/api/v1/studies/", json={"slug": world.study.slug, "title": "T"}, timeout=30
        ),
    }
    server_errors = {cause: r.status_code for cause, r in answers.items() if r.status_code >= 500}
    assert not server_errors, server_errors
    assert answers["taken slug"].status_code == 409
