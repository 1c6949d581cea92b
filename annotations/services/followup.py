"""Follow-up studies: the chosen systems of a study (typically trained models and their base), compared
again on shared prompts, by clinicians, under the very same rubric versions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import (
    GenerationRun,
    PreferenceExport,
    Prompt,
    Response,
    Study,
    StudyCriterion,
    StudyMembership,
    System,
)
from annotations.services.audit import audit_record
from annotations.services.comparisons import comparisons_build, responses_screen
from annotations.services.generation import export_test_prompt_ids, generation_prompts
from annotations.services.studies import SLUG_UNAVAILABLE, study_insert

# What a follow-up keeps of its source's design. Gold items and calibration are not copied (the
# follow-up has no gold comparisons), nor the screening override (its responses are screened anew).
COPIED_SETTINGS = (
    "scale_points",
    "overlap_k",
    "rationale_mode",
    "rationale_required",
    "rationale_min_length",
    "one_prompt_per_rater",
    "lease_minutes",
    "quota_per_rater",
    "min_shared_per_rater_pair",
)


@dataclass(frozen=True)
class FollowupSummary:
    systems: int
    prompts: int
    responses: int
    comparisons: int
    screening_hits: int
    clinicians: int


def followup_candidate_prompt_ids(
    *,
    source: Study,
    prompt_ids: Iterable[int] | None = None,
    generation_run: GenerationRun | None = None,
    export: PreferenceExport | None = None,
) -> set[int] | None:
    """The prompts a follow-up may use, from at most one restriction (None: no restriction).

    prompt_ids: prompts of the source; generation_run: the prompts that run was asked to answer;
    export: the prompts its split puts in test.
    """
    given = [value is not None for value in (prompt_ids, generation_run, export)]
    if sum(given) > 1:
        raise ValidationError({"prompts": ["Restrict the prompts one way: ids, a generation run or an export."]})
    if prompt_ids is not None:
        ids = set(prompt_ids)
        found = set(Prompt.objects.filter(study=source, pk__in=ids).values_list("pk", flat=True))
        if found != ids:
            raise ValidationError({"prompts": ["Some prompts are not in the source study."]})
        return ids
    if generation_run is not None:
        if generation_run.study_id != source.pk:
            raise ValidationError({"generation_run": ["That generation run belongs to another study."]})
        prompts = generation_prompts(study=source, prompt_set=generation_run.prompt_set, export=generation_run.export)
        return {prompt.pk for prompt in prompts}
    if export is not None:
        if export.study_id != source.pk:
            raise ValidationError({"export": ["That export belongs to another study."]})
        if not export.path:
            raise ValidationError({"export": ["That export is not finished."]})
        return export_test_prompt_ids(export=export)
    return None


@transaction.atomic
def followup_study_create(
    *,
    source: Study,
    slug: str,
    title: str,
    system_names: list[str],
    prompt_ids: Iterable[int] | None = None,
    generation_run: GenerationRun | None = None,
    export: PreferenceExport | None = None,
    carry_clinicians: bool = False,
    actor: AbstractBaseUser | None = None,
    description: str = "",
) -> Study:
    """A new draft study comparing `system_names` of `source` on the prompts every one of them answered
    (within the restriction, if any): same rubric criterion versions in the same order, same scale,
    rationale and overlap settings; copies of the systems (keeping their training-job lineage), prompts
    and responses; all pairs built; responses screened, so revealing text blocks opening as always.
    carry_clinicians: the source's clinicians (with their quotas) join it. The actor owns it.
    All or nothing; raises ValidationError naming the field.
    """
    errors: dict[str, str] = {}
    slug = (slug or "").strip()
    title = (title or "").strip() or f"Follow-up of {source.title}"[:200]
    names = list(dict.fromkeys(name.strip() for name in system_names if name and name.strip()))
    if Study.objects.filter(slug=slug).exists():
        errors["slug"] = SLUG_UNAVAILABLE
    systems = {s.name: s for s in System.objects.filter(study=source, name__in=names)}
    unknown = [name for name in names if name not in systems]
    if unknown:
        errors["systems"] = "Unknown system(s) in this study: " + ", ".join(unknown) + "."
    elif len(names) < 2:
        errors["systems"] = "Choose at least two systems to compare."
    if errors:
        raise ValidationError({name: [message] for name, message in errors.items()})
    allowed = followup_candidate_prompt_ids(
        source=source, prompt_ids=prompt_ids, generation_run=generation_run, export=export
    )

    # Prompts answered (by a response still in use) by every chosen system.
    responses = Response.objects.filter(study=source, system__in=systems.values(), excluded=False)
    if allowed is not None:
        responses = responses.filter(prompt_id__in=allowed)
    by_prompt: dict[int, dict[int, Response]] = {}
    for response in responses.order_by("prompt_id", "pk"):
        by_prompt.setdefault(response.prompt_id, {}).setdefault(response.system_id, response)
    shared = sorted(prompt_id for prompt_id, answers in by_prompt.items() if len(answers) == len(systems))
    if not shared:
        raise ValidationError({"prompts": ["No prompt was answered by every chosen system (within the restriction)."]})

    study = Study(
        slug=slug,
        title=title[:200],
        # Clinicians read a study's description: it must never name a system.
        description=description or f"Follow-up of {source.title}.",
        owner=actor if actor is not None and actor.is_authenticated else None,
        **{name: getattr(source, name) for name in COPIED_SETTINGS},
    )
    study_insert(study)
    StudyCriterion.objects.bulk_create(
        [
            StudyCriterion(study=study, criterion_id=row.criterion_id, position=row.position)
            for row in source.study_criteria.order_by("position")
        ]
    )
    if study.owner is not None:
        StudyMembership.objects.create(study=study, user=study.owner, role=StudyMembership.Role.OWNER)
    clinicians = 0
    if carry_clinicians:
        memberships = StudyMembership.objects.filter(study=source, role=StudyMembership.Role.CLINICIAN)
        if study.owner is not None:
            memberships = memberships.exclude(user=study.owner)
        created = StudyMembership.objects.bulk_create(
            [
                StudyMembership(study=study, user_id=m.user_id, role=StudyMembership.Role.CLINICIAN, quota=m.quota)
                for m in memberships
            ]
        )
        clinicians = len(created)

    copies = {
        pk: System(study=study, name=s.name, description=s.description, training_job_id=s.training_job_id)
        for pk, s in ((s.pk, s) for s in systems.values())
    }
    System.objects.bulk_create(list(copies.values()))
    prompt_copies = {
        prompt.pk: Prompt(
            study=study,
            external_id=prompt.external_id,
            messages=prompt.messages,
            meta=prompt.meta,
            content_hash=prompt.content_hash,
        )
        for prompt in Prompt.objects.filter(pk__in=shared).order_by("pk")
    }
    Prompt.objects.bulk_create(list(prompt_copies.values()))
    response_copies = [
        Response(
            study=study,
            prompt=prompt_copies[prompt_id],
            system=copies[response.system_id],
            external_id=response.external_id,
            content=response.content,
            meta=response.meta,
            content_hash=response.content_hash,
        )
        for prompt_id in shared
        for response in by_prompt[prompt_id].values()
    ]
    Response.objects.bulk_create(response_copies)
    comparisons = comparisons_build(study=study, strategy="all_pairs", actor=actor)
    screening = responses_screen(study=study)
    summary = FollowupSummary(
        systems=len(copies),
        prompts=len(prompt_copies),
        responses=len(response_copies),
        comparisons=comparisons,
        screening_hits=screening.open_hits,
        clinicians=clinicians,
    )
    audit_record(
        actor=actor,
        action="study.followup_create",
        study=study,
        obj=study,
        data={
            "source": source.slug,
            "systems": names,
            "generation_run": str(generation_run.public_id) if generation_run else None,
            "export": str(export.public_id) if export else None,
            "restricted": allowed is not None,
            "carry_clinicians": carry_clinicians,
            **summary.__dict__,
        },
    )
    return study


def followup_summary(study: Study) -> FollowupSummary:
    from annotations.models import ScreeningHit

    return FollowupSummary(
        systems=study.systems.count(),
        prompts=study.prompts.count(),
        responses=study.responses.count(),
        comparisons=study.comparisons.count(),
        screening_hits=ScreeningHit.objects.filter(
            response__study=study, resolution=ScreeningHit.Resolution.OPEN, response__excluded=False
        ).count(),
        clinicians=study.memberships.filter(role=StudyMembership.Role.CLINICIAN).count(),
    )
