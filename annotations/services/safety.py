"""The safety queue: pairs a clinician flagged, with every reason, and the researcher's actions on them.

A pair (comparison) is flagged when any clinician or external rater marked both responses unacceptable (on a
submitted assignment), skipped it with a reason that speaks of safety (SAFETY_SKIP_PATTERN), or marked a
passage of either response with the span label "unsafe" (on a submitted or skipped assignment). Actions, each
audited in the same transaction: mark reviewed (or reopen), keep a note, and exclude a response from exports
(Response.excluded_from_exports: every preference export made afterwards leaves its comparisons out and
counts them in the manifest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from annotations.models import Assignment, Comparison, Response, SafetyReview, Span, Study
from annotations.services.audit import audit_record

# Skip reasons written in free text that point at a safety concern (case-insensitive; a word's start is
# enough: "suicid" finds suicide and suicidal). Kept broad on purpose: a false alarm costs a researcher a
# look, a missed one costs more.
SAFETY_SKIP_PATTERN = (
    r"(unsafe|safety|harm|suicid|kill|crisis|abuse|danger|risk|emergenc|violen|overdose|self.?injur|"
    r"inappropriate|boundar)"
)
UNSAFE_SPAN_LABEL = "unsafe"
QUEUE_STATUSES = ("open", "reviewed", "all")
NOTE_MAX = 5000
_SAFETY_SKIP = re.compile(SAFETY_SKIP_PATTERN, re.IGNORECASE)


def skip_reason_is_safety(reason: str) -> bool:
    """Whether a skip reason speaks of safety (the same pattern the queue's query uses)."""
    return bool(_SAFETY_SKIP.search(reason or ""))


def _flagging_assignments(study: Study) -> Q:
    return (
        Q(status=Assignment.Status.SUBMITTED, both_unacceptable=True)
        | Q(status=Assignment.Status.SKIPPED, skip_reason__iregex=SAFETY_SKIP_PATTERN)
        | Q(
            status__in=(Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED),
            spans__label=UNSAFE_SPAN_LABEL,
        )
    )


def flagged_comparison_ids(*, study: Study) -> set[int]:
    """Ids of the study's flagged comparisons (one query)."""
    return set(
        Assignment.objects.filter(_flagging_assignments(study), study=study)
        .values_list("comparison_id", flat=True)
        .distinct()
    )


@dataclass
class RaterReasons:
    """What one rater said about a flagged pair."""

    rater: str
    rater_kind: str
    status: str
    both_unacceptable: bool
    unacceptable_reason: str
    skip_reason: str
    skip_is_safety: bool
    submitted_at: Any
    spans: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flags(self) -> bool:
        return self.both_unacceptable or self.skip_is_safety or any(s["unsafe"] for s in self.spans)


@dataclass
class SafetyPair:
    comparison: Comparison
    review: SafetyReview | None
    raters: list[RaterReasons]

    @property
    def status(self) -> str:
        return self.review.status if self.review is not None else SafetyReview.Status.OPEN

    @property
    def counts(self) -> dict[str, int]:
        return {
            "both_unacceptable": sum(1 for r in self.raters if r.both_unacceptable),
            "safety_skips": sum(1 for r in self.raters if r.skip_is_safety),
            "other_skips": sum(1 for r in self.raters if r.skip_reason and not r.skip_is_safety),
            "unsafe_spans": sum(1 for r in self.raters for s in r.spans if s["unsafe"]),
        }

    @property
    def summary(self) -> list[str]:
        """The reasons in words, e.g. ["1 marked both unacceptable", "2 unsafe passages marked"]."""
        c = self.counts
        parts = [
            (c["both_unacceptable"], "marked both unacceptable", "marked both unacceptable"),
            (c["safety_skips"], "skipped for safety", "skipped for safety"),
            (c["other_skips"], "skipped for another reason", "skipped for another reason"),
            (c["unsafe_spans"], "unsafe passage marked", "unsafe passages marked"),
        ]
        return [f"{n} {one if n == 1 else many}" for n, one, many in parts if n]

    @property
    def responses(self) -> list[tuple[str, Response]]:
        return [("Response 1", self.comparison.response_first), ("Response 2", self.comparison.response_second)]


def safety_queue(*, study: Study, status: str = "all") -> QuerySet:
    """The flagged comparisons, open ones first, then by number; ValidationError names a bad status."""
    if status not in QUEUE_STATUSES:
        raise ValidationError({"status": f"Choose one of {', '.join(QUEUE_STATUSES)}."})
    comparisons = Comparison.objects.filter(study=study, pk__in=flagged_comparison_ids(study=study))
    reviewed = Q(safety_review__status=SafetyReview.Status.REVIEWED)
    if status == "open":
        comparisons = comparisons.exclude(reviewed)
    elif status == "reviewed":
        comparisons = comparisons.filter(reviewed)
    done = Case(When(reviewed, then=Value(1)), default=Value(0), output_field=IntegerField())
    return comparisons.annotate(done=done).order_by("done", "id")


def safety_counts(*, study: Study) -> dict[str, int]:
    """Flagged pairs: all, still open, reviewed; and responses excluded from exports."""
    ids = flagged_comparison_ids(study=study)
    reviewed = SafetyReview.objects.filter(
        study=study, comparison_id__in=ids, status=SafetyReview.Status.REVIEWED
    ).count()
    return {
        "flagged": len(ids),
        "open": len(ids) - reviewed,
        "reviewed": reviewed,
        "excluded_responses": Response.objects.filter(study=study, excluded_from_exports=True).count(),
    }


def safety_pairs_load(*, comparisons: list[Comparison] | QuerySet) -> list[SafetyPair]:
    """Flagged pairs with their responses, systems, review and every rater's reasons (a fixed number of queries)."""
    ids = [c.pk for c in comparisons]
    loaded = {
        c.pk: c
        for c in Comparison.objects.filter(pk__in=ids).select_related(
            "prompt", "response_first__system", "response_second__system"
        )
    }
    reviews = {
        r.comparison_id: r for r in SafetyReview.objects.filter(comparison_id__in=ids).select_related("reviewed_by")
    }
    assignments = (
        Assignment.objects.filter(comparison_id__in=ids)
        .filter(
            Q(both_unacceptable=True)
            | Q(status=Assignment.Status.SKIPPED)
            | Q(spans__isnull=False, status__in=(Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED))
        )
        .distinct()
        .select_related("rater")
        .prefetch_related(Prefetch("spans", queryset=Span.objects.order_by("response_id", "start", "id")))
        .order_by("rater__kind", "rater__label")
    )
    by_comparison: dict[int, list[RaterReasons]] = {pk: [] for pk in ids}
    for a in assignments:
        comparison = loaded[a.comparison_id]
        which = {comparison.response_first_id: "Response 1", comparison.response_second_id: "Response 2"}
        by_comparison[a.comparison_id].append(
            RaterReasons(
                rater=a.rater.label,
                rater_kind=a.rater.get_kind_display(),
                status=a.get_status_display(),
                both_unacceptable=a.both_unacceptable and a.status == Assignment.Status.SUBMITTED,
                unacceptable_reason=a.unacceptable_reason if a.both_unacceptable else "",
                skip_reason=a.skip_reason if a.status == Assignment.Status.SKIPPED else "",
                skip_is_safety=a.status == Assignment.Status.SKIPPED and skip_reason_is_safety(a.skip_reason),
                submitted_at=a.submitted_at,
                spans=[
                    {
                        "response": which.get(s.response_id, "?"),
                        "label": s.label,
                        "unsafe": s.label == UNSAFE_SPAN_LABEL,
                        "quote": s.quote,
                        "note": s.note,
                        "start": s.start,
                        "end": s.end,
                    }
                    for s in a.spans.all()
                ],
            )
        )
    return [
        SafetyPair(comparison=loaded[pk], review=reviews.get(pk), raters=by_comparison[pk])
        for pk in ids
        if pk in loaded
    ]


def safety_pair(*, study: Study, comparison_id: Any) -> SafetyPair:
    """One flagged pair; ValidationError (field "comparison") when the study has no such flagged pair."""
    comparison = _flagged(study, comparison_id)
    return safety_pairs_load(comparisons=[comparison])[0]


def _flagged(study: Study, comparison_id: Any) -> Comparison:
    try:
        pk = int(comparison_id)
    except (TypeError, ValueError):
        raise ValidationError({"comparison": "Give the comparison by its number."}) from None
    comparison = Comparison.objects.filter(study=study, pk=pk).first()
    if comparison is None or pk not in flagged_comparison_ids(study=study):
        raise ValidationError({"comparison": f"Comparison {pk} is not in this study's safety queue."})
    return comparison


def _review_for_update(study: Study, comparison: Comparison) -> SafetyReview:
    SafetyReview.objects.get_or_create(study=study, comparison=comparison)
    return SafetyReview.objects.select_for_update().get(comparison=comparison)


@transaction.atomic
def safety_review_set(
    *, study: Study, comparison_id: Any, status: str, actor: AbstractBaseUser | None, note: str | None = None
) -> SafetyReview:
    """Mark a flagged pair reviewed, or open it again; `note`, when given, replaces the pair's note."""
    if status not in (SafetyReview.Status.OPEN, SafetyReview.Status.REVIEWED):
        raise ValidationError({"status": "Choose reviewed or open."})
    comparison = _flagged(study, comparison_id)
    review = _review_for_update(study, comparison)
    before = {"status": review.status, "note": review.note}
    user = actor if actor is not None and actor.is_authenticated else None
    review.status = status
    if note is not None:
        review.note = _clean_note(note)
    if status == SafetyReview.Status.REVIEWED:
        review.reviewed_by, review.reviewed_at = user, timezone.now()
    else:
        review.reviewed_by, review.reviewed_at = None, None
    review.save(update_fields=["status", "note", "reviewed_by", "reviewed_at"])
    audit_record(
        actor=actor,
        action="safety.review" if status == SafetyReview.Status.REVIEWED else "safety.reopen",
        study=study,
        obj=review,
        data={"comparison": comparison.pk, "before": before, "after": {"status": review.status, "note": review.note}},
    )
    return review


def _clean_note(note: str) -> str:
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ValidationError({"note": f"Keep the note under {NOTE_MAX:,} characters."})
    return note


@transaction.atomic
def safety_note_save(*, study: Study, comparison_id: Any, note: str, actor: AbstractBaseUser | None) -> SafetyReview:
    """Keep a note on a flagged pair (replacing the previous one; the audit log keeps every version)."""
    comparison = _flagged(study, comparison_id)
    cleaned = _clean_note(note)
    review = _review_for_update(study, comparison)
    if review.note == cleaned:
        return review
    before = review.note
    review.note = cleaned
    review.save(update_fields=["note"])
    audit_record(
        actor=actor,
        action="safety.note",
        study=study,
        obj=review,
        data={"comparison": comparison.pk, "before": before, "after": cleaned},
    )
    return review


@transaction.atomic
def response_exports_set(
    *, study: Study, response_id: Any, excluded: bool, actor: AbstractBaseUser | None, reason: str = ""
) -> Response:
    """Exclude a response from preference exports (or include it again). Exports already made are snapshots
    and stay as they are; the next export leaves the response's comparisons out and counts them."""
    try:
        pk = int(response_id)
    except (TypeError, ValueError):
        raise ValidationError({"response": "Give the response by its number."}) from None
    if not isinstance(excluded, bool):
        raise ValidationError({"excluded": "Say true (exclude) or false (include again)."})
    response = Response.objects.select_for_update().filter(study=study, pk=pk).first()
    if response is None:
        raise ValidationError({"response": f"No response {pk} in this study."})
    if response.excluded_from_exports == excluded:
        return response
    response.excluded_from_exports = excluded
    response.save(update_fields=["excluded_from_exports"])
    audit_record(
        actor=actor,
        action="response.exclude_from_exports" if excluded else "response.include_in_exports",
        study=study,
        obj=response,
        data={"response": response.pk, "external_id": response.external_id, "reason": (reason or "").strip()[:2000]},
    )
    return response


def safety_history(*, study: Study, comparison: Comparison) -> list:
    """Reviews, notes and exclusions of this pair's responses, newest first (from the audit log)."""
    from annotations.models import AuditEvent

    responses = [comparison.response_first_id, comparison.response_second_id]
    return list(
        AuditEvent.objects.filter(study=study)
        .filter(
            Q(action__startswith="safety.", data__comparison=comparison.pk)
            | Q(
                action__in=("response.exclude_from_exports", "response.include_in_exports"),
                data__response__in=responses,
            )
        )
        .order_by("-created_at", "-id")[:100]
    )
