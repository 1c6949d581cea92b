"""Launch validation, the claim guard, cancel, recovery, pages and permissions (no worker needed)."""

import json
import os
import uuid
import zipfile
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from annotations.models import AuditEvent, JobStatus, System, TrainingJob
from annotations.services.studies import study_create
from annotations.services.training_jobs import (
    training_job_cancel,
    training_job_claim,
    training_job_launch,
    training_job_register_system,
    training_jobs_recover,
)
from tests.jobs.conftest import AGREEMENT, FAST, make_export

pytestmark = pytest.mark.django_db


def launch(study, export, base, **extra):
    options = {"kind": "dpo", "criterion": "empathy", "hyperparameters": FAST, **extra}
    return training_job_launch(study=study, export=export, base_model=base, **options)


def login(client, user):
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_it_queues_a_job_with_defaults_and_an_audit_row(study, export, tiny_assets, researcher):
    job = launch(study, export, tiny_assets["base"], actor=researcher, hyperparameters={"max_steps": "3"})
    assert job.status == JobStatus.QUEUED and job.attempts == 0
    assert job.hyperparameters == {"max_steps": 3}  # typed; everything else keeps TrainingSpec's defaults
    assert Path(job.artifacts_path).name == str(job.public_id)
    assert AuditEvent.objects.filter(action="training_job.launch", object_id=str(job.pk)).exists()


def test_it_refuses_a_base_model_that_cannot_load_offline(study, export):
    with pytest.raises(ValidationError) as caught:
        launch(study, export, "some-org/not-downloaded-model")
    assert "No such model is available" in " ".join(caught.value.message_dict["base_model"])
    assert not TrainingJob.objects.exists()


def test_it_refuses_bad_options_a_criterion_missing_from_the_snapshot_and_modpo_without_reward_models(
    study, export, tiny_assets
):
    base = tiny_assets["base"]
    with pytest.raises(ValidationError) as caught:
        launch(study, export, base, hyperparameters={"learning_rate": "fast", "colour": "red"})
    assert set(caught.value.message_dict) == {"learning_rate", "colour"}
    with pytest.raises(ValidationError) as caught:
        launch(study, export, base, criterion="autonomy")
    assert "export" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        launch(study, export, base, kind="modpo", weights={"empathy": 0.5, "safety": 0.5})
    assert "inputs" in caught.value.message_dict


def test_it_refuses_an_export_of_another_study(study, tiny_assets, other_researcher):
    elsewhere = make_export(study_create(slug="s2", title="Other", owner=other_researcher), tiny_assets["snapshot"])
    with pytest.raises(ValidationError) as caught:
        launch(study, elsewhere, tiny_assets["base"])
    assert "another study" in caught.value.message_dict["export"][0]


def test_a_job_is_claimed_once_and_each_claim_counts_an_attempt(study, export, tiny_assets):
    job = launch(study, export, tiny_assets["base"])
    token = training_job_claim(job_id=job.pk, worker="w1")
    assert token is not None
    assert training_job_claim(job_id=job.pk, worker="w2") is None  # a duplicate message runs nothing
    job.refresh_from_db()
    assert (job.status, job.attempts, job.run_token, job.worker) == (
        JobStatus.RUNNING,
        1,
        token,
        f"w1 pid {os.getpid()}",
    )


def test_a_job_out_of_attempts_fails_instead_of_running(study, export, tiny_assets):
    job = launch(study, export, tiny_assets["base"])
    TrainingJob.objects.filter(pk=job.pk).update(attempts=3, max_attempts=3)
    assert training_job_claim(job_id=job.pk, worker="w1") is None
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "max_attempts" in job.error


def test_recovery_requeues_a_stale_running_job_but_not_a_live_one(study, export, tiny_assets):
    stale, live = launch(study, export, tiny_assets["base"]), launch(study, export, tiny_assets["base"])
    for job in (stale, live):
        training_job_claim(job_id=job.pk, worker="w1")
    TrainingJob.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=20))
    assert training_jobs_recover(stale_after=timedelta(minutes=10)) == [stale.pk]
    stale.refresh_from_db()
    live.refresh_from_db()
    assert (stale.status, stale.run_token) == (JobStatus.QUEUED, None)
    assert live.status == JobStatus.RUNNING
    # The next claim resumes it, counting a second attempt.
    training_job_claim(job_id=stale.pk, worker="w2")
    stale.refresh_from_db()
    assert stale.attempts == 2


