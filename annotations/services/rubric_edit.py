"""Editing a study's rubric: criteria texts and order, the scale and the rationale settings, as numbered
rubric versions (RubricVersion) with what changed.

A changed text never edits a Criterion row in place: ratings point at the row they were given under, so an
edit makes (or reuses) another version of that key and re-links the study. Version 1 of a study's history is
recorded lazily (the rubric as it stood before the first edit), so the history is complete for studies made
before rubric editing existed.
"""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from annotations.models import Comparison, Criterion, Judgment, Rating, RubricVersion, Study, StudyCriterion
from annotations.rubric import TEXT_FIELDS, RubricError, rubric_changes, rubric_clean
from annotations.services.audit import audit_record
from annotations.services.studies import study_criteria

SCALE_POINTS = (3, 5, 7)
MAX_NOTE = 2000


@dataclass(frozen=True)
class RubricSettings:
    scale_points: int
    rationale_mode: str
    rationale_required: bool
    rationale_min_length: int


@dataclass(frozen=True)
class RubricEditOutcome:
    version: RubricVersion | None  # None when nothing changed
    changes: list[str]


def criterion_snapshot(criterion: Criterion, position: int) -> dict[str, Any]:
    return {
        "key": criterion.key,
        "version": criterion.version,
        "title": criterion.title,
        "question": criterion.question,
        "better_when": criterion.better_when,
        "worse_when": criterion.worse_when,
        "position": position,
        "is_overall": criterion.is_overall,
    }


def rubric_snapshot(study: Study) -> list[dict[str, Any]]:
    """The study's criteria now, as a RubricVersion stores them."""
    return [criterion_snapshot(c, position) for position, c in enumerate(study_criteria(study))]


def rubric_settings(study: Study) -> RubricSettings:
    return RubricSettings(
        scale_points=study.scale_points,
        rationale_mode=study.rationale_mode,
        rationale_required=study.rationale_required,
        rationale_min_length=study.rationale_min_length,
    )


def rubric_versions_ensure(*, study: Study) -> RubricVersion:
    """The study's latest rubric version, recording version 1 (the rubric as it stands) if it has none.

    Safe to call from a page view: two first visits at once both end with the one row the unique
    constraint lets in."""
    latest = RubricVersion.objects.filter(study=study).order_by("-number").first()
    if latest is not None:
        return latest
    try:
        with transaction.atomic():
            return RubricVersion.objects.create(
                study=study,
                number=1,
                criteria=rubric_snapshot(study),
                changes=[],
                note="The rubric as the study was set up.",
                after_open=False,
                created_by=study.owner,
            )
    except IntegrityError:
        return RubricVersion.objects.get(study=study, number=1)


def ratings_exist(study: Study) -> int:
    """How many ratings and judgments the study holds (any kind of rater)."""
    return (
        Rating.objects.filter(assignment__study=study).count()
        + Judgment.objects.filter(comparison__study=study).count()
    )


def scale_change_refusal(*, study: Study, scale_points: int) -> str | None:
    """Why the study's scale may not change to `scale_points` now, or None if it may."""
    if scale_points == study.scale_points:
        return None
    if (
        Rating.objects.filter(assignment__study=study).exists()
        or Judgment.objects.filter(comparison__study=study).exists()
    ):
        given = ratings_exist(study)
        return (
            f"The scale cannot change: {given} answer{'s' if given != 1 else ''} (ratings and judgments) were given on the "
            f"{study.scale_points}-point scale, and answers on two scales cannot be pooled. Start a follow-up "
            "study for a different scale."
        )
    limit = scale_points // 2
    gold = [
        c.pk
        for c in Comparison.objects.filter(study=study, is_gold=True).only("gold_expected")
        if any(abs(int(v)) > limit for v in (c.gold_expected or {}).values())
    ]
    if gold:
        return (
            f"The scale cannot change: {len(gold)} gold comparison{'s' if len(gold) != 1 else ''} expect answers "
            f"beyond the {scale_points}-point scale; mark {'them' if len(gold) != 1 else 'it'} again first."
        )
    return None


