"""End to end through a real Celery worker: a tiny DPO job trained on the study's export (LoRA adapter), then
responses generated from its artifact on the gpu queue and from an endpoint on the default queue; and the
generate_responses command in the foreground."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotations.models import GenerationRun, JobStatus, Response
from annotations.services.generation import FINISHED, generation_run_create
from annotations.services.training_jobs import training_job_launch
from tests.generation.conftest import finished_job, test_prompt_pks
from tests.jobs.conftest import wait_for, wait_until_finished

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
TRAIN = {"batch_size": 2, "logging_steps": 1, "learning_rate": 3e-3, "max_length": 64, "max_steps": 2, "lora_r": 4}


def wait_for_run(run, timeout: float = 120) -> GenerationRun:
    wait_for(
        lambda: GenerationRun.objects.filter(pk=run.pk, status__in=FINISHED).exists(),
        timeout=timeout,
        what=f"generation run {run.pk} to finish",
    )
    run.refresh_from_db()
    return run


def test_a_trained_adapter_answers_the_test_split_through_the_worker(
    celery_worker, filled_study, split_export, tiny_base, researcher, fake_chat
):
    job = training_job_launch(
        study=filled_study,
        kind="dpo",
        base_model=tiny_base,
        export=split_export,
        criterion="empathy",
        hyperparameters=TRAIN,
        actor=researcher,
    )
    # Meanwhile, an endpoint run goes to the default queue.
    hosted = generation_run_create(
        study=filled_study,
        system_name="hosted-x",
        source="endpoint",
        base_url=fake_chat.base_url,
        model_name="fake-model",
        actor=researcher,
    )
    wait_until_finished([job], timeout=180)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (Path(job.artifacts_path) / "adapter_config.json").is_file()  # a LoRA adapter, applied via PEFT
    run = generation_run_create(
        study=filled_study,
        system_name="dpo-v1",
        training_job=job,
        prompt_set="test_split",
        settings={"max_new_tokens": 6, "batch_size": 2, "temperature": 0.7, "seed": 1},
        actor=researcher,
    )
    run = wait_for_run(run)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert (run.done_prompts, run.total_prompts) == (2, 2)
    assert "claimed by test-" in run.log  # the worker ran it
    assert run.system.training_job == job and run.model_name == job.base_model
    assert set(Response.objects.filter(system=run.system).values_list("prompt_id", flat=True)) == test_prompt_pks(
        filled_study
    )
    hosted = wait_for_run(hosted)
    assert hosted.status == JobStatus.SUCCEEDED and Response.objects.filter(system=hosted.system).count() == 6

    # A rerun changes nothing.
    rerun = wait_for_run(
        generation_run_create(
            study=filled_study, system_name="dpo-v1", training_job=job, prompt_set="test_split", actor=researcher
        )
    )
    assert rerun.status == JobStatus.SUCCEEDED and rerun.system_id == run.system_id
    assert Response.objects.filter(system=run.system).count() == 2


def test_the_command_generates_in_the_foreground(filled_study, split_export, tiny_base, tmp_path, capsys):
    job = finished_job(filled_study, split_export, tiny_base, tmp_path)
    call_command(
        "generate_responses",
        "--study",
        "s1",
        "--job",
        str(job.public_id),
        "--system",
        "cmd-v1",
        "--prompts",
        "test",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "1",
    )
    out = capsys.readouterr().out
    assert "2 prompt(s) for system cmd-v1" in out and "succeeded: 2/2 prompts answered." in out
    assert set(Response.objects.filter(system__name="cmd-v1").values_list("prompt_id", flat=True)) == test_prompt_pks(
        filled_study
    )
    with pytest.raises(CommandError, match="temperature"):
        call_command(
            "generate_responses", "--study", "s1", "--job", str(job.public_id), "--system", "x", "--temperature", "-2"
        )
    with pytest.raises(CommandError, match="either --job or --base-url"):
        call_command("generate_responses", "--study", "s1", "--system", "x")
