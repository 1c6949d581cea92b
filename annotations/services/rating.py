"""Ratings from the workspace: drafts, submission, revision, gold marking and gold accuracy.

The page speaks in displayed orientation (negative favours Response 1, the left one); the database in
canonical orientation (negative favours comparison.response_first). `to_canonical` converts both ways.
Submission is idempotent: a repeated submit with the same answers changes nothing.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from annotations import compiled
from annotations.models import Assignment, Comparison, Criterion, Rater, Rating, Study, StudyCriterion, StudyMembership
from annotations.services.assignment import (
    COUNTED_PURPOSES,
    assignment_next_locked,
    day_start,
    leases_sweep_if_due,
    quota_of,
    rater_progress_extra,
)
from annotations.services.audit import audit_record, audit_record_many
from annotations.services.studies import study_criteria

MAX_DRAFT_BYTES = 64_000
MAX_TEXT = 5000


def to_canonical(value: int, *, left_is_first: bool | None) -> int:
    """Displayed value -> canonical value (and back: the conversion is its own inverse)."""
    return value if left_is_first or left_is_first is None else -value


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


@dataclass
class RatingInput:
    """What a rater sends for one pair, in displayed orientation."""

    values: dict[str, int]
    rationales: dict[str, str] = field(default_factory=dict)
    rationale: str = ""
    both_unacceptable: bool = False
    unacceptable_reason: str = ""
    total_seconds: float = 0.0
    active_seconds: float = 0.0


@dataclass(frozen=True)
class CriterionFeedback:
    key: str
    title: str
    chosen: int  # displayed orientation
    expected: int  # displayed orientation
    agrees: bool
    better_when: str
    worse_when: str
    # The researcher's explanation of the expected answers (the same for every criterion of the pair).
    explanation: str = ""


@dataclass(frozen=True)
class SubmitOutcome:
    assignment: Assignment
    created: bool
    feedback: list[CriterionFeedback] | None  # calibration items only


def _clean_text(value: Any) -> str:
    return str(value or "").strip()[:MAX_TEXT]


def _validate(*, study: Study, criteria: list[Criterion], data: RatingInput) -> None:
    errors: dict[str, list[str]] = {}
    limit = study.max_abs_value
    for criterion in criteria:
        value = data.values.get(criterion.key)
        if value is None:
            errors.setdefault(criterion.key, []).append(f"Choose an answer for “{criterion.title}”.")
        elif isinstance(value, bool) or not isinstance(value, int) or not -limit <= value <= limit:
            errors.setdefault(criterion.key, []).append(f"Expected a whole number from -{limit} to {limit}.")
    unknown = set(data.values) - {c.key for c in criteria}
    if unknown:
        errors["values"] = [f"Unknown criteria: {', '.join(sorted(unknown))}."]
    if study.rationale_required and study.rationale_mode != Study.RationaleMode.NONE:
        minimum = max(1, study.rationale_min_length)
        if study.rationale_mode == Study.RationaleMode.OVERALL:
            if len(_clean_text(data.rationale)) < minimum:
                errors["rationale"] = [f"Write a rationale of at least {minimum} characters."]
        else:
            for criterion in criteria:
                if len(_clean_text(data.rationales.get(criterion.key))) < minimum:
                    errors.setdefault(f"rationale_{criterion.key}", []).append(
                        f"Write a rationale for “{criterion.title}” of at least {minimum} characters."
                    )
    if data.both_unacceptable and not _clean_text(data.unacceptable_reason):
        errors["unacceptable_reason"] = ["Say why both responses are unacceptable."]
    if errors:
        raise ValidationError(errors)


def _rationale_for(study: Study, data: RatingInput, key: str) -> str:
    if study.rationale_mode == Study.RationaleMode.PER_CRITERION:
        return _clean_text(data.rationales.get(key))
    return ""


def calibration_feedback(
    *, assignment: Assignment, criteria: list[Criterion], canonical: dict[str, int]
) -> list[CriterionFeedback]:
    """The expected answers of a gold comparison beside the rater's, in the orientation the rater saw."""
    expected = assignment.comparison.gold_expected or {}
    feedback = []
    for criterion in criteria:
        if criterion.key not in expected or criterion.key not in canonical:
            continue
        exp = int(expected[criterion.key])
        feedback.append(
            CriterionFeedback(
                key=criterion.key,
                title=criterion.title,
                chosen=to_canonical(canonical[criterion.key], left_is_first=assignment.left_is_first),
                expected=to_canonical(exp, left_is_first=assignment.left_is_first),
                agrees=_sign(canonical[criterion.key]) == _sign(exp),
                better_when=criterion.better_when,
                worse_when=criterion.worse_when,
                explanation=assignment.comparison.gold_explanation,
            )
        )
    return feedback


