"""A researcher runs a survey, derives a weight set, and launches a MODPO job with it: the job takes the set's
weights and its lineage names the set, its method and its derivation. The API and the command do the same."""

import json
import shutil
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from annotations.models import JobStatus, TrainingJob
from annotations.services.studies import study_create
from annotations.services.surveys import (
    survey_create,
    survey_open,
    survey_response_submit,
    survey_submission_key_issue,
    weight_set_derive,
)
from annotations.services.training_jobs import training_job_launch, training_job_lineage
from tests.jobs.conftest import FAST, make_export

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_criteria_study(researcher):
    return study_create(slug="prefs", title="Preferences", owner=researcher, criterion_keys=["empathy", "safety"])


@pytest.fixture
def answered_survey(two_criteria_study, researcher):
    survey = survey_create(
        study=two_criteria_study,
        actor=researcher,
        title="Patients' priorities",
        consent_text="ok",
        questions=[{"key": "age", "label": "Age group", "kind": "choice", "options": ["18-34", "35+"]}],
    )
    survey = survey_open(survey=survey, actor=researcher)
    for empathy, safety, top, age in ((5, 3, "empathy", "18-34"), (4, 4, "empathy", "35+"), (3, 5, "safety", "35+")):
        survey_response_submit(
            survey=survey,
            submission_key=survey_submission_key_issue(survey),
            consent=True,
            importance={"empathy": empathy, "safety": safety},
            top_priority=top,
            answers={"age": age},
        )
    return survey


@pytest.fixture
def safety_reward_job(two_criteria_study, tiny_assets, tmp_path):
    """A finished reward model for safety, trained on the same export (a copy of the tiny base model)."""
    export = make_export(two_criteria_study, tiny_assets["snapshot"])
    shutil.copytree(tiny_assets["base"], tmp_path / "reward-safety")
    job = TrainingJob.objects.create(
        study=two_criteria_study,
        export=export,
        kind="reward",
        criterion_key="safety",
        status=JobStatus.SUCCEEDED,
        artifacts_path=str(tmp_path / "reward-safety"),
    )
    return job


def test_a_modpo_job_launched_with_a_survey_weight_set_records_the_set_and_its_derivation(
    answered_survey,
    safety_reward_job,
    tiny_assets,
    researcher,
):
    weight_set = weight_set_derive(
        survey=answered_survey, actor=researcher, name="patients-mean", method="mean_importance", safety_minimum=0.5
    )
    # means: empathy 4, safety 4 -> 0.5 each; the safety minimum 0.5 is already met.
    assert weight_set.weights == pytest.approx({"empathy": 0.5, "safety": 0.5})
    job = training_job_launch(
        study=answered_survey.study,
        kind="modpo",
        base_model=tiny_assets["base"],
        export=safety_reward_job.export,
        criterion="empathy",
        inputs=[safety_reward_job],
        hyperparameters=FAST,
        weight_set=weight_set,
        actor=researcher,
        dispatch=False,
    )
    assert job.weight_set == weight_set and job.weights == weight_set.weights
    lineage = training_job_lineage(job)["weight_set"]
    assert lineage["name"] == "patients-mean" and lineage["method"] == "mean_importance"
    assert lineage["derivation"]["respondents"] == 3
    assert lineage["derivation"]["safety_minimum"] == 0.5
    assert lineage["derivation"]["survey_title"] == "Patients' priorities"


def test_weights_and_a_weight_set_together_or_a_set_of_another_study_are_refused(
    answered_survey,
    safety_reward_job,
    tiny_assets,
    researcher,
):
    weight_set = weight_set_derive(survey=answered_survey, actor=researcher, name="w", method="top_priority")
    other = study_create(slug="other", title="Other", owner=researcher, criterion_keys=["empathy", "safety"])
    launch = {
        "kind": "modpo",
        "base_model": tiny_assets["base"],
        "export": safety_reward_job.export,
        "criterion": "empathy",
        "inputs": [safety_reward_job],
        "hyperparameters": FAST,
        "dispatch": False,
    }
    with pytest.raises(ValidationError) as caught:
        training_job_launch(study=answered_survey.study, weights={"empathy": 1.0}, weight_set=weight_set, **launch)
    assert "not both" in caught.value.message_dict["weight_set"][0]
    with pytest.raises(ValidationError) as caught:
        training_job_launch(study=other, weight_set=weight_set, **{**launch, "inputs": []})
    assert "another study" in caught.value.message_dict["weight_set"][0]
    assert not TrainingJob.objects.filter(kind="modpo").exists()


def test_the_command_derives_a_segment_weight_set(answered_survey):
    out = StringIO()
    call_command(
        "survey_weights",
        "--study=prefs",
        f"--survey={answered_survey.public_id}",
        "--method=top_priority",
        "--name=older",
        "--segment=age=35+",
        "--safety-min=0.2",
        stdout=out,
    )
    printed = json.loads(out.getvalue())
    # age 35+: one empathy, one safety top priority -> 0.5 each.
    assert printed["weights"] == pytest.approx({"empathy": 0.5, "safety": 0.5})
    assert printed["derivation"]["segment"] == {"question": "age", "answer": "35+"}


def test_the_api_gives_the_results_page_figures_and_derives_weight_sets(answered_survey, client, researcher):
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    results = client.get(reverse("api-survey-results", args=["prefs", answered_survey.public_id])).json()
    assert results["respondents"] == 3
    assert [(row["criterion"], row["mean"]) for row in results["importance"]] == [("empathy", 4.0), ("safety", 4.0)]
    assert [(row["criterion"], row["count"]) for row in results["top_priority"]] == [("empathy", 2), ("safety", 1)]
    created = client.post(
        reverse("api-weight-set-list", args=["prefs"]),
        {"survey": str(answered_survey.public_id), "name": "api", "method": "top_priority"},
        content_type="application/json",
    )
    assert created.status_code == 201
    assert created.json()["weights"] == pytest.approx({"empathy": 2 / 3, "safety": 1 / 3})
    refused = client.post(
        reverse("api-weight-set-list", args=["prefs"]),
        {"survey": str(answered_survey.public_id), "name": "borda", "method": "borda"},
        content_type="application/json",
    )
    assert refused.status_code == 400 and "ranked" in json.dumps(refused.json())


def test_the_training_form_and_the_jobs_api_launch_modpo_with_a_weight_set_of_the_study_only(
    answered_survey, safety_reward_job, tiny_assets, researcher, client
):
    weight_set = weight_set_derive(survey=answered_survey, actor=researcher, name="form-set", method="top_priority")
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    page = client.get(reverse("job-list", args=["prefs"])).content.decode()
    assert f'<option value="{weight_set.pk}">form-set (top_priority)</option>' in page
    form = {
        "kind": "modpo",
        "base_model": tiny_assets["base"],
        "export": str(safety_reward_job.export.public_id),
        "criterion": "empathy",
        "inputs": [str(safety_reward_job.public_id)],
        "max_steps": "3",
    }
    refused = client.post(reverse("job-list", args=["prefs"]), {**form, "weight_set": "999999"})
    assert refused.status_code == 400 and "No such weight set in this study." in refused.content.decode()
    launched = client.post(
        reverse("api-job-list", args=["prefs"]),
        {**form, "inputs": form["inputs"], "weight_set": weight_set.pk, "hyperparameters": {"max_steps": 3}},
        content_type="application/json",
    )
    assert launched.status_code == 201, launched.json()
    assert launched.json()["lineage"]["weight_set"]["name"] == "form-set"
    assert TrainingJob.objects.get(kind="modpo").weight_set == weight_set
