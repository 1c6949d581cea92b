"""Training jobs start only from models inside MODEL_ROOTS, or from a finished job of the same study, and the
refusal says nothing about what exists on the server's disk. Numeric options are bounded."""

import shutil

import pytest
from django.core.exceptions import ValidationError

from annotations.models import JobStatus, TrainingJob
from annotations.services.studies import study_create
from annotations.services.training_jobs import BASE_MODEL_UNAVAILABLE, training_job_launch
from tests.jobs.conftest import FAST, make_export

pytestmark = pytest.mark.django_db


def launch(study, export, base, **options):
    return training_job_launch(
        study=study,
        export=export,
        kind="dpo",
        criterion="empathy",
        base_model=base,
        hyperparameters={**FAST, **options},
        dispatch=False,
    )


def refusal(study, export, base, **options) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        launch(study, export, base, **options)
    assert not TrainingJob.objects.exists()
    return caught.value.message_dict


@pytest.fixture
def model_root(settings, tmp_path, tiny_assets):
    """A model root holding a copy of the tiny base model, and a real model directory outside every root."""
    root = tmp_path / "models"
    shutil.copytree(tiny_assets["base"], root / "tiny")
    outside = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(tiny_assets["base"], outside)
    settings.MODEL_ROOTS = [root]
    return root, outside


def test_a_model_inside_a_root_is_accepted_by_path_or_by_name(study, export, model_root):
    root, _ = model_root
    assert launch(study, export, str(root / "tiny")).base_model == str((root / "tiny").resolve())
    assert launch(study, export, "tiny").base_model == str((root / "tiny").resolve())


def test_missing_and_outside_models_get_the_same_answer(study, export, model_root, tmp_path):
    root, outside = model_root
    (root / "escape").symlink_to(outside)
    answers = {
        base: refusal(study, export, base)["base_model"]
        for base in (str(outside), "/etc", str(root / "absent"), "../elsewhere/tiny", "escape", "/nowhere/model")
    }
    assert set(map(tuple, answers.values())) == {(BASE_MODEL_UNAVAILABLE,)}
    assert not any(str(tmp_path) in message for messages in answers.values() for message in messages)


def test_a_job_may_start_from_a_finished_job_of_its_own_study_only(
    researcher, study, export, model_root, settings, tiny_assets
):
    root, _ = model_root
    other = study_create(slug="elsewhere", title="Another study", owner=researcher)
    other_export = make_export(other, tiny_assets["snapshot"])
    settings.MODEL_ROOTS = [root, settings.ARTIFACTS_ROOT.parent]  # a root that also holds the artifacts
    own = launch(study, export, "tiny")
    foreign = launch(other, other_export, "tiny")
    for job in (own, foreign):
        shutil.copytree(root / "tiny", f"{job.artifacts_path}/model")
    TrainingJob.objects.update(status=JobStatus.SUCCEEDED)

    assert launch(study, export, f"{own.artifacts_path}/model").base_model.endswith("/model")
    with pytest.raises(ValidationError) as caught:
        launch(study, export, f"{foreign.artifacts_path}/model")
    assert caught.value.message_dict["base_model"] == [BASE_MODEL_UNAVAILABLE]


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_steps", 10**7), ("batch_size", 10**6), ("max_length", 10**9), ("seed", -1), ("max_steps", "9" * 5000)],
)
def test_training_options_out_of_bounds_are_refused_naming_the_option(study, export, model_root, option, value):
    errors = refusal(study, export, "tiny", **{option: value})
    assert option in errors


def test_the_launch_form_offers_the_models_in_the_roots_and_launches_one_by_name(
    client, researcher, study, export, model_root
):
    from django.urls import reverse

    client.force_login(researcher)
    page = client.get(reverse("job-list", args=[study.slug])).content.decode()
    assert '<select id="base_model" name="base_model"' in page and '<option value="tiny"' in page
    job = launch(study, export, "tiny")
    assert job.base_model.endswith("/models/tiny")


def test_a_model_folder_suggests_settings_a_launch_leaves_unset_and_the_job_says_so(
    study, export, model_root, client, researcher
):
    root, _ = model_root
    (root / "tiny" / "training_defaults.json").write_text('{"learning_rate": 0.003, "max_length": 384}')
    job = training_job_launch(
        study=study,
        export=export,
        kind="dpo",
        criterion="empathy",
        base_model="tiny",
        hyperparameters={"max_steps": 2, "max_length": 256},  # given: wins over the suggestion
        dispatch=False,
    )
    assert job.hyperparameters["learning_rate"] == 0.003 and job.hyperparameters["max_length"] == 256
    assert "Settings suggested by the base model (training_defaults.json): learning_rate 0.003." in job.log
    # The forms say what each model suggests, and leave the settings empty so the suggestion applies.
    client.force_login(researcher)
    for page in (f"/studies/{study.slug}/jobs/", f"/studies/{study.slug}/jobs/sweeps/"):
        html = client.get(page).content.decode()
        assert "<code>tiny</code> suggests learning rate 0.003, max length 384" in html, page
        assert 'name="learning_rate" value="" placeholder="0.00005"' in html, page


@pytest.mark.parametrize(
    ("content", "words"),
    [("{not json", "is not valid JSON"), ('["lr"]', "must hold an object"), ('{"lr": 1}', "lr: unknown option")],
)
def test_a_broken_suggestions_file_is_refused_naming_it(study, export, model_root, content, words):
    root, _ = model_root
    (root / "tiny" / "training_defaults.json").write_text(content)
    (message,) = refusal(study, export, "tiny")["base_model"]
    assert message.startswith("training_defaults.json of this model") and words in message