def _lock_own(assignment: Assignment, rater: Rater) -> Assignment:
    return (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("study", "comparison")
        .get(pk=assignment.pk, rater=rater)
    )


def _actor(rater: Rater) -> AbstractBaseUser | None:
    return rater.user if rater.user_id else None


# ---- the study's criteria, read once per rubric change per process ------------------------------------------
# The pair page and the submit need the study's criteria on every request. A rubric edit replaces the study's
# StudyCriterion rows (new ids, from a sequence) and a Criterion row is never edited once linked (a new version
# is made instead), so (how many links, the highest link id) names one rubric: the hot queries read that pair
# as two scalar subqueries and the criteria come from this per-process cache while it is unchanged.
_CRITERIA_CACHE: dict[int, tuple[tuple[int, int], list[Criterion]]] = {}
_CRITERIA_CACHE_MAX = 512


def criteria_fingerprint_extra(study_column: str | None = None) -> dict[str, str]:
    """Extra columns (`.extra(select=...)`) naming the study's current rubric, on a query of assignments, or of
    any row whose `study_column` (quoted SQL) holds the study's id; plain SQL, so nothing to compile per request."""
    qn = connection.ops.quote_name
    study_column = study_column or f"{qn(Assignment._meta.db_table)}.{qn('study_id')}"
    links = f"FROM {qn(StudyCriterion._meta.db_table)} l WHERE l.study_id = {study_column}"
    return {"criteria_links": f"SELECT COUNT(*) {links}", "criteria_last_link": f"SELECT MAX(l.id) {links}"}


def study_criteria_cached(study: Study, row: Any = None) -> list[Criterion]:
    """study_criteria(study), from the cache when `row` (annotated by criteria_fingerprint_annotations) names
    the rubric the cache holds (see criteria_fingerprint_extra); read and cached otherwise. Without `row`, a
    plain read."""
    if row is None:
        return study_criteria(study)
    fingerprint = (row.criteria_links or 0, row.criteria_last_link or 0)
    cached = _CRITERIA_CACHE.get(study.pk)
    if cached is not None and cached[0] == fingerprint:
        return list(cached[1])
    criteria = study_criteria(study)
    if len(_CRITERIA_CACHE) >= _CRITERIA_CACHE_MAX:
        _CRITERIA_CACHE.clear()
    _CRITERIA_CACHE[study.pk] = (fingerprint, criteria)
    return list(criteria)


@transaction.atomic
def rating_submit(*, assignment: Assignment, rater: Rater, data: RatingInput) -> SubmitOutcome:
    """Store the rater's answers for a pair, canonically oriented, and close the assignment.

    A repeated submit with the same answers is a no-op (double clicks, retried requests). A lease that expired
    is reinstated if its comparison still has room; otherwise the rater is told the pair went to someone else.
    """
    locked = _lock_own(assignment, rater)
    outcome, audit = _submit_locked(locked=locked, rater=rater, criteria=study_criteria(locked.study), data=data)
    if audit is not None:
        audit_record(**audit)
    return outcome


