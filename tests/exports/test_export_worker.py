"""A big export through the API and a real Celery worker: queued, progress on the row, a verified zip."""

import hashlib
import time

import pytest
from django.db import connection, transaction

from annotations.exporting import verify_export
from annotations.models import JobStatus
from annotations.services.studies import study_create, study_criteria
from bench.export import populate_study

COMPARISONS = 6000


@pytest.mark.django_db(transaction=True)
def test_a_big_export_runs_in_the_worker_with_progress(celery_worker, client, researcher, settings, tmp_path):
    settings.EXPORT_INLINE_MAX_RATINGS = 100  # anything bigger goes to the worker
    study = study_create(slug="big", title="Big study", owner=researcher, criterion_keys=["empathy", "safety"])
    with transaction.atomic(), connection.cursor() as cursor:
        populate_study(
            cursor,
            study_id=study.pk,
            criterion_ids=[c.pk for c in study_criteria(study)],
            comparisons=COMPARISONS,
            ratings_per_comparison=3,
            raters=5,
            max_value=study.max_abs_value,
            words_per_response=20,
        )
    client.force_login(researcher)

    response = client.post(
        "/api/v1/studies/big/exports/",
        {"format": "trl-dpo", "policy": {"min_votes": 2}, "split": {"seed": 1, "test_fraction": 0.2}},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == JobStatus.QUEUED
    detail_url = f"/api/v1/studies/big/exports/{response.json()['id']}/"

    seen: list[float] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        body = client.get(detail_url).json()
        if not seen or seen[-1] != body["progress"]:
            seen.append(body["progress"])
        if body["status"] in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"the export did not finish in 90 s; progress seen {seen}")

    assert body["status"] == JobStatus.SUCCEEDED, body["error"]
    assert body["progress"] == 1.0
    assert any(0 < value < 1 for value in seen), seen  # the progress bar moved while the worker wrote
    assert body["manifest"]["comparisons"]["total"] == COMPARISONS
    download = client.get(f"{detail_url}download.zip")
    assert download.status_code == 200
    archive = tmp_path / "download.zip"
    archive.write_bytes(b"".join(download.streaming_content) if download.streaming else download.content)
    assert verify_export(archive) == []
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == body["zip_sha256"]
