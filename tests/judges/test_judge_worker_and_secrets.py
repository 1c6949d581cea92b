"""A judge run through a real Celery worker, and the API key never leaving the worker's call."""

import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse

from annotations.models import JobStatus, JudgeRun, Judgment
from annotations.services.judging import judge_run_create, llm_judge_create
from tests.judges.conftest import build_judge_study

SECRET = "sk-test-5ecret-never-shown-0f9c2d"


def _wait(run: JudgeRun, timeout: float = 60) -> JudgeRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            return run
        time.sleep(0.2)
    log = Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp")) / "test-worker.log"
    raise AssertionError(f"run still {run.status}; worker log:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_goes_through_the_worker_and_the_key_stays_secret(celery_worker, researcher, client, server):
    study = build_judge_study(owner=researcher, prompts=3)
    judge = llm_judge_create(
        study=study,
        name="secret-judge",
        base_url=server.base_url,
        model_name="prefer-longer",
        api_key=SECRET,
        actor=researcher,
    )
    run = _wait(judge_run_create(judge=judge, actor=researcher))
    assert (run.status, run.done_comparisons, run.error) == (JobStatus.SUCCEEDED, 9, "")
    assert Judgment.objects.filter(judge=judge).count() == 27
    # The key reached the endpoint, from the worker...
    assert f"Bearer {SECRET}" in server.stats()["authorizations"]
    # ...and nowhere else: not in any page or API answer a researcher reaches,
    client.force_login(researcher)
    urls = [
        reverse("judge-list", args=[study.slug]),
        reverse("judge-detail", args=[study.slug, judge.pk]),
        reverse("judge-run-detail", args=[study.slug, run.public_id]),
        reverse("api-judge-detail", args=[study.slug, judge.pk]),
        reverse("api-judge-runs", args=[study.slug, judge.pk]),
        reverse("api-judge-run-detail", args=[study.slug, run.public_id]),
        reverse("study-report", args=[study.slug]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert SECRET not in response.content.decode(), url
    assert "stored encrypted" in client.get(urls[1]).content.decode()
    # not in the database in clear (every text column of every table),
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'jsonb')"
        )
        for table, column in cursor.fetchall():
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE %s', [f"%{SECRET}%"])  # noqa: S608 (names from information_schema)
            assert cursor.fetchone()[0] == 0, f"{table}.{column}"
    # and not in the worker's log.
    log = Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp")) / "test-worker.log"
    assert SECRET not in log.read_text(errors="replace")


@pytest.mark.django_db
def test_a_key_from_the_environment_is_read_where_the_judge_runs(researcher, server, monkeypatch, capsys):
    study = build_judge_study(owner=researcher, prompts=1)
    monkeypatch.setenv("JUDGE_TEST_KEY", SECRET)
    call_command(
        "judge_run",
        "--study", study.slug, "--name", "env-judge", "--base-url", server.base_url, "--model", "hash",
        "--api-key-env", "JUDGE_TEST_KEY", "--concurrency", "4",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "succeeded: 3 judged, 0 failed" in out and "environment variable JUDGE_TEST_KEY" in out
    assert SECRET not in out
    assert f"Bearer {SECRET}" in server.stats()["authorizations"]
    # Running again reuses the judge and changes nothing.
    call_command("judge_run", "--study", study.slug, "--name", "env-judge")
    assert "succeeded: 3 judged" in capsys.readouterr().out
    assert Judgment.objects.filter(judge__name="env-judge").count() == 9


@pytest.mark.django_db
def test_the_command_fails_clearly_when_the_key_variable_is_missing_or_the_endpoint_is_down(researcher, server):
    study = build_judge_study(owner=researcher, prompts=1)
    with pytest.raises(CommandError, match="NO_SUCH_KEY_VAR is not set"):
        call_command(
            "judge_run", "--study", study.slug, "--name", "j1", "--base-url", server.base_url, "--model", "hash",
            "--api-key-env", "NO_SUCH_KEY_VAR",
        )  # fmt: skip
    with pytest.raises(CommandError, match="could not be reached"):
        call_command(
            "judge_run", "--study", study.slug, "--name", "j2", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"
        )
    with pytest.raises(CommandError, match="give --base-url and --model"):
        call_command("judge_run", "--study", study.slug, "--name", "unknown")
