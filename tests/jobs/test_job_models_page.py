"""Held-out figures on the job page and in the API, the study's models page, and the reward-margins option."""

import pytest
from django.urls import reverse

from annotations.models import JobStatus, TrainingJob
from tests.jobs.conftest import make_export

pytestmark = pytest.mark.django_db


def login(client, user):
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def finished_job(study, *, kind, criterion="empathy", heldout=None, export=None, base_model="/models/tiny"):
    metrics = {"eval_loss": 0.5}
    for name, figures in (heldout or {}).items():
        metrics.update({f"heldout/{name}/{figure}": value for figure, value in figures.items()})
    return TrainingJob.objects.create(
        study=study,
        export=export,
        kind=kind,
        criterion_key=criterion,
        base_model=base_model,
        status=JobStatus.SUCCEEDED,
        result={"status": "completed", "metrics": metrics},
    )


def test_the_job_page_and_the_api_show_held_out_accuracy_on_every_criterion(client, study, researcher, export):
    job = finished_job(
        study,
        kind="dpo",
        export=export,
        heldout={"empathy": {"accuracy": 0.875, "margin": 0.2, "n": 8}, "safety": {"accuracy": 0.25, "n": 8}},
    )
    login(client, researcher)
    page = client.get(reverse("job-detail", kwargs={"slug": study.slug, "public_id": job.public_id}))
    html = page.content.decode()
    assert "Held-out clinician pairs" in html
    assert "Empathy (trained)" in html and "88%" in html and "25%" in html  # titles, not keys
    api = client.get(reverse("api-job-detail", kwargs={"slug": study.slug, "public_id": job.public_id})).json()
    assert api["heldout"] == {
        "empathy": {"accuracy": 0.875, "margin": 0.2, "n": 8.0},
        "safety": {"accuracy": 0.25, "n": 8.0},
    }


def test_the_models_page_compares_jobs_sorted_by_a_criterion_with_their_lineage(client, study, researcher, tiny_assets):
    export = make_export(study, tiny_assets["snapshot"])
    empathy_only = finished_job(
        study,
        kind="dpo",
        export=export,
        heldout={"empathy": {"accuracy": 0.9, "n": 8}, "safety": {"accuracy": 0.4, "n": 8}},
    )
    balanced = finished_job(
        study,
        kind="modpo",
        export=export,
        heldout={"empathy": {"accuracy": 0.7, "n": 8}, "safety": {"accuracy": 0.6, "n": 8}},
    )
    unscored = finished_job(study, kind="merge", criterion="", base_model="/models/other")
    login(client, researcher)
    url = reverse("job-models", kwargs={"slug": study.slug})

    def order(sort):
        rows = client.get(url, {"sort": sort}).context["rows"]
        return [row["job"] for row in rows]

    assert order("-accuracy:safety") == [balanced, empathy_only, unscored]  # no figure: last either way
    assert order("accuracy:safety") == [empathy_only, balanced, unscored]
    assert order("-accuracy:empathy")[:2] == [empathy_only, balanced]
    html = client.get(url).content.decode()
    assert str(export.public_id)[:8] in html and "/models/tiny" in html and "/models/other" in html
    assert "90%" in html and "60%" in html
    assert order("nonsense")[0] == unscored  # an unknown column falls back to newest first
    jobs_page = client.get(reverse("job-list", kwargs={"slug": study.slug})).content.decode()
    assert url in jobs_page


def test_the_launch_form_records_the_reward_margins_choice(client, study, researcher, tiny_assets):
    reward_export = make_export(study, tiny_assets["reward_snapshot"])
    login(client, researcher)
    url = reverse("job-list", kwargs={"slug": study.slug})
    form = {
        "kind": "reward",
        "export": str(reward_export.public_id),
        "criterion": "safety",
        "base_model": tiny_assets["base"],
        "max_steps": "2",
    }
    for checked in (True, False):
        response = client.post(url, {**form, **({"reward_margins": "on"} if checked else {})})
        assert response.status_code == 302, response.content.decode()[-2000:]
        job = TrainingJob.objects.latest("id")
        assert job.hyperparameters["reward_margins"] is checked
        page = client.get(response["Location"]).content.decode()
        assert ("each pair's strength margin" in page) is checked
        assert ("off: margin 0" in page) is not checked


def test_reward_margins_are_refused_for_an_export_without_margins(client, study, researcher, export, tiny_assets):
    login(client, researcher)
    form = {
        "kind": "reward",
        "export": str(export.public_id),
        "criterion": "safety",
        "base_model": tiny_assets["base"],
        "reward_margins": "on",
    }
    response = client.post(reverse("job-list", kwargs={"slug": study.slug}), form)
    assert response.status_code == 400
    assert "reward margins need" in response.content.decode()


def test_the_launch_form_sets_the_number_of_processes_and_refuses_fsdp_for_lora(client, study, researcher, tiny_assets):
    reward_export = make_export(study, tiny_assets["reward_snapshot"])
    login(client, researcher)
    url = reverse("job-list", kwargs={"slug": study.slug})
    page = client.get(url).content.decode()
    assert 'name="num_processes"' in page and 'name="distributed"' in page
    form = {
        "kind": "reward",
        "export": str(reward_export.public_id),
        "criterion": "safety",
        "base_model": tiny_assets["base"],
        "max_steps": "2",
        "use_lora": "on",
        "num_processes": "2",
        "distributed": "ddp",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    job = TrainingJob.objects.latest("id")
    assert job.hyperparameters["num_processes"] == 2
    assert job.hyperparameters["distributed"] == "ddp"
    refused = client.post(url, {**form, "distributed": "fsdp"})
    assert refused.status_code == 400
    assert "FSDP" in refused.content.decode() or "fsdp" in refused.content.decode()


def test_the_agreement_at_export_time_is_a_table_with_titles_on_the_job_and_export_pages(
    client, study, researcher, export
):
    job = finished_job(study, kind="dpo", export=export, heldout={"empathy": {"accuracy": 0.5, "n": 8}})
    login(client, researcher)
    for name, kwargs in (
        ("job-detail", {"public_id": job.public_id}),
        ("export-detail", {"public_id": export.public_id}),
    ):
        html = client.get(reverse(name, kwargs={"slug": study.slug, **kwargs})).content.decode()
        assert "Agreement at export time" in html, name
        assert '<th scope="row">Empathy</th>' in html, name  # the criterion's title, in the table
        assert "0.61 <span" in html and "[0.41, 0.78]" in html and "81%" in html, name
        assert "by_criterion" not in html and "alpha_nominal" not in html, name  # no JSON dump