def _submit_locked(
    *, locked: Assignment, rater: Rater, criteria: list[Criterion], data: RatingInput
) -> tuple[SubmitOutcome, dict[str, Any] | None]:
    """rating_submit's work on the locked assignment, in the caller's transaction. Returns the outcome and the
    audit_record() arguments of the new rating (None for a repeated submit), for the caller to append."""
    study = locked.study
    if study.status != Study.Status.OPEN:
        raise ValidationError("This study is closed; ratings can no longer be submitted.", code="study_closed")
    _validate(study=study, criteria=criteria, data=data)
    canonical = {key: to_canonical(v, left_is_first=locked.left_is_first) for key, v in data.values.items()}
    is_calibration = locked.purpose == Assignment.Purpose.CALIBRATION
    if locked.status == Assignment.Status.SUBMITTED:
        stored = dict(locked.ratings.values_list("criterion__key", "value"))
        if stored != canonical:
            raise ValidationError("This pair is already submitted; revise it instead.", code="already_submitted")
        feedback = (
            calibration_feedback(assignment=locked, criteria=criteria, canonical=stored) if is_calibration else None
        )
        return SubmitOutcome(assignment=locked, created=False, feedback=feedback), None
    if locked.status == Assignment.Status.SKIPPED:
        raise ValidationError("This pair was skipped.", code="skipped")
    if locked.status == Assignment.Status.EXPIRED and locked.purpose in COUNTED_PURPOSES:
        reinstated = Comparison.objects.filter(pk=locked.comparison_id, active_assignments__lt=study.overlap_k).update(
            active_assignments=F("active_assignments") + 1
        )
        if not reinstated:
            raise ValidationError(
                "This pair was passed to another clinician after a long pause; your draft is kept but cannot be "
                "submitted. Please continue with the next pair.",
                code="lease_lost",
            )
    ratings = [
        Rating(
            assignment=locked,
            criterion=criterion,
            value=canonical[criterion.key],
            rationale=_rationale_for(study, data, criterion.key),
        )
        for criterion in criteria
    ]
    locked.status = Assignment.Status.SUBMITTED
    locked.submitted_at = timezone.now()
    locked.rationale = _clean_text(data.rationale) if study.rationale_mode == Study.RationaleMode.OVERALL else ""
    locked.both_unacceptable = bool(data.both_unacceptable)
    locked.unacceptable_reason = _clean_text(data.unacceptable_reason) if data.both_unacceptable else ""
    locked.total_seconds = max(locked.total_seconds, float(data.total_seconds or 0))
    locked.active_seconds = max(locked.active_seconds, float(data.active_seconds or 0))
    locked.draft = {}
    _store_answers(locked, ratings)
    audit = {
        "actor": _actor(rater),
        "actor_label": rater.label,
        "action": "rating.submit",
        "study": study,
        "obj": locked,
        "data": {
            "values": canonical,
            "both_unacceptable": locked.both_unacceptable,
            "criteria": {c.key: c.version for c in criteria},
            "total_seconds": locked.total_seconds,
            "active_seconds": locked.active_seconds,
        },
    }
    feedback = (
        calibration_feedback(assignment=locked, criteria=criteria, canonical=canonical) if is_calibration else None
    )
    return SubmitOutcome(assignment=locked, created=True, feedback=feedback), audit


_SUBMITTED_FIELDS = (
    "status",
    "submitted_at",
    "rationale",
    "both_unacceptable",
    "unacceptable_reason",
    "total_seconds",
    "active_seconds",
    "draft",
)


