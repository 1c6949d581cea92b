"""Disagreement review and adjudication: which items are disputed, and a researcher's recorded decision on each.

"Disputed" is the export's own definition (annotations.exporting.aggregate.is_disputed: the clinicians' votes
on a criterion of a comparison have no plurality), computed over the same votes a default export counts:
submitted ratings of platform clinicians and imported external raters, on the study's current criteria, in
the reported purposes (judges are never counted). A decision (Response 1 / tie / Response 2, stored in
canonical orientation as -1 / 0 / +1) needs a reason; changing or withdrawing one is audited with the
decision before and after, so the audit log holds the item's whole history.

Who adjudicates: anyone who may manage the study (its owner, its researcher members, admins). A named
adjudicator is a study member the owner gives the researcher role (no schema change).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When

from annotations.exporting.aggregate import VoteCounts, is_disputed
from annotations.models import Adjudication, Assignment, AuditEvent, Comparison, Criterion, Rating, Study
from annotations.selectors_reports import REPORTED_PURPOSES
from annotations.services.audit import audit_record
from annotations.services.studies import study_criteria

# A decision in the researcher's words -> canonical value (negative favours the comparison's first response).
DECISIONS = {"response_1": -1, "tie": 0, "response_2": 1}
DECISION_LABELS = {-1: "Response 1", 0: "Tie", 1: "Response 2"}
STATUSES = ("unresolved", "adjudicated", "all")
REASON_MAX = 5000
# Comparisons looked at per query when finding the next unresolved item.
NEXT_WINDOW = 500


@dataclass(frozen=True)
class DisputedItem:
    """One criterion of one comparison whose clinicians disagree (or that was adjudicated)."""

    comparison_id: int
    criterion: Criterion
    votes: VoteCounts
    disputed: bool  # False only for an adjudicated item whose later votes settled it
    adjudication: Adjudication | None

    @property
    def resolved(self) -> bool:
        return self.adjudication is not None

    @property
    def key(self) -> tuple[int, int]:
        return (self.comparison_id, self.criterion.pk)


def decision_value(decision: Any) -> int:
    """A decision ("response_1", "tie", "response_2", or -1 / 0 / 1) as its canonical value; ValidationError
    naming the field otherwise."""
    if isinstance(decision, str) and decision in DECISIONS:
        return DECISIONS[decision]
    if isinstance(decision, str) and decision.lstrip("+-").isdigit():
        decision = int(decision)
    if isinstance(decision, int) and not isinstance(decision, bool) and decision in (-1, 0, 1):
        return decision
    raise ValidationError({"decision": "Choose Response 1, Tie or Response 2 (response_1, tie, response_2)."})


def decision_label(value: int) -> str:
    return DECISION_LABELS[(value > 0) - (value < 0)]


def _vote_counts(study: Study, criteria: list[Criterion], comparison_ids: Iterable[int] | None = None):
    """(comparison id, criterion id, a, tie, b) per rated criterion of a comparison with at least two options
    chosen: a cheap necessary condition for a dispute, so Python judges only the few candidates."""
    ratings = Rating.objects.filter(
        assignment__study=study,
        assignment__status=Assignment.Status.SUBMITTED,
        assignment__purpose__in=REPORTED_PURPOSES,
        assignment__comparison__excluded=False,
        criterion__in=criteria,
    )
    if comparison_ids is not None:
        ratings = ratings.filter(assignment__comparison_id__in=list(comparison_ids))
    rows = (
        ratings.values("assignment__comparison_id", "criterion_id")
        .annotate(
            a=Count("id", filter=Q(value__lt=0)),
            tie=Count("id", filter=Q(value=0)),
            b=Count("id", filter=Q(value__gt=0)),
        )
        .annotate(
            options=Case(When(a__gt=0, then=Value(1)), default=Value(0), output_field=IntegerField())
            + Case(When(tie__gt=0, then=Value(1)), default=Value(0), output_field=IntegerField())
            + Case(When(b__gt=0, then=Value(1)), default=Value(0), output_field=IntegerField())
        )
        .filter(options__gte=2)
        .values_list("assignment__comparison_id", "criterion_id", "a", "tie", "b")
    )
    return rows.iterator(chunk_size=5000)


def disputed_items(
    *,
    study: Study,
    criterion_key: str = "",
    status: str = "all",
    system: str = "",
    comparison_ids: Iterable[int] | None = None,
    candidates: list[DisputedItem] | None = None,
) -> list[DisputedItem]:
    """The study's disputed items (and adjudicated ones), ordered by comparison, then the rubric's order.

    criterion_key: only this criterion; status: "unresolved", "adjudicated" or "all"; system: only
    comparisons where this system wrote one of the two responses. candidates: the unfiltered list already
    computed, to narrow instead of counting the votes again. ValidationError names a bad filter."""
    criteria = study_criteria(study)
    errors = {}
    if criterion_key and criterion_key not in {c.key for c in criteria}:
        errors["criterion"] = f"Not a criterion of this study: {criterion_key}."
    if status not in STATUSES:
        errors["status"] = f"Choose one of {', '.join(STATUSES)}."
    if errors:
        raise ValidationError(errors)
    if candidates is not None:
        return _narrowed(study, candidates, criterion_key=criterion_key, status=status, system=system)
    if criterion_key:
        criteria = [c for c in criteria if c.key == criterion_key]
    by_id = {c.pk: c for c in criteria}
    position = {c.pk: i for i, c in enumerate(criteria)}
    counts: dict[tuple[int, int], VoteCounts] = {}
    for comparison_id, criterion_id, a, tie, b in _vote_counts(study, criteria, comparison_ids):
        votes = VoteCounts(a=a, tie=tie, b=b)
        if is_disputed(votes):
            counts[(comparison_id, criterion_id)] = votes
    adjudications = Adjudication.objects.filter(study=study, criterion__in=criteria).select_related("decided_by")
    if comparison_ids is not None:
        adjudications = adjudications.filter(comparison_id__in=list(comparison_ids))
    decided = {(a.comparison_id, a.criterion_id): a for a in adjudications}
    # An adjudicated item that later votes settled is still listed (with its current votes), so a decision
    # never disappears from view.
    settled = [key for key in decided if key not in counts]
    if settled:
        for comparison_id, criterion_id, a, tie, b in _settled_counts(study, settled):
            counts.setdefault((comparison_id, criterion_id), VoteCounts(a=a, tie=tie, b=b))
        for key in settled:
            counts.setdefault(key, VoteCounts())
    keys = sorted(counts, key=lambda k: (k[0], position[k[1]]))
    items = [
        DisputedItem(
            comparison_id=k[0],
            criterion=by_id[k[1]],
            votes=counts[k],
            disputed=is_disputed(counts[k]),
            adjudication=decided.get(k),
        )
        for k in keys
    ]
    return _narrowed(study, items, criterion_key="", status=status, system=system)


def _narrowed(
    study: Study, items: list[DisputedItem], *, criterion_key: str, status: str, system: str
) -> list[DisputedItem]:
    if criterion_key:
        items = [i for i in items if i.criterion.key == criterion_key]
    if status == "unresolved":
        items = [i for i in items if not i.resolved]
    elif status == "adjudicated":
        items = [i for i in items if i.resolved]
    if system:
        with_system = set(
            Comparison.objects.filter(study=study, pk__in={i.comparison_id for i in items})
            .filter(Q(response_first__system__name=system) | Q(response_second__system__name=system))
            .values_list("pk", flat=True)
        )
        items = [i for i in items if i.comparison_id in with_system]
    return items


def _settled_counts(study: Study, keys: list[tuple[int, int]]):
    wanted = Q()
    for comparison_id, criterion_id in keys:
        wanted |= Q(assignment__comparison_id=comparison_id, criterion_id=criterion_id)
    return (
        Rating.objects.filter(
            wanted,
            assignment__study=study,
            assignment__status=Assignment.Status.SUBMITTED,
            assignment__purpose__in=REPORTED_PURPOSES,
        )
        .values("assignment__comparison_id", "criterion_id")
        .annotate(
            a=Count("id", filter=Q(value__lt=0)),
            tie=Count("id", filter=Q(value=0)),
            b=Count("id", filter=Q(value__gt=0)),
        )
        .values_list("assignment__comparison_id", "criterion_id", "a", "tie", "b")
    )


def dispute_summary(*, study: Study, items: list[DisputedItem] | None = None) -> list[dict[str, Any]]:
    """Per criterion (rubric order, titles): disputed items, adjudicated, still unresolved."""
    items = disputed_items(study=study) if items is None else items
    rows = []
    for criterion in study_criteria(study):
        mine = [i for i in items if i.criterion.pk == criterion.pk]
        adjudicated = sum(1 for i in mine if i.resolved)
        rows.append(
            {
                "key": criterion.key,
                "title": criterion.title,
                "items": len(mine),
                "adjudicated": adjudicated,
                "unresolved": len(mine) - adjudicated,
            }
        )
    return rows


def next_unresolved(
    *, study: Study, after: tuple[int, int] | None = None, criterion_key: str = "", system: str = ""
) -> DisputedItem | None:
    """The first unresolved disputed item after `after` (comparison id, criterion id) in list order, wrapping
    round to the start; None when every disputed item is adjudicated.

    Looks a window of comparisons ahead at a time, so the usual answer (a few comparisons further on) costs a
    small query however large the study is."""
    order = {c.pk: i for i, c in enumerate(study_criteria(study))}
    mark = (after[0], order.get(after[1], -1)) if after is not None else (0, -1)
    comparisons = Comparison.objects.filter(study=study, excluded=False).order_by("pk")
    ahead = list(comparisons.filter(pk__gte=mark[0]).values_list("pk", flat=True))
    behind = list(comparisons.filter(pk__lte=mark[0]).values_list("pk", flat=True)) if after is not None else []
    for ids, wanted in ((ahead, lambda key: key > mark), (behind, lambda key: True)):
        for start in range(0, len(ids), NEXT_WINDOW):
            window = ids[start : start + NEXT_WINDOW]
            for item in disputed_items(
                study=study, criterion_key=criterion_key, status="unresolved", system=system, comparison_ids=window
            ):
                if wanted((item.comparison_id, order[item.criterion.pk])):
                    return item
    return None


def adjudication_counts(*, study: Study) -> dict[str, int]:
    """Adjudicated items per criterion key, in the rubric's order (every criterion present, 0 when none)."""
    counted = dict(
        Adjudication.objects.filter(study=study)
        .values_list("criterion__key")
        .annotate(n=Count("id"))
        .values_list("criterion__key", "n")
    )
    return {c.key: counted.get(c.key, 0) for c in study_criteria(study)}


