"""The follow-up study service and its command."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from annotations.models import (
    AuditEvent,
    Comparison,
    Criterion,
    GenerationRun,
    Response,
    ScreeningHit,
    Study,
    StudyCriterion,
    StudyMembership,
    System,
)
from annotations.services.followup import followup_study_create
from annotations.services.generation import generation_run_create
from tests.generation.conftest import TEST_PROMPTS, finished_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def generated(filled_study, split_export, tiny_base, tmp_path, researcher):
    """A third system, generated (here: written directly) by a run of a trained job on the test split."""
    job = finished_job(filled_study, split_export, tiny_base, tmp_path)
    run = generation_run_create(
        study=filled_study,
        system_name="merged-v1",
        training_job=job,
        prompt_set="test_split",
        actor=researcher,
        dispatch=False,
    )
    for prompt in filled_study.prompts.all():
        content = (
            "As an AI language model I care." if prompt.external_id == "p-04" else f"a reply to {prompt.external_id}"
        )
        Response.objects.create(
            study=filled_study,
            prompt=prompt,
            system=run.system,
            external_id=f"g-{prompt.external_id}",
            content=content,
            content_hash="h",
        )
    return run


def test_it_copies_criteria_systems_prompts_and_responses_and_builds_every_pair(
    filled_study, generated, researcher, clinician
):
    # A newer version of a criterion exists: the follow-up still uses the source's versions.
    empathy = Criterion.objects.get(key="empathy", version=1)
    Criterion.objects.create(key="empathy", version=2, title="x", question="q", better_when="b", worse_when="w")
    filled_study.rationale_mode = "per_criterion"
    filled_study.scale_points = 5
    filled_study.save()

    study = followup_study_create(
        source=filled_study,
        slug="s1-followup",
        title="Follow-up",
        system_names=["merged-v1", "brisk-base", "careful-v2"],
        generation_run=generated,
        carry_clinicians=True,
        actor=researcher,
    )
    source_rows = list(StudyCriterion.objects.filter(study=filled_study).values_list("criterion_id", "position"))
    assert list(StudyCriterion.objects.filter(study=study).values_list("criterion_id", "position")) == source_rows
    assert empathy.pk in [criterion for criterion, _ in source_rows]
    assert (study.scale_points, study.rationale_mode, study.overlap_k, study.status) == (5, "per_criterion", 2, "draft")
    copies = {s.name: s for s in System.objects.filter(study=study)}
    assert set(copies) == {"merged-v1", "brisk-base", "careful-v2"}
    assert copies["merged-v1"].training_job == generated.training_job
    assert sorted(study.prompts.values_list("external_id", flat=True)) == sorted(TEST_PROMPTS)
    assert Response.objects.filter(study=study).count() == 2 * 3
    assert Comparison.objects.filter(study=study).count() == 2 * 3  # 3 pairs per prompt
    for comparison in Comparison.objects.filter(study=study).select_related("response_first", "response_second"):
        assert comparison.response_first.system_id != comparison.response_second.system_id
        assert comparison.response_first.prompt_id == comparison.prompt_id == comparison.response_second.prompt_id
    hit = ScreeningHit.objects.get(response__study=study)
    assert hit.term == "as an ai language model" and hit.response.system.name == "merged-v1"
    roles = dict(StudyMembership.objects.filter(study=study).values_list("user__username", "role"))
    assert roles == {researcher.username: "owner", clinician.username: "clinician"}
    event = AuditEvent.objects.get(action="study.followup_create")
    assert event.data["comparisons"] == 6 and event.data["source"] == "s1"


def test_without_restriction_it_uses_prompts_every_chosen_system_answered(filled_study, generated, researcher):
    Response.objects.filter(system__name="brisk-base", prompt__external_id="p-00").update(excluded=True)
    study = followup_study_create(
        source=filled_study, slug="s1-f2", title="", system_names=["brisk-base", "careful-v2"], actor=researcher
    )
    assert study.prompts.count() == 5 and study.comparisons.count() == 5
    assert not study.memberships.filter(role="clinician").exists()
    assert study.title == "Follow-up of Study one"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"system_names": ["brisk-base", "nope"]}, "systems"),
        ({"system_names": ["brisk-base"]}, "systems"),
        ({"slug": "s1"}, "slug"),
        ({"slug": "not a slug"}, "slug"),
        ({"prompt_ids": [10**9]}, "prompts"),
    ],
)
def test_it_refuses_bad_input_and_leaves_nothing_behind(filled_study, researcher, options, field):
    arguments = {"slug": "s1-f", "title": "F", "system_names": ["brisk-base", "careful-v2"], **options}
    before = (Study.objects.count(), System.objects.count(), Response.objects.count(), AuditEvent.objects.count())
    with pytest.raises(ValidationError) as caught:
        followup_study_create(source=filled_study, actor=researcher, **arguments)
    assert field in caught.value.message_dict
    after = (Study.objects.count(), System.objects.count(), Response.objects.count(), AuditEvent.objects.count())
    assert after == before


def test_no_shared_prompts_is_refused(filled_study, generated, researcher):
    Response.objects.filter(system__name="merged-v1", prompt__external_id__in=TEST_PROMPTS).delete()
    with pytest.raises(ValidationError, match="No prompt was answered"):
        followup_study_create(
            source=filled_study,
            slug="s1-f",
            title="F",
            system_names=["merged-v1", "brisk-base"],
            generation_run=generated,
            actor=researcher,
        )


def test_a_failure_midway_rolls_everything_back(filled_study, researcher, monkeypatch):
    from annotations.services import followup

    def broken(**kwargs):
        raise RuntimeError("screening broke")

    monkeypatch.setattr(followup, "responses_screen", broken)
    with pytest.raises(RuntimeError):
        followup_study_create(
            source=filled_study, slug="s1-f", title="F", system_names=["brisk-base", "careful-v2"], actor=researcher
        )
    assert not Study.objects.filter(slug="s1-f").exists()
    assert System.objects.count() == 2 and not Comparison.objects.exclude(study=filled_study).exists()


def test_the_command_creates_it_restricted_to_an_exports_test_split(filled_study, split_export, researcher, capsys):
    call_command(
        "followup_study",
        "--from",
        "s1",
        "--new",
        "s1-cmd",
        "--systems",
        "brisk-base",
        "careful-v2",
        "--title",
        "By command",
        "--carry-clinicians",
        "--export",
        str(split_export.public_id),
        "--user",
        "alice",
    )
    out = capsys.readouterr().out
    assert "Created study s1-cmd: 2 systems, 2 prompts, 2 comparisons, 1 clinicians" in out
    study = Study.objects.get(slug="s1-cmd")
    assert study.title == "By command" and study.owner == researcher
    with pytest.raises(CommandError, match="systems: Unknown system"):
        call_command("followup_study", "--from", "s1", "--new", "s1-cmd2", "--systems", "brisk-base", "ghost")
    with pytest.raises(CommandError, match="slug"):
        call_command("followup_study", "--from", "s1", "--new", "s1-cmd", "--systems", "brisk-base", "careful-v2")
    assert not GenerationRun.objects.exists()