def _clean_settings(study: Study, values: dict[str, Any]) -> tuple[RubricSettings, dict[str, list[str]]]:
    current = rubric_settings(study)
    errors: dict[str, list[str]] = {}
    scale = values.get("scale_points", current.scale_points)
    if isinstance(scale, bool) or scale not in SCALE_POINTS:
        errors["scale_points"] = ["The scale is 3, 5 or 7 points."]
        scale = current.scale_points
    mode = values.get("rationale_mode", current.rationale_mode)
    if mode not in Study.RationaleMode.values:
        errors["rationale_mode"] = [f"The rationale is one of: {', '.join(Study.RationaleMode.values)}."]
        mode = current.rationale_mode
    required = values.get("rationale_required", current.rationale_required)
    if not isinstance(required, bool):
        errors["rationale_required"] = ["Rationale required is true or false."]
        required = current.rationale_required
    minimum = values.get("rationale_min_length", current.rationale_min_length)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or not 0 <= minimum <= 5000:
        errors["rationale_min_length"] = ["The shortest rationale is a whole number of characters from 0 to 5000."]
        minimum = current.rationale_min_length
    if required and mode == Study.RationaleMode.NONE:
        errors["rationale_required"] = ["A rationale cannot be required when none is asked for."]
    return RubricSettings(scale, mode, required, minimum), errors


def settings_changes(old: RubricSettings, new: RubricSettings) -> list[str]:
    lines = []
    if old.scale_points != new.scale_points:
        lines.append(f"Scale: {old.scale_points}-point → {new.scale_points}-point")
    if old.rationale_mode != new.rationale_mode:
        labels = dict(Study.RationaleMode.choices)
        lines.append(f"Rationale: {labels[old.rationale_mode]} → {labels[new.rationale_mode]}")
    if (old.rationale_required, old.rationale_min_length) != (new.rationale_required, new.rationale_min_length):
        lines.append(f"Rationale: {_requirement(old)} → {_requirement(new)}")
    return lines


def _requirement(settings: RubricSettings) -> str:
    if not settings.rationale_required:
        return "optional"
    return (
        f"required, at least {settings.rationale_min_length} characters"
        if settings.rationale_min_length
        else ("required")
    )


def _criterion_for(key: str, text: dict[str, str], *, is_overall: bool) -> Criterion:
    """The Criterion row for `key` with exactly this text: an existing version if one matches, else the next."""
    same = Criterion.objects.filter(key=key, is_overall=is_overall, **text).order_by("-version").first()
    if same is not None:
        return same
    latest = Criterion.objects.filter(key=key).aggregate(v=Max("version"))["v"] or 0
    criterion = Criterion(key=key, version=latest + 1, is_overall=is_overall, **text)
    criterion.full_clean(validate_unique=False)
    criterion.save()
    return criterion


def after_open_warning(*, study: Study, number: int) -> str:
    return (
        f"This study is {study.status}. Ratings already given were made under rubric v{number}; saving creates "
        f"v{number + 1}. Ratings keep the version they were made under, and reports and exports cite versions."
    )