def test_recovery_at_a_worker_start_requeues_jobs_held_under_its_own_name(study, export, tiny_assets):
    job = launch(study, export, tiny_assets["base"])
    training_job_claim(job_id=job.pk, worker="gpu1@host")
    assert training_jobs_recover(dead_worker="gpu2@host") == []
    assert training_jobs_recover(dead_worker="gpu1@host") == [job.pk]


def test_cancel_ends_a_queued_job_at_once_and_flags_a_running_one(study, export, tiny_assets, researcher):
    queued, running = launch(study, export, tiny_assets["base"]), launch(study, export, tiny_assets["base"])
    training_job_claim(job_id=running.pk, worker="w1")
    assert training_job_cancel(job=queued, actor=researcher).status == JobStatus.CANCELLED
    flagged = training_job_cancel(job=running, actor=researcher)
    assert flagged.status == JobStatus.RUNNING and flagged.cancel_requested
    assert training_job_claim(job_id=queued.pk, worker="w2") is None
    with pytest.raises(ValidationError):
        training_job_cancel(job=queued, actor=researcher)


def test_a_succeeded_job_registers_as_a_system_of_its_study(study, export, tiny_assets, researcher):
    job = launch(study, export, tiny_assets["base"])
    with pytest.raises(ValidationError):
        training_job_register_system(job=job, name="dpo-empathy", actor=researcher)
    TrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    job.refresh_from_db()
    system = training_job_register_system(job=job, name="dpo-empathy", actor=researcher)
    assert System.objects.get(pk=system.pk).training_job == job and system.study == study


def test_the_api_launches_lists_and_reads_a_job_with_its_lineage(client, study, export, tiny_assets, researcher):
    login(client, researcher)
    url = reverse("api-job-list", kwargs={"slug": study.slug})
    payload = {
        "kind": "dpo",
        "criterion": "empathy",
        "base_model": tiny_assets["base"],
        "export": str(export.public_id),
    }
    created = client.post(url, {**payload, "hyperparameters": FAST}, content_type="application/json")
    assert created.status_code == 201, created.content
    refused = client.post(url, {**payload, "base_model": "/nowhere/model"}, content_type="application/json")
    assert refused.status_code == 400
    assert "No such model is available" in refused.json()["error"]["details"]["base_model"][0]
    listed = client.get(url).json()
    assert [job["id"] for job in listed] == [created.json()["id"]]
    detail = client.get(reverse("api-job-detail", kwargs={"slug": study.slug, "public_id": listed[0]["id"]})).json()
    assert detail["lineage"]["export"]["id"] == str(export.public_id)
    assert detail["lineage"]["study"]["slug"] == study.slug
    assert detail["lineage"]["agreement"] == AGREEMENT


def test_the_pages_launch_show_and_refuse_with_a_clear_error(client, study, export, tiny_assets, researcher):
    login(client, researcher)
    url = reverse("job-list", kwargs={"slug": study.slug})
    form = {"kind": "dpo", "criterion": "empathy", "export": str(export.public_id), "max_steps": "3", "use_lora": "on"}
    refused = client.post(url, {**form, "base_model": "/nowhere/model"})
    assert refused.status_code == 400 and b"No such model is available" in refused.content
    launched = client.post(url, {**form, "base_model": tiny_assets["base"]})
    job = TrainingJob.objects.get()
    assert launched.status_code == 302 and launched["Location"].endswith(f"/jobs/{job.public_id}/")
    assert job.hyperparameters["max_steps"] == 3 and job.hyperparameters["use_lora"] is True
    page = client.get(launched["Location"])
    assert page.status_code == 200
    assert b"js/jobs.js" in page.content and b"<script>" not in page.content  # no inline script under the CSP
    assert reverse("api-job-metrics", kwargs={"slug": study.slug, "public_id": job.public_id}).encode() in page.content
    assert b"Training jobs" in client.get(reverse("study-detail", kwargs={"slug": study.slug})).content


