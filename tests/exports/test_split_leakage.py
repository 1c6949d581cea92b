"""A MODPO job refuses reward models trained on prompts that its own export holds out for testing."""

import pytest
from django.core.exceptions import ValidationError

from annotations.models import JobStatus, TrainingJob
from annotations.services.exports import export_create, export_prompt_ids
from annotations.services.training_jobs import training_job_launch
from tests.exports.conftest import CRITERIA

pytestmark = pytest.mark.django_db


def _export(study, researcher, seed):
    return export_create(
        study=study,
        actor=researcher,
        format="trl-dpo",
        criterion_keys=CRITERIA,
        split={"seed": seed, "test_fraction": 0.5},
        inline=True,
    )


def _reward_job(study, export):
    return TrainingJob.objects.create(
        study=study, export=export, kind="reward", criterion_key="safety", status=JobStatus.SUCCEEDED
    )


def _launch_errors(study, export, reward, researcher, base_model) -> list[str]:
    try:
        training_job_launch(
            study=study,
            kind="modpo",
            base_model=str(base_model),
            export=export,
            criterion="empathy",
            weights={"empathy": 0.5, "safety": 0.5},
            inputs=[reward],
            actor=researcher,
            dispatch=False,
        )
    except ValidationError as error:
        return [m for messages in error.message_dict.values() for m in messages]
    return []


def test_reward_models_from_an_export_with_another_split_are_refused_and_named(rated, researcher, tmp_path):
    held_out_here = _export(rated.study, researcher, seed=1)
    trained_there = _export(rated.study, researcher, seed=2)
    leaked = export_prompt_ids(export=held_out_here, split="test") & export_prompt_ids(
        export=trained_there, split="train"
    )
    assert leaked  # two seeded halves of 12 prompts overlap
    errors = _launch_errors(rated.study, held_out_here, _reward_job(rated.study, trained_there), researcher, tmp_path)
    assert any(f"was trained on {len(leaked)} prompt(s) in this export's test split" in e for e in errors), errors
    assert any("safety reward model" in e for e in errors)


def test_reward_models_trained_on_the_same_export_pass_this_check(rated, researcher, tmp_path):
    export = _export(rated.study, researcher, seed=1)
    assert not export_prompt_ids(export=export, split="test") & export_prompt_ids(export=export, split="train")
    errors = _launch_errors(rated.study, export, _reward_job(rated.study, export), researcher, tmp_path)
    assert not any("trained on" in e for e in errors)
