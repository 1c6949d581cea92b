"""Claiming the next pair for a rater with 10,000 submitted pairs against one with 10, in the same study: the
side balance reads two SideBalance counter rows, so the claim's time should not grow with the history. Printed:
median claim time for each and their ratio, and the statements per claim. A benchmark, not part of `make test`:

    .venv/bin/pytest bench/side_balance.py -s -p no:cacheprovider

(PostgreSQL and Redis as for `make test`; the test database is made and dropped by pytest-django.)"""

import statistics
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotations.models import Profile
from annotations.services.assignment import assignment_next, leases_sweep_if_due, rater_for_user
from annotations.services.rating import RatingInput, rating_submit
from tests.conftest import make_user
from tests.workspace.conftest import add_clinicians, build_study
from tests.workspace.test_side_balance_and_spacing import add_history

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
CLAIMS = 40


def test_a_claim_costs_the_same_at_10000_submitted_pairs_as_at_10(django_user_model):
    researcher = make_user(django_user_model, "alice", Profile.Role.RESEARCHER)
    study = build_study(owner=researcher, prompts=40, overlap_k=2)
    short, long = (rater_for_user(user=u) for u in add_clinicians(django_user_model, study, ["short", "long"]))
    add_history(study, short, 10)
    start = time.perf_counter()
    add_history(study, long, 10_000)
    print(f"\n10,000 submitted pairs bulk-created in {time.perf_counter() - start:.1f} s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # the planner's statistics after a bulk load, as autovacuum would give them
    keys = ["empathy", "safety", "overall"]
    timings: dict[str, list[float]] = {"10": [], "10,000": []}
    statements: dict[str, list[int]] = {"10": [], "10,000": []}
    for _ in range(CLAIMS):
        for label, rater in (("10", short), ("10,000", long)):
            leases_sweep_if_due(study=study)
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                assignment = assignment_next(study=study, rater=rater, with_content=False)
                timings[label].append(time.perf_counter() - started)
            statements[label].append(len(queries))
            rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(keys, 1)))
    medians = {label: statistics.median(values) * 1000 for label, values in timings.items()}
    for label in timings:
        print(
            f"claim with {label:>6} pairs in the history: median {medians[label]:.2f} ms, "
            f"{statistics.median(statements[label]):.0f} statements"
        )
    print(f"ratio 10,000 / 10: {medians['10,000'] / medians['10']:.2f}x (constant: about 1)")
    assert statistics.median(statements["10"]) == statistics.median(statements["10,000"])
