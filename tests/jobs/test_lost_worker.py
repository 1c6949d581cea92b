"""A job whose worker process dies is taken back within seconds, not after its heartbeat goes stale.

When a prefork pool child is killed (the out-of-memory killer), Celery requeues its late-acknowledged
message at once and a fresh child of the same node receives it; the claim sees the job held by a process of
its own node that no longer exists and takes it back, resuming from the last checkpoint.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from annotations.models import GenerationRun, JobStatus, Judge, JudgeRun, Rater, TrainingJob
from annotations.services.generation import generation_run_claim, generation_runs_recover
from annotations.services.judging import judge_run_claim
from annotations.services.training_jobs import training_job_claim, training_job_launch
from annotations.services.worker_processes import worker_node, worker_pid
from annotations.tasks import training_job_run
from evalplatform.celery import app
from tests.conftest import ROOT, _database_url
from tests.jobs.conftest import FAST, VAR_DIR, wait_for, wait_until_finished

NODE = "gpu0@host-a"


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def running_job(study, holder: str) -> TrainingJob:
    return TrainingJob.objects.create(
        study=study, kind="dpo", status=JobStatus.RUNNING, worker=holder, run_token=uuid.uuid4(), attempts=1
    )


def test_the_broker_hands_back_an_unacknowledged_message_within_an_hour():
    # Recovery no longer waits for the broker, so a message reserved by a dead worker need not wait two days.
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= 3600


@pytest.mark.django_db
def test_a_claim_takes_back_a_job_held_by_a_dead_process_of_its_own_node(study, dead_pid):
    job = running_job(study, f"{NODE} pid {dead_pid}")
    token = training_job_claim(job_id=job.pk, worker=NODE)
    job.refresh_from_db()
    assert token is not None and job.run_token == token
    assert (job.status, job.attempts, worker_node(job.worker), worker_pid(job.worker)) == (
        JobStatus.RUNNING,
        2,
        NODE,
        os.getpid(),
    )
    assert f"worker process {NODE} pid {dead_pid} died (lost worker); re-queued" in job.log


@pytest.mark.django_db
def test_a_claim_leaves_alone_a_job_held_by_a_live_process_or_another_node(study, dead_pid):
    alive = running_job(study, f"{NODE} pid {os.getppid()}")
    elsewhere = running_job(study, f"gpu1@host-b pid {dead_pid}")  # pids mean nothing across machines
    assert training_job_claim(job_id=alive.pk, worker=NODE) is None
    assert training_job_claim(job_id=elsewhere.pk, worker=NODE) is None
    assert set(TrainingJob.objects.values_list("status", "attempts")) == {(JobStatus.RUNNING, 1)}


@pytest.mark.django_db
def test_a_job_out_of_attempts_fails_instead_of_being_taken_back(study, dead_pid):
    job = running_job(study, f"{NODE} pid {dead_pid}")
    TrainingJob.objects.filter(pk=job.pk).update(attempts=job.max_attempts)
    assert training_job_claim(job_id=job.pk, worker=NODE) is None
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "max_attempts" in job.error


def generation_run(study, **fields) -> GenerationRun:
    return GenerationRun.objects.create(
        study=study, source="endpoint", base_url="http://127.0.0.1:9/v1", model_name="m", system_name="g", **fields
    )


@pytest.mark.django_db
def test_a_generation_run_is_taken_back_from_a_dead_process_and_counts_its_attempts(study, dead_pid, settings):
    settings.GENERATION_MAX_ATTEMPTS = 2
    run = generation_run(study, status=JobStatus.RUNNING, worker=f"{NODE} pid {dead_pid}", run_token=uuid.uuid4())
    run.attempts = 1
    run.save(update_fields=["attempts"])
    assert generation_run_claim(run_id=run.pk, worker=NODE) is not None
    run.refresh_from_db()
    assert (run.status, run.attempts, worker_pid(run.worker)) == (JobStatus.RUNNING, 2, os.getpid())
    assert run.heartbeat_at is not None and "lost worker" in run.log
    # Lost once more: out of attempts, it fails rather than running again.
    GenerationRun.objects.filter(pk=run.pk).update(worker=f"{NODE} pid {dead_pid}")
    assert generation_run_claim(run_id=run.pk, worker=NODE) is None
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "GENERATION_MAX_ATTEMPTS" in run.error


@pytest.mark.django_db
def test_the_periodic_pass_requeues_a_generation_run_whose_heartbeat_is_stale(
    study, django_capture_on_commit_callbacks
):
    now = timezone.now()
    stale = generation_run(study, status=JobStatus.RUNNING, worker="w@h pid 1", heartbeat_at=now - timedelta(hours=1))
    fresh = generation_run(study, status=JobStatus.RUNNING, worker="w@h pid 1", heartbeat_at=now)
    with django_capture_on_commit_callbacks() as dispatched:
        assert generation_runs_recover(stale_after=timedelta(minutes=10)) == [stale.pk]
    assert len(dispatched) == 1
    stale.refresh_from_db()
    assert (stale.status, stale.run_token, stale.worker) == (JobStatus.QUEUED, None, "")
    assert GenerationRun.objects.get(pk=fresh.pk).status == JobStatus.RUNNING


@pytest.mark.django_db
def test_a_judge_run_is_taken_back_from_a_dead_process_of_its_own_node_at_once(study, dead_pid):
    rater = Rater.objects.create(kind=Rater.Kind.JUDGE, label="lost-judge")
    judge = Judge.objects.create(rater=rater, kind=Judge.Kind.LLM_ENDPOINT, study=study, name="lost-judge")
    fresh_heartbeat = {"status": JobStatus.RUNNING, "heartbeat_at": timezone.now(), "run_token": uuid.uuid4()}
    dead = JudgeRun.objects.create(judge=judge, study=study, worker=f"{NODE} pid {dead_pid}", **fresh_heartbeat)
    alive = JudgeRun.objects.create(judge=judge, study=study, worker=f"{NODE} pid {os.getppid()}", **fresh_heartbeat)
    assert judge_run_claim(run_id=dead.pk, worker=NODE) is not None  # no need to wait 2 minutes for staleness
    assert judge_run_claim(run_id=alive.pk, worker=NODE) is None
    dead.refresh_from_db()
    assert worker_pid(dead.worker) == os.getpid()


def test_a_resumed_run_drops_the_metrics_lines_after_its_checkpoint(tmp_path):
    from annotations.training.runner import metrics_truncate

    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": step, "loss": 1.0 / step}) for step in range(1, 8)]
    metrics.write_text("\n".join(lines) + '\n{"step": 8, "lo')  # the dead run was cut short mid-line
    assert metrics_truncate(metrics, after_step=6) == 2
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    assert metrics_truncate(metrics, after_step=6) == 0
    assert metrics_truncate(tmp_path / "missing.jsonl", after_step=0) == 0


# ---- through a real prefork worker ----------------------------------------------------------------------


def start_prefork_worker(name: str, queue: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalplatform.test_settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or "",
        "TRAINING_HEARTBEAT_SECONDS": "1",
    }
    log = open(VAR_DIR / f"{name.split('@')[0]}-worker.log", "w")
    command = [sys.executable, "-m", "celery", "-A", "evalplatform", "worker", "-Q", queue, "-n", name]
    command += ["--pool", "prefork", "--concurrency", "1", "--prefetch-multiplier", "1", "--loglevel", "INFO"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: app.control.ping(destination=[name], timeout=0.5), timeout=60, what=f"worker {name} to start")
    return process


def complete_checkpoint(folder: Path) -> bool:
    return any((checkpoint / "trainer_state.json").is_file() for checkpoint in folder.glob("checkpoint-*"))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killing_the_pool_child_requeues_the_job_within_seconds_and_it_resumes_from_its_checkpoint(
    study, export, tiny_assets, researcher
):
    name, queue = f"oom-{os.getpid()}@jobs-test", f"gpu-oom-{os.getpid()}"
    job = training_job_launch(
        study=study,
        export=export,
        base_model=tiny_assets["base"],
        kind="dpo",
        criterion="empathy",
        hyperparameters={**FAST, "max_steps": 40, "save_steps": 3},
        actor=researcher,
        dispatch=False,
    )
    worker = start_prefork_worker(name, queue)
    try:
        training_job_run.apply_async(args=[job.pk], queue=queue)
        folder = Path(job.artifacts_path)
        wait_for(
            lambda: TrainingJob.objects.filter(pk=job.pk, step__gt=4).exists() and complete_checkpoint(folder),
            timeout=120,
            interval=0.05,
            what="a few steps and a checkpoint",
        )
        job.refresh_from_db()
        child = worker_pid(job.worker)
        assert worker_node(job.worker) == name and child not in (None, worker.pid)
        os.kill(child, signal.SIGKILL)  # what the out-of-memory killer does; the worker's main process lives on
        killed = time.monotonic()
        # The stale-heartbeat pass (10 minutes) plays no part: the requeued message's claim takes the job back.
        wait_for(
            lambda: TrainingJob.objects.filter(pk=job.pk, attempts=2, status=JobStatus.RUNNING).exists(),
            timeout=30,
            interval=0.1,
            what="the job to be claimed again after the pool child died",
        )
        requeued_after = time.monotonic() - killed
        wait_until_finished([job], timeout=120)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    print(f"taken back {requeued_after:.1f} s after the pool child was killed")
    assert requeued_after < 15, f"taken back after {requeued_after:.1f} s"
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2 and job.result["resumed_from_step"] >= 3 and job.result["global_step"] == 40
    assert f"worker process {name} pid {child} died (lost worker)" in job.log and "resuming from checkpoint-" in job.log
    # Every step is recorded once, in the database and in the artifact's metrics.jsonl.
    steps = [m.step for m in job.metrics.all() if m.values.get("loss") is not None]
    assert steps == list(range(1, 41))
    logged = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    training_steps = [line["step"] for line in logged if "loss" in line]
    assert training_steps == list(range(1, 41))
