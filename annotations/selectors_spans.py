"""Reads of marked passages (spans): blinded for the rater's pair page and API, named for researchers.

A span is stored against the response it marks; a clinician only ever sees the side it was shown on
(1 = left, 2 = right in their assignment), never the response's id or system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef

from annotations.models import Assignment, Span, Study

# The label the judge analyses read as a safety concern (docs/spans.md).
UNSAFE_LABEL = "unsafe"
SPAN_CHUNK = 2000
SPAN_COLUMNS = (
    "study",
    "comparison_id",
    "prompt_id",
    "response_id",
    "response_position",
    "system",
    "rater",
    "rater_kind",
    "purpose",
    "assignment_status",
    "displayed_side",
    "label",
    "start",
    "end",
    "quote",
    "note",
    "created_at",
    "updated_at",
)


def side_response_ids(assignment: Assignment) -> tuple[int, int]:
    """The ids of the responses shown as Response 1 (left) and Response 2 (right) in this assignment."""
    comparison = assignment.comparison
    first, second = comparison.response_first_id, comparison.response_second_id
    return (first, second) if assignment.left_is_first is not False else (second, first)


def span_blinded(span: Span, *, left_id: int) -> dict[str, Any]:
    """What the rater sees of one of their spans: the side, never the response or its system."""
    return {
        "id": span.pk,
        "side": 1 if span.response_id == left_id else 2,
        "start": span.start,
        "end": span.end,
        "label": span.label,
        "note": span.note,
        "quote": span.quote,
    }


def spans_for_rater(*, assignment: Assignment) -> list[dict[str, Any]]:
    """The rater's spans on this pair, blinded, in reading order (side, then position). One query."""
    left_id, _ = side_response_ids(assignment)
    rows = [
        span_blinded(s, left_id=left_id) for s in Span.objects.filter(assignment=assignment).order_by("start", "id")
    ]
    return sorted(rows, key=lambda row: (row["side"], row["start"], row["end"], row["id"]))


def span_count_extra() -> dict[str, str]:
    """An extra column (`.extra(select=...)` on an Assignment query) counting the pair's spans; plain SQL."""
    qn = connection.ops.quote_name
    span, assignment = qn(Span._meta.db_table), qn(Assignment._meta.db_table)
    return {"span_count": f"SELECT COUNT(*) FROM {span} s WHERE s.assignment_id = {assignment}.id"}  # noqa: S608


def pair_spans(*, assignment: Assignment) -> dict[str, Any]:
    """The pair page's span data: the study's labels, the rater's spans by side, and each side's raw text.

    Expects `assignment` fetched with its comparison and both responses (the pair page does); one query, none
    when the page's query counted no span (span_count_extra), as on most pages."""
    spans = spans_for_rater(assignment=assignment) if getattr(assignment, "span_count", 1) else []
    comparison = assignment.comparison
    left, right = (
        (comparison.response_first, comparison.response_second)
        if assignment.left_is_first is not False
        else (comparison.response_second, comparison.response_first)
    )
    labels = list(assignment.study.span_labels or [UNSAFE_LABEL])
    sides = [
        {"side": side, "label": f"Response {side}", "marks": [s for s in spans if s["side"] == side]} for side in (1, 2)
    ]
    return {
        "labels": labels,
        "sides": sides,
        "client": {
            "id": str(assignment.public_id),
            "labels": labels,
            "spans": spans,
            "texts": [left.content, right.content],
        },
    }


def raw_span_rows(*, study: Study) -> Iterator[tuple[Any, ...]]:
    """Every span of a study in SPAN_COLUMNS order, one server-side cursor (docs/spans.md).

    `response_position` is canonical (first / second response of the comparison, as in the raw table's values);
    `displayed_side` is where the rater saw that response (left / right)."""
    rows = (
        Span.objects.filter(assignment__study=study)
        .order_by("assignment__comparison_id", "assignment__rater_id", "response_id", "start", "id")
        .values_list(
            "assignment__comparison_id",
            "assignment__comparison__prompt__external_id",
            "response__external_id",
            "response_id",
            "assignment__comparison__response_first_id",
            "response__system__name",
            "assignment__rater__label",
            "assignment__rater__kind",
            "assignment__purpose",
            "assignment__status",
            "assignment__left_is_first",
            "label",
            "start",
            "end",
            "quote",
            "note",
            "created_at",
            "updated_at",
        )
    )
    for (
        comparison_id, prompt_id, response_external, response_id, first_id, system, rater, kind, purpose, status,
        left_is_first, label, start, end, quote, note, created, updated,
    ) in rows.iterator(chunk_size=SPAN_CHUNK):  # fmt: skip
        is_first = response_id == first_id
        if left_is_first is None:
            displayed = ""
        else:
            displayed = "left" if is_first == left_is_first else "right"
        yield (
            study.slug, comparison_id, prompt_id, response_external, "first" if is_first else "second", system,
            rater, kind, purpose, status, displayed, label, start, end, quote, note, created, updated,
        )  # fmt: skip


def spans_by_item(*, comparison_ids: list[int]) -> dict[int, list[Span]]:
    """Every span on these comparisons (raters' labels loaded), grouped by comparison id. One query."""
    grouped: dict[int, list[Span]] = {}
    for span in (
        Span.objects.filter(assignment__comparison_id__in=comparison_ids)
        .select_related("assignment__rater")
        .order_by("response_id", "start", "id")
    ):
        grouped.setdefault(span.assignment.comparison_id, []).append(span)
    return grouped


def attach_item_spans(items: list[Any]) -> None:
    """Give each comparison of an explorer page `spans_first` and `spans_second`: the spans on its first and
    second response, each with the rater loaded. One query for the page."""
    grouped = spans_by_item(comparison_ids=[item.pk for item in items])
    for item in items:
        spans = grouped.get(item.pk, [])
        item.spans_first = [s for s in spans if s.response_id == item.response_first_id]
        item.spans_second = [s for s in spans if s.response_id == item.response_second_id]


def unsafe_span_exists(assignment_field: str = "assignment_id") -> Exists:
    """For a queryset of ratings (or anything naming an assignment): does that assignment have a passage marked
    'unsafe'? The safety analyses count such a rater as having flagged the comparison (docs/spans.md)."""
    return Exists(Span.objects.filter(assignment_id=OuterRef(assignment_field), label=UNSAFE_LABEL))