def _store_answers(locked: Assignment, ratings: list[Rating]) -> None:
    """Insert the ratings and mark the assignment submitted. On PostgreSQL one statement, built once per process
    (annotations/compiled.py): the two ORM writes cost more web CPU than the rest of the submit's writes."""
    if connection.vendor != "postgresql":
        Rating.objects.bulk_create(ratings)
        locked.save(update_fields=list(_SUBMITTED_FIELDS))
        return
    rating_rows, assignment_row = compiled.writes(Rating), compiled.writes(Assignment)
    sql = f"WITH rated AS ({rating_rows.insert_sql}) {assignment_row.update_sql(_SUBMITTED_FIELDS)}"
    params = [*rating_rows.insert_params(ratings), *assignment_row.update_params(locked, _SUBMITTED_FIELDS)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    rating_rows.inserted(ratings)


@dataclass(frozen=True)
class SubmitAndNext:
    outcome: SubmitOutcome
    next: Assignment | None  # the rater's next pair; None after a calibration pair (feedback comes first) or at the end


def _rater_locked_query(*, user_id: int):
    return Rater.objects.select_for_update(no_key=True).filter(user_id=user_id)[:1]


def _pair_locked_query(*, public_id: uuid.UUID, rater_id: int, user_id: int):
    """The submitted pair, locked, with the membership check, the rater's other live lease, their quota and the
    rubric's fingerprint as extra columns (compiled once per process: see annotations/compiled.py)."""
    member, member_params = rater_progress_extra(user_id=user_id, today=day_start())
    qn = connection.ops.quote_name
    table = qn(Assignment._meta.db_table)
    other_lease = (
        f"SELECT o.id FROM {table} o WHERE o.study_id = {table}.study_id AND o.rater_id = {table}.rater_id "  # noqa: S608
        f"AND o.status = '{Assignment.Status.LEASED.value}' AND o.id <> {table}.id ORDER BY o.created_at, o.id "
        "LIMIT 1"
    )
    return (
        Assignment.objects.select_for_update(of=("self",), no_key=True)
        .select_related("study", "comparison")
        .extra(  # noqa: S610 (constant SQL; the only values are parameters)
            select={
                "member_role": member["member_role"],
                "member_quota": member["member_quota"],
                "other_lease": other_lease,
                **criteria_fingerprint_extra(),
            },
            select_params=member_params[:2],
        )
        .filter(public_id=public_id, rater_id=rater_id)[:1]
    )


def rating_submit_own(
    *,
    user: AbstractBaseUser,
    public_id: Any,
    data: RatingInput,
    claim_next: bool,
    drop_unknown: bool,
    now: datetime | None = None,
) -> SubmitAndNext:
    """A clinician's submit of their pair by its public id (the page and the API): store the answers and, with
    `claim_next` (the page), claim the next pair in the same transaction.

    The same rules as rating_submit (followed by assignment_next), in fewer statements: the rater's row is
    locked first (as assignment_next does, so a second tab waits), then the pair, read with the membership
    check, the rater's other live lease, their quota and the rubric's fingerprint; the submit's and the
    claim's audit rows go in together. Raises Assignment.DoesNotExist when the pair is not this clinician's
    (a 404), and ValidationError as rating_submit does. `drop_unknown` ignores values for criteria the study
    does not have (the form's fields); otherwise they are refused, as rating_submit refuses them."""
    now = now or timezone.now()
    with transaction.atomic():
        rater = compiled.first("submit_rater", _rater_locked_query, {"user_id": int}, user_id=user.pk)
        if rater is None:
            raise Assignment.DoesNotExist
        rater.user = user
        locked = compiled.first(
            "submit_pair",
            _pair_locked_query,
            {"public_id": uuid.UUID, "rater_id": int, "user_id": int},
            public_id=public_id,
            rater_id=rater.pk,
            user_id=user.pk,
        )
        if locked is None or locked.member_role != StudyMembership.Role.CLINICIAN:
            raise Assignment.DoesNotExist
        study = locked.study
        criteria = criteria_in_page_order(study, row=locked)
        if drop_unknown:
            known = {c.key for c in criteria}
            data.values = {k: v for k, v in data.values.items() if k in known}
            data.rationales = {k: v for k, v in data.rationales.items() if k in known}
        was_leased = locked.status == Assignment.Status.LEASED
        outcome, audit = _submit_locked(locked=locked, rater=rater, criteria=criteria, data=data)
        audits = [audit] if audit is not None else []
        claimed = None
        # Straight on to the next pair, unless feedback comes first; a reinstated lease claims afresh afterwards,
        # so this transaction never holds two comparisons' locks at once.
        if claim_next and outcome.feedback is None and was_leased and outcome.created:
            claim = assignment_next_locked(
                study=study,
                rater=rater,
                now=now,
                with_content=False,
                current_pk=locked.other_lease,
                quota=quota_of(study=study, member_quota=locked.member_quota),
            )
            if claim is not None:
                claimed = claim.assignment
                if claim.audit is not None:
                    audits.append(claim.audit)
        audit_record_many(audits)
    leases_sweep_if_due(study=study, rater=rater, now=now)
    if claim_next and claimed is None and outcome.feedback is None and not (was_leased and outcome.created):
        from annotations.services.assignment import assignment_next  # the separate claim after a reinstatement

        claimed = assignment_next(study=study, rater=rater, now=now, with_content=False)
    return SubmitAndNext(outcome=outcome, next=claimed)


@transaction.atomic
def rating_revise(*, assignment: Assignment, rater: Rater, data: RatingInput) -> Assignment:
    """Change a submitted pair's answers while the study is open; each change is kept in the audit log."""
    locked = _lock_own(assignment, rater)
    study = locked.study
    if study.status != Study.Status.OPEN:
        raise ValidationError("This study is closed; ratings can no longer be changed.", code="study_closed")
    if locked.status != Assignment.Status.SUBMITTED:
        raise ValidationError("Only submitted pairs can be revised.", code="not_submitted")
    if locked.purpose == Assignment.Purpose.CALIBRATION:
        raise ValidationError("Calibration answers are kept as first given.", code="calibration")
    criteria = study_criteria(study)
    _validate(study=study, criteria=criteria, data=data)
    # By key: after a rubric edit the study links a newer version of a criterion than the stored rating's.
    ratings = {r.criterion.key: r for r in locked.ratings.select_for_update(of=("self",)).select_related("criterion")}
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    changed_ratings, added_ratings = [], []
    for criterion in criteria:
        rating = ratings.get(criterion.key)
        value = to_canonical(data.values[criterion.key], left_is_first=locked.left_is_first)
        rationale = _rationale_for(study, data, criterion.key)
        if rating is None:  # a criterion added to the rubric after this pair was submitted
            after[criterion.key] = {"value": value, "rationale": rationale}
            added_ratings.append(Rating(assignment=locked, criterion=criterion, value=value, rationale=rationale))
        elif (rating.value, rating.rationale) != (value, rationale):
            before[criterion.key] = {"value": rating.value, "rationale": rating.rationale}
            after[criterion.key] = {"value": value, "rationale": rationale}
            rating.value, rating.rationale, rating.revision = value, rationale, rating.revision + 1
            # A changed answer was given under the text shown now; an unchanged one keeps its version.
            rating.criterion = criterion
            changed_ratings.append(rating)
    fields = {
        "rationale": _clean_text(data.rationale) if study.rationale_mode == Study.RationaleMode.OVERALL else "",
        "both_unacceptable": bool(data.both_unacceptable),
        "unacceptable_reason": _clean_text(data.unacceptable_reason) if data.both_unacceptable else "",
    }
    for name, value in fields.items():
        if getattr(locked, name) != value:
            before[name], after[name] = getattr(locked, name), value
            setattr(locked, name, value)
    locked.total_seconds = max(locked.total_seconds, float(data.total_seconds or 0))
    locked.active_seconds = max(locked.active_seconds, float(data.active_seconds or 0))
    locked.draft = {}
    if changed_ratings:
        Rating.objects.bulk_update(changed_ratings, ["value", "rationale", "revision", "criterion", "updated_at"])
    if added_ratings:
        Rating.objects.bulk_create(added_ratings)
    locked.save(update_fields=[*fields, "total_seconds", "active_seconds", "draft"])
    if before or after:
        audit_record(
            actor=_actor(rater),
            actor_label=rater.label,
            action="rating.revise",
            study=study,
            obj=locked,
            data={"before": before, "after": after},
        )
    return locked


def _draft_clean(draft: Any) -> dict[str, Any]:
    if not isinstance(draft, dict):
        raise ValidationError({"draft": "Expected an object."})
    if len(json.dumps(draft)) > MAX_DRAFT_BYTES:
        raise ValidationError({"draft": "The draft is too large."})
    values = draft.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in values.items()
    ):
        raise ValidationError({"draft": "values must map criterion keys to whole numbers."})
    return draft