def test_artifacts_download_as_a_zip_of_the_folder(client, study, export, tiny_assets, researcher):
    login(client, researcher)
    job = launch(study, export, tiny_assets["base"])
    folder = Path(job.artifacts_path)
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format": "trl-dpo"}))
    (folder / "checkpoint-2" / "trainer_state.json").write_text("{}")
    TrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    response = client.get(reverse("job-artifacts", kwargs={"slug": study.slug, "public_id": job.public_id}))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(BytesIO(b"".join(response.streaming_content))).namelist()
    assert sorted(names) == ["checkpoint-2/trainer_state.json", "manifest.json"]


@pytest.mark.parametrize("persona", ["other_researcher", "clinician"])
def test_other_researchers_and_clinicians_can_neither_see_nor_cancel_a_job(
    client, study, export, tiny_assets, persona, request
):
    job = launch(study, export, tiny_assets["base"])
    login(client, request.getfixturevalue(persona))
    kwargs = {"slug": study.slug, "public_id": job.public_id}
    for name in ("job-detail", "job-artifacts", "api-job-detail", "api-job-metrics"):
        assert client.get(reverse(name, kwargs=kwargs)).status_code == 404, name
    for name in ("job-cancel", "api-job-cancel", "job-register-system", "api-job-register-system"):
        assert client.post(reverse(name, kwargs=kwargs), {"name": "x"}).status_code == 404, name
    assert client.get(reverse("job-list", kwargs={"slug": study.slug})).status_code == 404
    assert client.get(reverse("api-job-list", kwargs={"slug": study.slug})).status_code == 404
    # A job id that does not exist answers the same: ids reveal nothing.
    assert client.get(reverse("job-detail", kwargs={**kwargs, "public_id": uuid.uuid4()})).status_code == 404
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and not job.cancel_requested


def test_the_command_launches_reports_cancels_and_recovers(study, export, tiny_assets):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command(
        "training_job", "launch", "--study", study.slug, "--kind", "sft", "--criterion", "empathy",
        "--export", str(export.public_id), "--base-model", tiny_assets["base"], "--set", "max_steps=2", stdout=out,
    )  # fmt: skip
    job = TrainingJob.objects.get()
    assert str(job.public_id) in out.getvalue() and job.hyperparameters == {"max_steps": 2}
    with pytest.raises(CommandError, match="base_model"):
        call_command(
            "training_job", "launch", "--study", study.slug, "--kind", "sft", "--criterion", "empathy",
            "--export", str(export.public_id), "--base-model", "/nowhere/model",
        )  # fmt: skip
    call_command("training_job", "status", str(job.public_id), stdout=out)
    assert '"status": "queued"' in out.getvalue()
    training_job_claim(job_id=job.pk, worker="w1")
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    call_command("training_job", "recover", stdout=out)
    assert "Re-queued 1 job(s)." in out.getvalue()
    call_command("training_job", "cancel", str(job.public_id), stdout=out)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_out_of_time_checkpoints_requeues_and_the_next_claim_resumes(study, export, tiny_assets, monkeypatch):
    from annotations.services import training_jobs

    dispatched = []  # no message: a shared worker must not take the job between the two runs below
    monkeypatch.setattr(training_jobs, "_dispatch", dispatched.append)
    training_job_execute = training_jobs.training_job_execute
    job = launch(study, export, tiny_assets["base"], hyperparameters={**FAST, "max_steps": 4})
    # A tiny time budget: the run stops after its first step, as it would just before the soft time limit.
    assert training_job_execute(job_id=job.pk, worker="w1", stop_after_seconds=1e-6) == "requeued"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.run_token) == (JobStatus.QUEUED, 1, None)
    assert dispatched == [job.pk, job.pk]  # at launch, and again when re-queued
    assert (Path(job.artifacts_path) / f"checkpoint-{job.step}" / "trainer_state.json").is_file()
    assert training_job_execute(job_id=job.pk, worker="w2") == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.step) == (JobStatus.SUCCEEDED, 2, 4)
    assert job.result["resumed_from_step"] == 1