def _criterion(study: Study, key: str) -> Criterion:
    for criterion in study_criteria(study):
        if criterion.key == key:
            return criterion
    raise ValidationError({"criterion": f"Not a criterion of this study: {key}."})


def _comparison(study: Study, comparison_id: Any) -> Comparison:
    try:
        pk = int(comparison_id)
    except (TypeError, ValueError):
        raise ValidationError({"comparison": "Give the comparison by its number."}) from None
    comparison = Comparison.objects.filter(study=study, pk=pk).first()
    if comparison is None:
        raise ValidationError({"comparison": f"No comparison {pk} in this study."})
    return comparison


def _snapshot(adjudication: Adjudication | None) -> dict[str, Any] | None:
    if adjudication is None:
        return None
    return {"value": adjudication.value, "decision": decision_label(adjudication.value), "reason": adjudication.reason}


@transaction.atomic
def adjudication_decide(
    *,
    study: Study,
    comparison_id: Any,
    criterion_key: str,
    decision: Any,
    reason: str,
    actor: AbstractBaseUser | None,
) -> Adjudication:
    """Record (or change) the decision on a disputed criterion of a comparison. The item must be disputed,
    or already adjudicated; the reason is required. Deciding the same again is a no-op (not audited twice)."""
    errors: dict[str, str] = {}
    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = "Say why you decided this way; the reason is kept with the decision."
    elif len(reason) > REASON_MAX:
        errors["reason"] = f"Keep the reason under {REASON_MAX:,} characters."
    try:
        value = decision_value(decision)
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
        value = 0
    try:
        criterion = _criterion(study, criterion_key)
        comparison = _comparison(study, comparison_id)
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    # The row lock serialises two researchers deciding the same item at once: one wins, the other changes it.
    current = Adjudication.objects.select_for_update().filter(comparison=comparison, criterion=criterion).first()
    if current is None and not disputed_items(study=study, criterion_key=criterion.key, comparison_ids=[comparison.pk]):
        raise ValidationError(
            {"comparison": f"Comparison {comparison.pk} is not disputed on {criterion.title}: nothing to adjudicate."}
        )
    before = _snapshot(current)
    if current is not None and current.value == value and current.reason == reason:
        return current
    user = actor if actor is not None and actor.is_authenticated else None
    if current is None:
        current = Adjudication.objects.create(
            study=study, comparison=comparison, criterion=criterion, value=value, reason=reason, decided_by=user
        )
    else:
        current.value, current.reason, current.decided_by = value, reason, user
        current.save(update_fields=["value", "reason", "decided_by", "updated_at"])
    audit_record(
        actor=actor,
        action="adjudication.change" if before else "adjudication.decide",
        study=study,
        obj=current,
        data={
            "comparison": comparison.pk,
            "criterion": criterion.key,
            "before": before,
            "after": _snapshot(current),
        },
    )
    return current


