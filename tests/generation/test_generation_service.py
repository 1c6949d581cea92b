"""Generation runs executed in-process (the worker path is in test_generation_worker.py): prompt sets, lineage,
resume, rerun, cancel, refusals, and the endpoint source against a fake server."""

import pytest
from django.core.exceptions import ValidationError

from annotations.models import AuditEvent, GenerationRun, JobStatus, Prompt, Response, System, TrainingJob
from annotations.services import generation
from annotations.services.generation import (
    export_test_prompt_ids,
    generation_run_cancel,
    generation_run_create,
    generation_run_execute,
)
from tests.generation.conftest import TEST_PROMPTS, finished_job, make_export, test_prompt_pks

pytestmark = pytest.mark.django_db
FAST = {"max_new_tokens": 4, "batch_size": 2}


@pytest.fixture
def job(filled_study, split_export, tiny_base, tmp_path):
    return finished_job(filled_study, split_export, tiny_base, tmp_path)


def create(study, job, researcher, **options):
    options.setdefault("settings", FAST)
    return generation_run_create(
        study=study,
        system_name=options.pop("system_name", "merged-v1"),
        training_job=job,
        actor=researcher,
        dispatch=False,
        **options,
    )


def test_it_answers_exactly_the_test_split_of_the_jobs_export_and_records_lineage(filled_study, job, researcher):
    run = create(filled_study, job, researcher, prompt_set="test_split")
    assert run.export == job.export and run.total_prompts == len(TEST_PROMPTS)

    assert generation_run_execute(run_id=run.pk, worker="test") == "succeeded"
    run.refresh_from_db()
    assert (run.status, run.done_prompts, run.total_prompts, run.progress) == (JobStatus.SUCCEEDED, 2, 2, 1.0)
    system = run.system
    assert system.name == "merged-v1" and system.training_job == job
    assert str(job.public_id) in system.description and str(run.public_id) in system.description
    responses = Response.objects.filter(system=system)
    assert set(responses.values_list("prompt_id", flat=True)) == test_prompt_pks(filled_study)
    assert all(r.content == r.content.strip() and r.meta["generation_run"] == str(run.public_id) for r in responses)
    assert run.generation_settings == {
        "max_new_tokens": 4,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 0,
        "batch_size": 2,
    }
    assert AuditEvent.objects.filter(action="generation_run.create", object_id=str(run.pk)).count() == 1


def test_a_rerun_changes_nothing_and_a_finished_run_is_not_claimed_again(filled_study, job, researcher):
    first = create(filled_study, job, researcher)
    generation_run_execute(run_id=first.pk, worker="test")
    assert Response.objects.filter(system__name="merged-v1").count() == 6
    contents = dict(Response.objects.filter(system__name="merged-v1").values_list("pk", "content"))

    assert generation_run_execute(run_id=first.pk, worker="test") == "not claimed"
    again = create(filled_study, job, researcher)
    assert generation_run_execute(run_id=again.pk, worker="test") == "succeeded"
    again.refresh_from_db()
    assert (again.done_prompts, again.total_prompts, again.system_id) == (6, 6, first.system_id)
    assert dict(Response.objects.filter(system__name="merged-v1").values_list("pk", "content")) == contents
    assert System.objects.filter(study=filled_study, name="merged-v1").count() == 1


def test_cancel_stops_before_the_next_batch_and_a_new_run_resumes(filled_study, job, researcher, monkeypatch):
    run = create(filled_study, job, researcher)
    store = generation._Run.store

    def store_then_cancel(self, *args, **kwargs):
        store(self, *args, **kwargs)
        generation_run_cancel(run=GenerationRun.objects.get(pk=self.run.pk), actor=researcher)

    monkeypatch.setattr(generation._Run, "store", store_then_cancel)
    assert generation_run_execute(run_id=run.pk, worker="test") == "cancelled"
    run.refresh_from_db()
    assert (run.status, run.done_prompts, run.cancel_requested) == (JobStatus.CANCELLED, 2, True)
    assert Response.objects.filter(system=run.system).count() == 2
    monkeypatch.setattr(generation._Run, "store", store)

    resumed = create(filled_study, job, researcher)
    assert generation_run_execute(run_id=resumed.pk, worker="test") == "succeeded"
    resumed.refresh_from_db()
    assert "2 of 6 prompts already answered" in resumed.log
    assert Response.objects.filter(system=run.system).count() == 6
    assert set(Response.objects.filter(system=run.system).values_list("prompt_id", flat=True)) == set(
        Prompt.objects.filter(study=filled_study).values_list("pk", flat=True)
    )