def draft_save(
    *,
    assignment: Assignment,
    rater: Rater,
    draft: dict[str, Any],
    total_seconds: float = 0.0,
    active_seconds: float = 0.0,
    now: datetime | None = None,
) -> bool:
    """Keep the page's unsaved answers and time on task; activity also renews the lease. One UPDATE.

    Returns False when there is nothing to save into (the pair is not the rater's, or it was skipped).
    """
    draft = _draft_clean(draft)
    now = now or timezone.now()
    updated = Assignment.objects.filter(
        pk=assignment.pk,
        rater=rater,
        status__in=(Assignment.Status.LEASED, Assignment.Status.SUBMITTED, Assignment.Status.EXPIRED),
    ).update(
        draft=draft,
        total_seconds=Greatest(F("total_seconds"), float(total_seconds or 0)),
        active_seconds=Greatest(F("active_seconds"), float(active_seconds or 0)),
        # Renews a live lease only; an expired or submitted row keeps its status whatever this says.
        leased_until=now + timedelta(minutes=assignment.study.lease_minutes),
    )
    return updated == 1


@transaction.atomic
def comparison_mark_gold(
    *, comparison: Comparison, expected: dict[str, int] | None, actor: AbstractBaseUser | None
) -> Comparison:
    """Mark a comparison as gold with expected canonical answers per criterion, or unmark it (expected=None)."""
    locked = Comparison.objects.select_for_update().get(pk=comparison.pk)
    if expected is None:
        locked.is_gold, locked.gold_expected = False, {}
    else:
        criteria = {c.key for c in study_criteria(locked.study)}
        limit = locked.study.max_abs_value
        bad = {
            k: v for k, v in expected.items() if k not in criteria or not isinstance(v, int) or not -limit <= v <= limit
        }
        if bad or not expected:
            raise ValidationError({"expected": f"Expected criterion keys with values from -{limit} to {limit}."})
        if locked.active_assignments:
            raise ValidationError({"comparison": "This comparison is already being rated; choose another."})
        locked.is_gold, locked.gold_expected = True, dict(expected)
    locked.save(update_fields=["is_gold", "gold_expected"])
    audit_record(
        actor=actor,
        action="comparison.gold",
        study=locked.study,
        obj=locked,
        data={"is_gold": locked.is_gold, "expected": locked.gold_expected},
    )
    return locked


