"""Every kind end to end through a real Celery worker, and cancel of a running job."""

import json
from pathlib import Path

import pytest

from annotations.models import JobStatus, TrainingJob
from annotations.services.training_jobs import training_job_cancel, training_job_launch
from tests.jobs.conftest import FAST, wait_for, wait_until_finished

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def launch(study, export, base, researcher, **options):
    hyperparameters = {**FAST, **options.pop("hyperparameters", {})}
    options.setdefault("criterion", "empathy")
    return training_job_launch(
        study=study, export=export, base_model=base, hyperparameters=hyperparameters, actor=researcher, **options
    )


def test_every_kind_runs_end_to_end_through_the_worker(celery_worker, study, export, tiny_assets, researcher):
    base = tiny_assets["base"]
    reward = launch(study, export, base, researcher, kind="reward", criterion="safety")
    dpo = launch(study, export, base, researcher, kind="dpo")
    sft = launch(study, export, base, researcher, kind="sft")
    wait_until_finished([reward, dpo, sft])
    # MODPO trains on the reward job's output; merge averages the DPO and SFT jobs' adapters.
    modpo = launch(
        study,
        export,
        base,
        researcher,
        kind="modpo",
        weights={"empathy": 0.6, "safety": 0.4, "active_listening": 0.0},
        inputs=[reward],
    )
    merge = launch(study, None, base, researcher, kind="merge", criterion="", inputs=[dpo, sft])
    wait_until_finished([modpo, merge])

    for job in (reward, dpo, sft, modpo, merge):
        assert (job.kind, job.status, job.error) == (job.kind, JobStatus.SUCCEEDED, "")
        assert job.attempts == 1 and job.result["status"] == "completed"
        folder = Path(job.artifacts_path)
        assert (folder / "training_config.json").is_file() and (folder / "tokenizer.json").is_file()
        assert json.loads((folder / "job.json").read_text())["job"]["id"] == str(job.public_id)
        assert not list(folder.glob("checkpoint-*"))
    for job in (reward, dpo, sft, modpo):
        assert (job.step, job.total_steps) == (3, 3)
        losses = [m.step for m in job.metrics.all() if m.values.get("loss") is not None]
        assert losses == [1, 2, 3]  # streamed to the database at every logging step
        assert json.loads((Path(job.artifacts_path) / "manifest.json").read_text())["format"] == "trl-dpo"
        assert (Path(job.artifacts_path) / "metrics.jsonl").is_file()
    assert "eval_pairwise_accuracy" in reward.result["metrics"]
    assert any("rewards/margins" in m.values for m in dpo.metrics.all())
    assert (Path(modpo.artifacts_path) / "modpo_margins.jsonl").is_file()
    assert json.loads((Path(merge.artifacts_path) / "training_config.json").read_text())["spec"]["merge_sources"] == [
        dpo.artifacts_path,
        sft.artifacts_path,
    ]


def test_cancel_stops_a_running_job_within_a_few_steps_and_keeps_its_checkpoint(
    celery_worker, study, export, tiny_assets, researcher
):
    job = launch(study, export, tiny_assets["base"], researcher, kind="dpo", hyperparameters={"max_steps": 500})
    wait_for(
        lambda: TrainingJob.objects.filter(pk=job.pk, step__gte=2).exists(),
        timeout=90,
        what="the job to reach step 2",
    )
    training_job_cancel(job=job, actor=researcher)
    step_when_asked = TrainingJob.objects.get(pk=job.pk).step
    wait_until_finished([job], timeout=60)
    assert job.status == JobStatus.CANCELLED
    assert step_when_asked <= job.step <= step_when_asked + 3
    assert job.result["status"] == "stopped" and job.result["global_step"] == job.step
    checkpoint = Path(job.artifacts_path) / f"checkpoint-{job.step}"
    assert (checkpoint / "trainer_state.json").is_file()  # the next run could resume from it