@transaction.atomic
def adjudication_withdraw(
    *, study: Study, comparison_id: Any, criterion_key: str, actor: AbstractBaseUser | None, reason: str = ""
) -> bool:
    """Withdraw a decision: the item is unresolved again (exports fall back to the votes). False when there was
    none (a repeated click)."""
    criterion = _criterion(study, criterion_key)
    comparison = _comparison(study, comparison_id)
    current = Adjudication.objects.select_for_update().filter(comparison=comparison, criterion=criterion).first()
    if current is None:
        return False
    before = _snapshot(current)
    audit_record(
        actor=actor,
        action="adjudication.withdraw",
        study=study,
        obj=current,
        data={"comparison": comparison.pk, "criterion": criterion.key, "before": before, "reason": reason.strip()},
    )
    current.delete()
    return True


def adjudication_history(*, study: Study, comparison_id: int, criterion_key: str) -> list[AuditEvent]:
    """Every decision, change and withdrawal of one item, newest first (from the audit log)."""
    return list(
        AuditEvent.objects.filter(
            study=study,
            action__startswith="adjudication.",
            data__comparison=comparison_id,
            data__criterion=criterion_key,
        ).order_by("-created_at", "-id")[:100]
    )


@dataclass(frozen=True)
class DisputeDetail:
    """Everything the Disputes page shows of one item (researcher's view: systems named)."""

    comparison: Comparison
    criterion: Criterion
    item: DisputedItem | None  # None when the item is not disputed (and not adjudicated)
    ratings: list[dict[str, Any]]
    judgments: list[dict[str, Any]]
    history: list[AuditEvent]

    @property
    def flagged(self) -> bool:
        """A rater marked both responses unacceptable: exports give the pair no label, decision or not."""
        return any(r["both_unacceptable"] for r in self.ratings)


