"""Jobs of several processes through a real Celery worker, on the CPU with gloo: the same path as on GPUs.

The worker launches the ranks with accelerate launch and supervises them: rank 0 reports, the supervisor writes the
row. Tiny models, a few steps."""

import os
import re
import signal
from pathlib import Path

import pytest

from annotations.models import JobStatus, TrainingJob
from annotations.services import training_jobs
from annotations.services.training_jobs import (
    training_job_cancel,
    training_job_execute,
    training_job_launch,
    training_job_queue,
)
from tests.jobs.conftest import FAST, spawn_worker, wait_for, wait_until_finished

# lora_dropout 0: dropout masks are drawn per process, so only without them are both runs the same computation.
EXACT = {**FAST, "lora_dropout": 0.0}


def launch(study, export, base, researcher, **hyperparameters):
    return training_job_launch(
        study=study,
        export=export,
        base_model=base,
        kind="dpo",
        criterion="empathy",
        hyperparameters={**EXACT, **hyperparameters},
        actor=researcher,
    )


def losses(job: TrainingJob) -> dict[int, float]:
    return {m.step: m.values["loss"] for m in job.metrics.order_by("step") if m.values.get("loss") is not None}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_processes_train_like_one_with_the_same_global_batch(celery_worker, study, export, tiny_assets, researcher):
    one = launch(study, export, tiny_assets["base"], researcher, batch_size=4)
    two = launch(study, export, tiny_assets["base"], researcher, batch_size=2, num_processes=2)
    wait_until_finished([one, two], timeout=240)

    assert (one.status, one.error) == (JobStatus.SUCCEEDED, "")
    assert (two.status, two.error) == (JobStatus.SUCCEEDED, ""), two.log
    assert "rank 0 completed at step 3" in two.log and "rank 1 completed at step 3" in two.log
    # Reported once per step (rank 0 only), and each step's loss is the one-process loss: DDP averages the
    # gradients of two batches of 2 as one process does for one batch of 4.
    assert sorted(losses(two)) == sorted(losses(one)) == [1, 2, 3]
    for step, loss in losses(one).items():
        assert losses(two)[step] == pytest.approx(loss, abs=1e-4)
    assert two.result["global_step"] == 3 and two.step == 3

    # Held-out figures gathered from both processes: every test pair counted once, and the same figures.
    test_pairs = {
        criterion: len((Path(export.path) / "data" / criterion / "test.jsonl").read_text().splitlines())
        for criterion in export.criterion_keys
    }
    for criterion, count in test_pairs.items():
        assert two.result["metrics"][f"heldout/{criterion}/n"] == one.result["metrics"][f"heldout/{criterion}/n"]
        assert 0 < two.result["metrics"][f"heldout/{criterion}/n"] <= count
        assert two.result["metrics"][f"heldout/{criterion}/accuracy"] == pytest.approx(
            one.result["metrics"][f"heldout/{criterion}/accuracy"]
        )
    folder = Path(two.artifacts_path)
    assert not (folder / ".launch").exists() and not list(folder.glob("checkpoint-*"))
    assert "processes: 2 on 1 machine(s), ddp; global batch 4" in (folder / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_stops_every_process_at_the_same_step(celery_worker, study, export, tiny_assets, researcher):
    job = launch(study, export, tiny_assets["base"], researcher, batch_size=2, num_processes=2, max_steps=500)
    wait_for(lambda: TrainingJob.objects.filter(pk=job.pk, step__gte=2).exists(), timeout=120, what="step 2")
    training_job_cancel(job=job, actor=researcher)
    wait_until_finished([job], timeout=90)

    assert job.status == JobStatus.CANCELLED, job.log
    stopped = dict(re.findall(r"rank (\d) stopped at step (\d+)", job.log))
    assert stopped == {"0": str(job.step), "1": str(job.step)}
    # One checkpoint at that step, holding both processes' random states: the run resumes as it stopped.
    checkpoint = Path(job.artifacts_path) / f"checkpoint-{job.step}"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert job.result["status"] == "stopped"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_process_requeues_the_job_which_resumes_from_its_checkpoint(
    celery_worker, study, export, tiny_assets, researcher
):
    job = launch(
        study, export, tiny_assets["base"], researcher, batch_size=2, num_processes=2, max_steps=30, save_steps=3
    )
    folder = Path(job.artifacts_path)
    wait_for(
        lambda: (
            TrainingJob.objects.filter(pk=job.pk, step__gte=4).exists()
            and any((c / "trainer_state.json").is_file() for c in folder.glob("checkpoint-*"))
        ),
        timeout=120,
        interval=0.05,
        what="step 4 and a checkpoint",
    )
    pid = int(re.search(r"rank 1 started: pid (\d+)", TrainingJob.objects.get(pk=job.pk).log).group(1))
    os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
    wait_until_finished([job], timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.log
    assert "rank 1 died without an error" in job.log and "re-queued from the last checkpoint" in job.log
    assert job.attempts == 2 and job.result["resumed_from_step"] >= 3 and job.result["global_step"] == 30
    assert sorted(losses(job)) == list(range(1, 31))  # every step reported once across both attempts


@pytest.mark.django_db
def test_a_job_asking_for_more_processes_than_the_worker_has_fails_saying_so(
    study, export, tiny_assets, researcher, monkeypatch
):
    monkeypatch.setenv("TRAINING_MAX_CPU_PROCESSES", "2")
    job = training_job_launch(
        study=study,
        export=export,
        base_model=tiny_assets["base"],
        kind="dpo",
        criterion="empathy",
        hyperparameters={**EXACT, "num_processes": 8},
        actor=researcher,
        dispatch=False,
    )
    assert training_job_execute(job_id=job.pk, worker="") == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("the job asks for 8 processes on this machine")
    assert "TRAINING_MAX_CPU_PROCESSES" in job.error and "Traceback" not in job.error


def test_jobs_are_routed_by_processes_per_machine_when_asked(settings, monkeypatch):
    monkeypatch.delenv("TRAINING_ROUTE_BY_GPU_COUNT", raising=False)
    assert training_job_queue({"num_processes": 4}) == "gpu"  # off by default: every GPU worker takes every job
    settings.TRAINING_ROUTE_BY_GPU_COUNT = True
    assert training_job_queue({}) == "gpu"
    assert training_job_queue({"num_processes": 4}) == "gpu4"
    assert training_job_queue({"num_processes": 4, "num_machines": 2}) == "gpu2"
    assert training_jobs.training_job_queue({"num_processes": 1}) == "gpu"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_when_the_worker_dies_its_processes_die_too_and_another_worker_resumes_the_job(
    study, export, tiny_assets, researcher
):
    """No orphans: a rank that outlived its worker would keep training (and writing checkpoints) while another
    worker resumes the same job."""
    import time

    from annotations.tasks import training_job_run
    from evalplatform.celery import app
    from tests.training.test_distributed import process_gone

    first_name, second_name = f"mp-first-{os.getpid()}@jobs-test", f"mp-second-{os.getpid()}@jobs-test"
    private_queue = f"gpu-mp-{os.getpid()}"
    job = training_job_launch(
        study=study,
        export=export,
        base_model=tiny_assets["base"],
        kind="dpo",
        criterion="empathy",
        hyperparameters={**EXACT, "batch_size": 2, "num_processes": 2, "max_steps": 40, "save_steps": 3},
        actor=researcher,
        dispatch=False,
    )
    # Handles first, waits after: a worker whose start timed out is still ended by the finally below.
    first = spawn_worker(first_name, private_queue, TRAINING_HEARTBEAT_SECONDS="1")
    second = None
    try:
        wait_for(lambda: app.control.ping(destination=[first_name], timeout=0.5), timeout=60, what="the first worker")
        training_job_run.apply_async(args=[job.pk], queue=private_queue)
        folder = Path(job.artifacts_path)
        wait_for(
            lambda: (
                TrainingJob.objects.filter(pk=job.pk, step__gte=2).exists()
                and any((c / "trainer_state.json").is_file() for c in folder.glob("checkpoint-*"))
            ),
            timeout=120,
            interval=0.05,
            what="step 2 and a checkpoint",
        )
        ranks = [int(pid) for pid in re.findall(r"rank \d started: pid (\d+)", TrainingJob.objects.get(pk=job.pk).log)]
        assert len(ranks) == 2
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        wait_for(lambda: all(process_gone(pid) for pid in ranks), timeout=15, what="the ranks to die with their worker")
        time.sleep(2.5)  # the heartbeat goes stale for the second worker (2 s)
        # Not start_worker: its start-up recovery hands it the job at once, and a solo worker busy training
        # answers no ping, so waiting for one could time out while the job runs.
        second = spawn_worker(second_name, "gpu", TRAINING_STALE_AFTER_SECONDS="2")
        wait_until_finished([job], timeout=180)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=20)

    assert job.status == JobStatus.SUCCEEDED, job.log
    assert job.attempts == 2 and job.result["resumed_from_step"] >= 3 and job.result["global_step"] == 40
    assert sorted(losses(job)) == list(range(1, 41))


@pytest.mark.django_db
def test_steps_the_dead_supervisor_had_not_passed_on_are_recorded_from_metrics_jsonl(
    study, export, tiny_assets, researcher, tmp_path
):
    """Rank 0 wrote steps 1-4 to metrics.jsonl; the worker died having recorded 1-2, after checkpoint 3."""
    import json

    job = launch(study, export, tiny_assets["base"], researcher)
    for step in (1, 2):
        job.metrics.create(step=step, epoch=0.1 * step, values={"loss": 0.7})
    metrics_file = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": step, "epoch": 0.1 * step, "loss": 0.7 - step / 100}) for step in (1, 2, 3, 4)]
    metrics_file.write_text("\n".join(lines) + '\n{"step": 5, "ep')  # the last line cut short by the death
    assert training_jobs._metrics_backfill(job.pk, metrics_file, up_to_step=3) == 1
    assert sorted(losses(job).items()) == [(1, 0.7), (2, 0.7), (3, pytest.approx(0.67))]
