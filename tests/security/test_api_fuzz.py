"""Property-based fuzzing of every operation in /api/schema/ (schemathesis, in-process against the WSGI app).

As an authenticated researcher (token), each operation gets a bounded number of generated requests; every
response must not be a server error and must match the schema (status code documented, content type, body).
Path slugs point at the researcher's own study so requests reach real code rather than stopping at 404.
"""

import os
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from annotations.services.accounts import api_token_issue
from evalplatform.wsgi import application

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "10"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@contextmanager
def connection_kept_open():
    """Like Django's test client: the WSGI app must not close the test's database connection (and its
    transaction) at the end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db
def test_every_api_operation_survives_generated_requests(world):
    with connection_kept_open():
        _fuzz(world)


def _fuzz(world) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    fixed_path_values = {"slug": world.study.slug, "username": world.clinician.username}
    failures: list[str] = []
    operations = 0
    statuses: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def exercise(case):
            for name, value in fixed_path_values.items():
                if case.path_parameters and name in case.path_parameters:
                    case.path_parameters[name] = value
            # DELETE /me/token revokes the token sending it, so issue a fresh one for every request.
            _, key = api_token_issue(user=world.researcher)
            response = case.call_and_validate(headers={"Authorization": f"Token {key}"}, checks=CHECKS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert operations >= 10, "The schema lists suspiciously few operations."
    # Requests must reach the views, not stop at authentication: most answers are successes or input errors.
    assert sum(statuses.values()) >= operations, statuses
    assert statuses.get(401, 0) == 0, f"The token was refused: {statuses}"
    print(f"fuzzed {operations} operations, statuses {sorted(statuses.items())}")
    assert not failures, "\n\n".join(failures)