def value_text(value: int, max_abs: int) -> str:
    """A canonical value in the researcher's words: "Response 1", "Tie", "Response 2 (strength 2 of 3)"."""
    label = decision_label(value)
    if value and max_abs > 1:
        return f"{label} (strength {abs(value)} of {max_abs})"
    return label


def dispute_detail(*, study: Study, comparison_id: int, criterion_key: str) -> DisputeDetail:
    """One item with every rating and rationale on the criterion, the judges' verdicts (not counted), the
    decision and its history. ValidationError names a comparison or criterion the study does not have."""
    from annotations.models import Judgment  # the judges' verdicts, shown beside the clinicians'

    criterion = _criterion(study, criterion_key)
    comparison = (
        Comparison.objects.select_related("prompt", "response_first__system", "response_second__system")
        .filter(study=study, pk=comparison_id)
        .first()
    )
    if comparison is None:
        raise ValidationError({"comparison": f"No comparison {comparison_id} in this study."})
    found = disputed_items(study=study, criterion_key=criterion.key, comparison_ids=[comparison.pk])
    max_abs = study.max_abs_value
    ratings = [
        {
            "rater": r.assignment.rater.label,
            "rater_kind": r.assignment.rater.get_kind_display(),
            "value": r.value,
            "text": value_text(r.value, max_abs),
            "first_shown": "left"
            if r.assignment.left_is_first
            else "right"
            if r.assignment.left_is_first is False
            else "",
            "rationale": r.rationale or r.assignment.rationale,
            "both_unacceptable": r.assignment.both_unacceptable,
            "unacceptable_reason": r.assignment.unacceptable_reason,
            "purpose": r.assignment.purpose,
            "submitted_at": r.assignment.submitted_at,
        }
        for r in Rating.objects.filter(
            assignment__comparison=comparison,
            assignment__status=Assignment.Status.SUBMITTED,
            assignment__purpose__in=REPORTED_PURPOSES,
            criterion=criterion,
        )
        .select_related("assignment__rater")
        .order_by("assignment__rater__kind", "assignment__rater__label")
    ]
    judgments = [
        {
            "judge": j.judge.display_name,
            "value": j.value,
            "text": value_text(j.value, max_abs),
            "rationale": j.rationale,
        }
        for j in Judgment.objects.filter(comparison=comparison, criterion=criterion)
        .select_related("judge__rater")
        .order_by("judge__name", "judge_id")
    ]
    return DisputeDetail(
        comparison=comparison,
        criterion=criterion,
        item=found[0] if found else None,
        ratings=ratings,
        judgments=judgments,
        history=adjudication_history(study=study, comparison_id=comparison.pk, criterion_key=criterion.key),
    )


