"""A worker dies in the middle of a job: another worker resumes it from its last checkpoint."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.utils import timezone

from annotations.models import JobStatus, TrainingJob
from annotations.services.training_jobs import training_job_launch
from annotations.services.worker_processes import worker_node
from annotations.tasks import training_job_run
from evalplatform.celery import app
from tests.jobs.conftest import FAST, spawn_worker, wait_for, wait_until_finished

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_worker(name: str, queues: str, **env_extra: str) -> subprocess.Popen:
    process = spawn_worker(name, queues, **env_extra)
    try:
        wait_for(lambda: app.control.ping(destination=[name], timeout=0.5), timeout=60, what=f"worker {name} to start")
    except BaseException:
        process.kill()  # never left running past a failed start: it would take the suite's tasks
        process.wait(timeout=20)
        raise
    return process


def complete_checkpoint(folder: Path) -> bool:
    return any((checkpoint / "trainer_state.json").is_file() for checkpoint in folder.glob("checkpoint-*"))


def test_a_job_whose_worker_is_killed_resumes_on_another_worker_from_its_checkpoint(
    study, export, tiny_assets, researcher
):
    first_name, second_name = f"first-{os.getpid()}@jobs-test", f"second-{os.getpid()}@jobs-test"
    # Only the first worker listens here, so it is the one that runs the job first.
    private_queue = f"gpu-first-{os.getpid()}"
    job = training_job_launch(
        study=study,
        export=export,
        base_model=tiny_assets["base"],
        kind="dpo",
        criterion="empathy",
        hyperparameters={**FAST, "max_steps": 60, "save_steps": 3},
        actor=researcher,
        dispatch=False,
    )
    first = start_worker(first_name, private_queue, TRAINING_HEARTBEAT_SECONDS="1")
    second = None
    try:
        training_job_run.apply_async(args=[job.pk], queue=private_queue)
        folder = Path(job.artifacts_path)
        wait_for(
            lambda: TrainingJob.objects.filter(pk=job.pk, step__gt=0).exists() and complete_checkpoint(folder),
            timeout=90,
            interval=0.05,
            what="a step and a checkpoint",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = timezone.now()
        job.refresh_from_db()
        assert (job.status, job.attempts, worker_node(job.worker)) == (JobStatus.RUNNING, 1, first_name)
        assert job.step < 60
        time.sleep(2.5)  # let the heartbeat go stale (the second worker treats 2 s as stale)

        # The whole worker died (solo pool: no parent left to requeue the message): the second worker's
        # start-up recovery re-queues the job instead, and a worker on the gpu queue resumes it.
        second = start_worker(second_name, "gpu", TRAINING_STALE_AFTER_SECONDS="2")
        wait_until_finished([job], timeout=90)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=20)

    assert job.status == JobStatus.SUCCEEDED, job.error
    # Resumed by another worker: the second one, or the suite's shared worker when it also listens on gpu.
    assert job.attempts == 2 and worker_node(job.worker) not in ("", first_name)
    assert job.result["resumed_from_step"] >= 3 and job.result["global_step"] == 60
    assert "resuming from checkpoint-" in job.log and "is gone (no heartbeat); re-queued" in job.log
    # No overlapping run: the second claim came after the first worker was dead, and every step
    # was reported once (the steps the dead run did after its checkpoint were dropped and redone).
    assert job.started_at > killed_at
    steps = [m.step for m in job.metrics.all() if m.values.get("loss") is not None]
    assert steps == list(range(1, 61))
