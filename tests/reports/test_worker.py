"""The Celery path through a real worker: progress, cache, and recomputation after a new rating."""

import time

import pytest

from annotations.models import JobStatus, ReportSnapshot
from annotations.services.reports import ReportParams, report_request

from .builders import import_records, vote

# Every report goes to the worker; enough resamples to watch it move.
PARAMS = ReportParams(n_resamples=1500)


def wait_for(snapshot_id: int, timeout: float = 60) -> tuple[ReportSnapshot, list[float]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = ReportSnapshot.objects.get(pk=snapshot_id)
        if not seen or seen[-1] != snapshot.progress:
            seen.append(snapshot.progress)
        if snapshot.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return snapshot, seen
        time.sleep(0.02)
    raise AssertionError(f"snapshot {snapshot_id} still {snapshot.status} after {timeout} s; progress seen {seen}")


@pytest.mark.django_db(transaction=True)
def test_a_report_is_computed_by_the_worker_cached_and_recomputed(celery_worker, paper_study):
    queued = report_request(study=paper_study, params=PARAMS)
    assert queued.status in (JobStatus.QUEUED, JobStatus.RUNNING)  # the worker may have started already
    done, seen = wait_for(queued.pk)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.progress == 1.0 and done.computed_at is not None
    assert any(0 < value < 1 for value in seen), seen  # the page's progress bar had something to show
    assert done.result["report"]["counts"]["n_ratings"] == 900

    again = report_request(study=paper_study, params=PARAMS)
    assert again.pk == done.pk and again.status == JobStatus.SUCCEEDED
    assert again.computed_at == done.computed_at  # served from the cache, not recomputed

    import_records(paper_study, [vote(rater="late-rater", unit=7, criterion="safety", value=1)], "late.jsonl")
    fresh = report_request(study=paper_study, params=PARAMS)
    assert fresh.fingerprint != done.fingerprint and fresh.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    fresh, _ = wait_for(fresh.pk)
    assert fresh.status == JobStatus.SUCCEEDED
    assert fresh.result["report"]["counts"]["n_ratings"] == 901
    assert not ReportSnapshot.objects.filter(pk=done.pk).exists()  # superseded