def adjudication_data_summary(*, study: Study) -> dict[str, Any]:
    """Order-free sums over the study's decisions (one query): any decision made, changed or withdrawn changes
    them, so a report's fingerprint covers its adjudication counts."""
    from django.db.models import F, Max, Sum

    summary = Adjudication.objects.filter(study=study).aggregate(
        n=Count("id"), weighted=Sum(F("id") * (F("value") + 2)), updated_max=Max("updated_at")
    )
    return {
        "n": summary["n"],
        "weighted": int(summary["weighted"] or 0),
        "updated_max": summary["updated_max"].isoformat() if summary["updated_max"] else None,
    }


def dispute_ratings(*, study: Study, items: list[DisputedItem]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Every counted rating of the given items, keyed like DisputedItem.key (one query), for the list page."""
    if not items:
        return {}
    wanted = {i.key for i in items}
    max_abs = study.max_abs_value
    found: dict[tuple[int, int], list[dict[str, Any]]] = {key: [] for key in wanted}
    ratings = (
        Rating.objects.filter(
            assignment__comparison_id__in={i.comparison_id for i in items},
            assignment__status=Assignment.Status.SUBMITTED,
            assignment__purpose__in=REPORTED_PURPOSES,
            criterion_id__in={i.criterion.pk for i in items},
        )
        .select_related("assignment__rater")
        .order_by("assignment__rater__kind", "assignment__rater__label")
    )
    for r in ratings:
        key = (r.assignment.comparison_id, r.criterion_id)
        if key in found:
            found[key].append(
                {
                    "rater": r.assignment.rater.label,
                    "text": value_text(r.value, max_abs),
                    "rationale": r.rationale or r.assignment.rationale,
                    "both_unacceptable": r.assignment.both_unacceptable,
                }
            )
    return found
