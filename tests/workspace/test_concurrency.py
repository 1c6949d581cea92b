"""Claims under real concurrency: threads with their own PostgreSQL connections, released at once."""

import threading
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count, Q

from annotations.models import Assignment, Comparison, Rating
from annotations.services.assignment import assignment_next, rater_for_user
from annotations.services.rating import RatingInput, rating_submit
from tests.workspace.conftest import add_clinicians, build_study

pytestmark = [pytest.mark.django_db(transaction=True)]


def run_at_once(functions):
    """Run each function in its own thread, all released by one barrier; return results and errors."""
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)
    errors: list = []

    def worker(index, function):
        try:
            barrier.wait(timeout=30)
            results[index] = function()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def live_counts(study):
    return dict(
        Comparison.objects.filter(study=study)
        .annotate(live=Count("assignments", filter=Q(assignments__status__in=["leased", "submitted"])))
        .values_list("pk", "live")
    )


def test_fifty_clinicians_asking_at_once_never_exceed_k(researcher, django_user_model):
    assert connection.vendor == "postgresql"
    study = build_study(owner=researcher, prompts=4, overlap_k=3)  # 12 comparisons, 36 places
    raters = [
        rater_for_user(user=u) for u in add_clinicians(django_user_model, study, [f"c{i:02d}" for i in range(50)])
    ]

    results, errors = run_at_once([lambda r=r: assignment_next(study=study, rater=r) for r in raters])

    assert errors == []
    claimed = [a for a in results if a is not None]
    assert len(claimed) == 36  # every place filled, none twice
    live = live_counts(study)
    assert max(live.values()) == 3 and sum(live.values()) == 36
    stored = dict(Comparison.objects.filter(study=study).values_list("pk", "active_assignments"))
    assert stored == live  # the counter matches the rows
    assert max(Counter(a.rater_id for a in Assignment.objects.filter(study=study)).values()) == 1

    # Round two: everyone submits and asks again at once; still nobody beyond k, no rating lost or doubled.
    def submit_and_next(rater, assignment):
        if assignment is not None:
            values = dict.fromkeys(["empathy", "safety", "overall"], 1)
            rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=values))
        return assignment_next(study=study, rater=rater)

    by_rater = {a.rater_id: a for a in claimed}
    _, errors = run_at_once([lambda r=r: submit_and_next(r, by_rater.get(r.pk)) for r in raters])
    assert errors == []
    live = live_counts(study)
    assert max(live.values()) <= 3
    assert dict(Comparison.objects.filter(study=study).values_list("pk", "active_assignments")) == live
    assert Rating.objects.filter(assignment__study=study).count() == 36 * 3
    pairs = Assignment.objects.filter(study=study).values_list("comparison_id", "rater_id")
    assert len(pairs) == len(set(pairs))


def test_one_clinician_double_clicking_next_gets_one_pair(ws_study, clinician):
    rater = rater_for_user(user=clinician)
    results, errors = run_at_once([lambda: assignment_next(study=ws_study, rater=rater) for _ in range(8)])
    assert errors == []
    assert len({a.pk for a in results}) == 1
    assert Assignment.objects.filter(rater=rater).count() == 1


def test_a_submission_sent_many_times_at_once_is_stored_once(ws_study, clinician):
    rater = rater_for_user(user=clinician)
    assignment = assignment_next(study=ws_study, rater=rater)
    values = {"empathy": -1, "safety": 0, "overall": 1}
    results, errors = run_at_once(
        [lambda: rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=values)) for _ in range(6)]
    )
    assert errors == []
    assert sum(1 for outcome in results if outcome.created) == 1
    assert Rating.objects.filter(assignment=assignment).count() == 3