def test_cancel_of_a_queued_run_is_immediate_and_a_finished_run_refuses(filled_study, job, researcher):
    run = create(filled_study, job, researcher)
    run = generation_run_cancel(run=run, actor=researcher)
    assert run.status == JobStatus.CANCELLED
    assert generation_run_execute(run_id=run.pk, worker="test") == "not claimed"
    with pytest.raises(ValidationError, match="already finished"):
        generation_run_cancel(run=run, actor=researcher)
    assert AuditEvent.objects.filter(action="generation_run.cancel").count() == 1


def test_it_refuses_what_cannot_run(filled_study, split_export, job, tiny_base, researcher, tmp_path):
    reward = TrainingJob.objects.create(
        study=filled_study, kind="reward", status=JobStatus.SUCCEEDED, artifacts_path=job.artifacts_path
    )
    running = TrainingJob.objects.create(study=filled_study, kind="dpo", status=JobStatus.RUNNING)
    cases = [
        ({"training_job": reward}, "training_job"),
        ({"training_job": running}, "training_job"),
        ({"training_job": None}, "training_job"),
        ({"training_job": job, "settings": {"temperature": -1}}, "temperature"),
        ({"training_job": job, "settings": {"nucleus": 1}}, "nucleus"),
        ({"training_job": job, "system_name": " "}, "system_name"),
        ({"training_job": job, "system_name": "brisk-base"}, "system_name"),  # imported, not generated by this job
        ({"training_job": job, "source": "endpoint", "base_url": "ftp://x", "model_name": ""}, "base_url"),
        ({"training_job": job, "source": "endpoint", "base_url": "http://x/v1", "api_key_env": "A-B"}, "api_key_env"),
    ]
    for options, field in cases:
        options.setdefault("system_name", "new-system")
        with pytest.raises(ValidationError) as caught:
            generation_run_create(study=filled_study, actor=researcher, dispatch=False, **options)
        assert field in caught.value.message_dict, (options, caught.value.message_dict)
    no_export = finished_job(filled_study, None, tiny_base, tmp_path / "other")
    with pytest.raises(ValidationError) as caught:
        create(filled_study, no_export, researcher, prompt_set="test_split")
    assert "export" in caught.value.message_dict
    assert not GenerationRun.objects.exists() and not System.objects.filter(name="new-system").exists()


def test_the_test_split_adds_prompts_a_hashed_split_puts_in_test(filled_study, tmp_path):
    from annotations.exporting.splits import PromptSplitter, SplitConfig

    split = {"seed": 3, "test_fraction": 0.5, "validation_fraction": 0.0, "stratify_by": None, "unit": "prompt"}
    export = make_export(filled_study, tmp_path / "hashed", manifest_extra={"split": split})
    splitter = PromptSplitter(SplitConfig.from_dict(split))
    hashed = {
        pk
        for pk, ext in Prompt.objects.filter(study=filled_study).values_list("pk", "external_id")
        if splitter.split_of(ext) == "test"
    }
    assert export_test_prompt_ids(export=export) == test_prompt_pks(filled_study) | hashed
    stratified = make_export(filled_study, tmp_path / "strat", manifest_extra={"split": {**split, "stratify_by": "x"}})
    assert export_test_prompt_ids(export=stratified) == test_prompt_pks(filled_study)


def test_an_endpoint_run_stores_answers_and_leaves_failed_prompts_for_a_retry(
    filled_study, split_export, researcher, fake_chat, monkeypatch
):
    monkeypatch.setenv("FAKE_CHAT_KEY", "sk-test-123")
    fake_chat.fail_containing = "exams"  # prompt p-01 fails
    options = {
        "study": filled_study,
        "system_name": "hosted-x",
        "source": "endpoint",
        "base_url": fake_chat.base_url,
        "model_name": "fake-model",
        "api_key_env": "FAKE_CHAT_KEY",
        "settings": {"batch_size": 4, "max_new_tokens": 20},
        "actor": researcher,
        "dispatch": False,
    }
    run = generation_run_create(**options)
    assert run.training_job is None and run.model_name == "fake-model"
    assert generation_run_execute(run_id=run.pk, worker="test") == "failed"
    run.refresh_from_db()
    assert (run.done_prompts, run.total_prompts) == (5, 6) and "p-01" in run.error
    assert fake_chat.authorization[0] == "Bearer sk-test-123" and fake_chat.requests[0]["max_tokens"] == 20
    assert "sk-test-123" not in run.log + run.error + run.system.description
    answer = Response.objects.get(system=run.system, prompt__external_id="p-00")
    assert answer.content.startswith("I hear you: ") and answer.meta["completion_tokens"] == 5

    fake_chat.fail_containing = None
    retry = generation_run_create(**options)
    assert generation_run_execute(run_id=retry.pk, worker="test") == "succeeded"
    assert Response.objects.filter(system=run.system).count() == 6
    assert len(fake_chat.requests) == 6 + 1  # the retry asked only for the missing prompt
