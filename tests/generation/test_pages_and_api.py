"""The generation and follow-up pages and API: forms, the one error shape, object permissions."""

import pytest
from django.urls import reverse

from annotations.models import GenerationRun, JobStatus, Study
from tests.generation.conftest import finished_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(filled_study, split_export, tiny_base, tmp_path):
    return finished_job(filled_study, split_export, tiny_base, tmp_path)


def login(client, user):
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_the_job_page_form_queues_a_run_shown_on_its_page(client, researcher, job, django_capture_on_commit_callbacks):
    login(client, researcher)
    page = client.get(reverse("job-detail", args=["s1", job.public_id]))
    assert (
        b"Generate responses" in page.content
        and reverse("job-generate", args=["s1", job.public_id]).encode() in page.content
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("job-generate", args=["s1", job.public_id]),
            {"system_name": "merged-v1", "prompts": "test", "max_new_tokens": "5", "temperature": "0"},
        )
    assert len(callbacks) == 1  # the task is sent after commit (not run: no worker here)
    run = GenerationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "generation-run-detail", args=["s1", run.public_id]
    )
    assert (run.prompt_set, run.total_prompts, run.generation_settings["max_new_tokens"]) == ("test_split", 2, 5)
    detail = client.get(response["Location"])
    assert b'id="run-progress"' in detail.content and b"Cancel run" in detail.content
    assert client.post(reverse("generation-run-cancel", args=["s1", run.public_id])).status_code == 302
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED

    refused = client.post(
        reverse("job-generate", args=["s1", job.public_id]), {"system_name": "brisk-base"}, follow=True
    )
    assert b"already exists" in refused.content


def test_the_followup_form_creates_the_study(client, researcher, filled_study):
    login(client, researcher)
    page = client.get(reverse("followup-create", args=["s1"]))
    assert b'name="systems" value="brisk-base"' in page.content
    bad = client.post(reverse("followup-create", args=["s1"]), {"slug": "s1", "systems": ["brisk-base"]})
    assert bad.status_code == 400 and b"not available" in bad.content
    response = client.post(
        reverse("followup-create", args=["s1"]),
        {"slug": "s1-next", "title": "Next", "systems": ["brisk-base", "careful-v2"], "carry_clinicians": "on"},
    )
    assert response.status_code == 302 and response["Location"] == reverse("study-detail", args=["s1-next"])
    study = Study.objects.get(slug="s1-next")
    assert study.comparisons.count() == 6 and study.memberships.filter(role="clinician").count() == 1


def test_the_api_creates_lists_reads_and_cancels_runs(client, researcher, job):
    login(client, researcher)
    url = reverse("api-generation-run-list", args=["s1"])
    created = client.post(
        url,
        {
            "system_name": "merged-v1",
            "training_job": str(job.public_id),
            "prompt_set": "test_split",
            "settings": {"max_new_tokens": 3},
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["status"], body["total_prompts"], body["training_job"], body["settings"]["max_new_tokens"]) == (
        "queued",
        2,
        str(job.public_id),
        3,
    )
    assert [run["id"] for run in client.get(url).json()] == [body["id"]]
    detail = client.get(reverse("api-generation-run-detail", args=["s1", body["id"]]))
    assert detail.json()["system_name"] == "merged-v1"
    cancelled = client.post(reverse("api-generation-run-cancel", args=["s1", body["id"]]))
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(reverse("api-generation-run-cancel", args=["s1", body["id"]]))
    assert again.status_code == 400 and again.json()["error"]["details"] == {
        "status": ["This run has already finished."]
    }

    bad = client.post(url, {"system_name": "x", "settings": {"temperature": -1}}, content_type="application/json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["details"]) == {"temperature", "training_job"}


def test_the_api_creates_a_followup_with_the_one_error_shape(client, researcher, filled_study):
    login(client, researcher)
    url = reverse("api-followup-create", args=["s1"])
    created = client.post(
        url,
        {"slug": "s1-api", "systems": ["brisk-base", "careful-v2"], "prompt_ids": ["p-00", "p-03"]},
        content_type="application/json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["summary"] == {
        "systems": 2,
        "prompts": 2,
        "responses": 4,
        "comparisons": 2,
        "screening_hits": 0,
        "clinicians": 0,
    }
    refused = client.post(url, {"slug": "s1-api", "systems": ["brisk-base", "ghost"]}, content_type="application/json")
    assert refused.status_code == 400
    assert set(refused.json()["error"]["details"]) == {"slug", "systems"}


def test_clinicians_and_outsiders_get_404(client, clinician, other_researcher, job, filled_study):
    run = GenerationRun.objects.create(study=filled_study, source="endpoint", system_name="x", base_url="http://h/v1")
    for user in (clinician, other_researcher):
        login(client, user)
        for url in (
            reverse("generation-run-list", args=["s1"]),
            reverse("generation-run-detail", args=["s1", run.public_id]),
            reverse("followup-create", args=["s1"]),
            reverse("api-generation-run-detail", args=["s1", run.public_id]),
        ):
            assert client.get(url).status_code == 404
        assert client.post(reverse("job-generate", args=["s1", job.public_id]), {"system_name": "y"}).status_code == 404
        assert (
            client.post(
                reverse("api-followup-create", args=["s1"]),
                {"slug": "z", "systems": ["brisk-base", "careful-v2"]},
                content_type="application/json",
            ).status_code
            == 404
        )
        client.logout()
    assert not Study.objects.filter(slug="z").exists() and GenerationRun.objects.count() == 1