@dataclass(frozen=True)
class GoldAccuracy:
    items: int
    checks: int
    agreed: int

    @property
    def accuracy(self) -> float | None:
        return self.agreed / self.checks if self.checks else None


def gold_accuracy(*, study: Study, purpose: str = Assignment.Purpose.GOLD) -> dict[str, GoldAccuracy]:
    """Per rater label: how often their answers on gold items point the same way as the expected answers.

    Direction agreement (both favour the same response, or both tie) on each criterion that has an expected
    answer; `purpose` picks the unmarked gold items (default) or the calibration set.
    """
    tallies: dict[str, list[int]] = {}
    items: dict[str, set[int]] = {}
    rows = Rating.objects.filter(
        assignment__study=study,
        assignment__purpose=purpose,
        assignment__status=Assignment.Status.SUBMITTED,
        assignment__comparison__is_gold=True,
    ).values_list(
        "assignment__rater__label", "assignment_id", "criterion__key", "value", "assignment__comparison__gold_expected"
    )
    for label, assignment_id, key, value, expected in rows:
        if key not in (expected or {}):
            continue
        tally = tallies.setdefault(label, [0, 0])
        tally[0] += 1
        tally[1] += int(_sign(value) == _sign(int(expected[key])))
        items.setdefault(label, set()).add(assignment_id)
    return {
        label: GoldAccuracy(items=len(items[label]), checks=checks, agreed=agreed)
        for label, (checks, agreed) in sorted(tallies.items())
    }


# ---- what the rater sees ----------------------------------------------------------------------

# Speakers by message role; "system" messages are shown as context (and never called "system" on the page).
SPEAKERS = {
    "user": ("help_seeker", "Help-seeker"),
    "assistant": ("supporter", "Supporter (earlier reply)"),
    "system": ("context", "Context"),
}


def scale_options(points: int) -> list[dict[str, Any]]:
    """The scale's answers left to right, in displayed orientation (negative favours Response 1)."""
    half = points // 2
    strength = {1: [""], 2: ["much ", ""], 3: ["much ", "", "slightly "]}[half]
    options = []
    for value in range(-half, half + 1):
        if value == 0:
            label = "About the same"
        else:
            side = "1" if value < 0 else "2"
            label = f"Response {side} {strength[half - abs(value)]}better".replace("  ", " ")
        options.append({"value": value, "label": label, "key": str(value + half + 1)})
    return options


def criteria_in_page_order(study: Study, row: Any = None) -> list[Criterion]:
    """The study's criteria in its order, with the overall preference last (`row`: see study_criteria_cached)."""
    criteria = study_criteria_cached(study, row)
    return [c for c in criteria if not c.is_overall] + [c for c in criteria if c.is_overall]


def submitted_values(assignment: Assignment) -> tuple[dict[str, int], dict[str, str]]:
    """The rater's stored answers in displayed orientation, and their per-criterion rationales."""
    values, rationales = {}, {}
    for key, value, rationale in assignment.ratings.values_list("criterion__key", "value", "rationale"):
        values[key] = to_canonical(value, left_is_first=assignment.left_is_first)
        rationales[key] = rationale
    return values, rationales