@transaction.atomic
def rubric_edit(
    *,
    study: Study,
    actor: AbstractBaseUser | None,
    criteria: list[dict[str, Any]],
    settings: dict[str, Any] | None = None,
    note: str = "",
    confirm: bool = False,
) -> RubricEditOutcome:
    """Replace the study's criteria (texts, order, added, removed) and rubric settings; record a version.

    `criteria` in the order wanted (the overall item is put last); `settings` may hold scale_points,
    rationale_mode, rationale_required, rationale_min_length (missing ones stay). Once the study has
    opened, `confirm` must be true. Raises ValidationError with one message list per field; nothing is
    written then. Returns the new version, or None with no changes when nothing differs."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    latest = rubric_versions_ensure(study=study)
    current = study_criteria(study)
    overall = next((c.key for c in current if c.is_overall), None)
    errors: dict[str, list[str]] = {}
    try:
        rows = rubric_clean(criteria, overall_key=overall)
    except RubricError as error:
        errors.update(error.errors)
        rows = []
    new_settings, setting_errors = _clean_settings(study, settings or {})
    errors.update(setting_errors)
    note = str(note or "").strip()
    if len(note) > MAX_NOTE:
        errors["note"] = [f"The note is longer than {MAX_NOTE} characters."]
    refusal = (
        None if "scale_points" in errors else scale_change_refusal(study=study, scale_points=new_settings.scale_points)
    )
    if refusal:
        errors["scale_points"] = [refusal]
    if errors:
        raise ValidationError(errors)

    old_snapshot = rubric_snapshot(study)
    by_key = {c.key: c for c in current}
    chosen: list[Criterion] = []
    for row in rows:
        text = {field: row[field] for field in TEXT_FIELDS}
        existing = by_key.get(row["key"])
        if existing is not None and all(getattr(existing, f) == v for f, v in text.items()):
            chosen.append(existing)
        else:
            is_overall = existing.is_overall if existing is not None else row["key"] == "overall" and overall is None
            chosen.append(_criterion_for(row["key"], text, is_overall=is_overall))
    new_snapshot = [criterion_snapshot(c, position) for position, c in enumerate(chosen)]
    changes = rubric_changes(old_snapshot, new_snapshot) + settings_changes(rubric_settings(study), new_settings)
    if not changes:
        return RubricEditOutcome(version=None, changes=[])
    after_open = study.status != Study.Status.DRAFT
    if after_open and not confirm:
        raise ValidationError(
            {"confirm": [after_open_warning(study=study, number=latest.number) + " Confirm to save."]},
            code="confirm_required",
        )

    if [c.pk for c in current] != [c.pk for c in chosen]:
        StudyCriterion.objects.filter(study=study).delete()
        StudyCriterion.objects.bulk_create(
            [StudyCriterion(study=study, criterion=c, position=position) for position, c in enumerate(chosen)]
        )
    study.scale_points = new_settings.scale_points
    study.rationale_mode = new_settings.rationale_mode
    study.rationale_required = new_settings.rationale_required
    study.rationale_min_length = new_settings.rationale_min_length
    study.save(update_fields=["scale_points", "rationale_mode", "rationale_required", "rationale_min_length"])
    version = RubricVersion.objects.create(
        study=study,
        number=latest.number + 1,
        criteria=new_snapshot,
        changes=changes,
        note=note,
        after_open=after_open,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    audit_record(
        actor=actor,
        action="rubric.edit",
        study=study,
        obj=version,
        data={
            "version": version.number,
            "changes": changes,
            "after_open": after_open,
            "criteria": {c.key: c.version for c in chosen},
            "scale_points": study.scale_points,
        },
    )
    return RubricEditOutcome(version=version, changes=changes)


def rubric_versions(*, study: Study) -> list[RubricVersion]:
    """Every rubric version of the study, newest first (version 1 recorded if missing)."""
    rubric_versions_ensure(study=study)
    return list(RubricVersion.objects.filter(study=study).select_related("created_by").order_by("-number"))


def _pairs_ever(study: Study, keys: list[str] | None) -> set[tuple[str, int]]:
    pairs = {(c.key, c.version) for c in study_criteria(study)}
    for snapshot in RubricVersion.objects.filter(study=study).values_list("criteria", flat=True):
        pairs |= {(item["key"], item["version"]) for item in snapshot or []}
    return {(k, v) for k, v in pairs if keys is None or k in keys}


def study_criterion_ids_ever(*, study: Study, keys: list[str] | None = None) -> dict[str, list[int]]:
    """Per criterion key (of `keys`, default all), the ids of every Criterion version the study has used,
    oldest first: its current links plus those in its rubric versions. Ratings and judgments of the study
    can only point at these rows, so exports read them all and group by key."""
    pairs = _pairs_ever(study, keys)
    if not pairs:
        return {}
    query = Q()
    for key, version in pairs:
        query |= Q(key=key, version=version)
    found: dict[str, list[tuple[int, int]]] = {}
    for pk, key, version in Criterion.objects.filter(query).values_list("pk", "key", "version"):
        found.setdefault(key, []).append((version, pk))
    return {key: [pk for _, pk in sorted(rows)] for key, rows in found.items()}


def study_criterion_versions_ever(*, study: Study, keys: list[str] | None = None) -> dict[str, list[int]]:
    """Per criterion key, the version numbers the study has used, ascending."""
    versions: dict[str, list[int]] = {}
    for key, version in sorted(_pairs_ever(study, keys)):
        versions.setdefault(key, []).append(version)
    return versions


def cited_versions(versions: list[int] | None) -> str | int | None:
    """How an export or report cites the versions of one criterion: the number when there is one, else
    "1,2" (ascending; the last is the one in force)."""
    if not versions:
        return None
    return versions[0] if len(versions) == 1 else ",".join(str(v) for v in versions)