def pair_for_rater(*, assignment: Assignment, criteria: list[Criterion] | None = None) -> dict[str, Any]:
    """Everything the rater's page shows for a pair, blinded: opaque labels, displayed orientation only.

    Expects `assignment` fetched with comparison__prompt and both responses selected.
    """
    study = assignment.study
    comparison = assignment.comparison
    left, right = (
        (comparison.response_first, comparison.response_second)
        if assignment.left_is_first is not False
        else (comparison.response_second, comparison.response_first)
    )
    criteria = criteria if criteria is not None else criteria_in_page_order(study)
    state: dict[str, Any] = {
        "values": {},
        "rationales": {},
        "rationale": "",
        "both_unacceptable": False,
        "unacceptable_reason": "",
    }
    if assignment.status == Assignment.Status.SUBMITTED:
        values, rationales = submitted_values(assignment)
        state = {
            "values": values,
            "rationales": rationales,
            "rationale": assignment.rationale,
            "both_unacceptable": assignment.both_unacceptable,
            "unacceptable_reason": assignment.unacceptable_reason,
        }
    if assignment.draft:
        state = {**state, **{k: v for k, v in assignment.draft.items() if k in state}}
    return {
        "id": str(assignment.public_id),
        "study": study.slug,
        "status": assignment.status,
        "calibration": assignment.purpose == Assignment.Purpose.CALIBRATION,
        "conversation": [
            {
                "speaker": SPEAKERS.get(m.get("role", ""), ("context", "Context"))[0],
                "label": SPEAKERS.get(m.get("role", ""), ("context", "Context"))[1],
                "content": m.get("content", ""),
            }
            for m in comparison.prompt.messages
        ],
        "responses": [
            {"label": "Response 1", "content": left.content},
            {"label": "Response 2", "content": right.content},
        ],
        "criteria": [
            {
                "key": c.key,
                "title": c.title,
                "question": c.question,
                "better_when": c.better_when,
                "worse_when": c.worse_when,
            }
            for c in criteria
        ],
        "scale": scale_options(study.scale_points),
        "rationale_mode": study.rationale_mode,
        "rationale_required": study.rationale_required,
        "rationale_min_length": study.rationale_min_length,
        "state": state,
        "total_seconds": assignment.total_seconds,
        "active_seconds": assignment.active_seconds,
    }


def _opening(messages: list[dict], length: int = 140) -> str:
    """The opening of the help-seeker's latest message: enough to recognise a pair in a list."""
    text = next((m.get("content", "") for m in reversed(messages or []) if m.get("role") == "user"), "")
    text = " ".join(str(text).split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def my_pairs_for_rater(*, study: Study, rater: Rater, limit: int = 500) -> dict[str, list[dict[str, Any]]]:
    """The rater's submitted pairs (newest first, answers in the orientation they saw) and skipped pairs with
    their reasons. Three queries whatever the length: criteria, assignments with prompts, their ratings."""
    criteria = criteria_in_page_order(study)
    labels = {o["value"]: o["label"] for o in scale_options(study.scale_points)}
    assignments = list(
        Assignment.objects.filter(
            study=study,
            rater=rater,
            status__in=(Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED),
        )
        .exclude(purpose=Assignment.Purpose.CALIBRATION)
        .select_related("comparison__prompt")
        .only(
            "public_id",
            "status",
            "submitted_at",
            "created_at",
            "both_unacceptable",
            "skip_reason",
            "left_is_first",
            "comparison__prompt__messages",
        )
        .order_by("-submitted_at", "-created_at")[:limit]
    )
    values: dict[int, dict[int, int]] = {}
    submitted_ids = [a.pk for a in assignments if a.status == Assignment.Status.SUBMITTED]
    for assignment_id, criterion_id, value in Rating.objects.filter(assignment_id__in=submitted_ids).values_list(
        "assignment_id", "criterion_id", "value"
    ):
        values.setdefault(assignment_id, {})[criterion_id] = value
    submitted, skipped = [], []
    for assignment in assignments:
        row = {
            "public_id": assignment.public_id,
            "opening": _opening(assignment.comparison.prompt.messages),
            "submitted_at": assignment.submitted_at,
            "both_unacceptable": assignment.both_unacceptable,
            "skip_reason": assignment.skip_reason,
        }
        if assignment.status == Assignment.Status.SKIPPED:
            skipped.append(row)
            continue
        mine = values.get(assignment.pk, {})
        row["answers"] = [
            {
                "title": c.title,
                "label": labels.get(to_canonical(mine[c.pk], left_is_first=assignment.left_is_first), "")
                if c.pk in mine
                else "",
            }
            for c in criteria
        ]
        submitted.append(row)
    return {"submitted": submitted, "skipped": skipped}
