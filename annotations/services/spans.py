"""Marked passages (spans): a clinician marks a stretch of one of the two responses of their own pair with one
of the study's span labels and an optional note. Offsets are characters of Response.content (Python string
indices), validated against the text; the quote is stored as it was when marked.

Writes are audited in the same transaction. The rater addresses a response by the side it was shown on (1 or
2), never by its id, so nothing in a request or answer links a span to a system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import Assignment, Rater, Response, Span, Study
from annotations.selectors_spans import UNSAFE_LABEL, side_response_ids, span_blinded
from annotations.services.audit import audit_record

MAX_NOTE_LENGTH = 2000
MAX_SPANS_PER_ASSIGNMENT = 200
MAX_LABELS = 20
MAX_LABEL_LENGTH = 64
# Assignments a rater may still mark: the pair being rated (or whose lease lapsed, as drafts are kept) and a
# submitted pair, which the clinician may revise while the study is open.
MARKABLE = (Assignment.Status.LEASED, Assignment.Status.EXPIRED, Assignment.Status.SUBMITTED)


@dataclass(frozen=True)
class SpanInput:
    side: Any
    start: Any
    end: Any
    label: Any
    note: Any = ""
    quote: Any = None  # optional: the text the client saw between start and end, checked against the response


def _integer(value: Any, field: str, errors: dict[str, str]) -> int | None:
    """A whole number from JSON (an int) or a form (digits); anything else is an error naming the field."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    errors[field] = "Expected a whole number."
    return None


def _lock_markable(assignment: Assignment, rater: Rater) -> Assignment:
    locked = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("study", "comparison")
        .filter(pk=assignment.pk, rater=rater)
        .first()
    )
    if locked is None:
        raise ValidationError("This pair is not yours.", code="not_yours")
    if locked.study.status != Study.Status.OPEN:
        raise ValidationError("This study is closed; passages can no longer be marked.", code="study_closed")
    if locked.status not in MARKABLE:
        raise ValidationError("This pair was skipped; take it back to mark passages.", code="skipped")
    return locked


def span_validate(*, study: Study, content: str, data: SpanInput) -> dict[str, Any]:
    """The cleaned fields of a new span, or a ValidationError naming each bad field."""
    errors: dict[str, str] = {}
    side = _integer(data.side, "side", errors)
    if side is not None and side not in (1, 2):
        errors["side"] = "Choose Response 1 or Response 2 (side 1 or 2)."
    start = _integer(data.start, "start", errors)
    end = _integer(data.end, "end", errors)
    length = len(content)
    if start is not None and not 0 <= start <= length:
        errors["start"] = f"The start must lie within the response (0 to {length})."
    if end is not None and not 0 <= end <= length:
        errors["end"] = f"The end must lie within the response (0 to {length})."
    if start is not None and end is not None and "start" not in errors and "end" not in errors:
        if end <= start:
            errors["end"] = "The end must come after the start: mark at least one character."
        elif not content[start:end].strip():
            errors["start"] = "The passage is only white space: mark some words."
    labels = list(study.span_labels or [UNSAFE_LABEL])
    label = data.label.strip() if isinstance(data.label, str) else ""
    if label not in labels:
        errors["label"] = f"Choose one of this study's labels: {', '.join(labels)}."
    note = data.note if isinstance(data.note, str) else ""
    if data.note not in (None, "") and not isinstance(data.note, str):
        errors["note"] = "Expected text."
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        errors["note"] = f"Keep the note under {MAX_NOTE_LENGTH} characters."
    if errors:
        raise ValidationError(errors)
    quote = content[start:end]
    if data.quote not in (None, "") and data.quote != quote:
        raise ValidationError(
            {"quote": "The marked text does not match the response at these offsets; reload the page and mark again."}
        )
    return {"side": side, "start": start, "end": end, "label": label, "note": note, "quote": quote}


@transaction.atomic
def span_create(*, assignment: Assignment, rater: Rater, data: SpanInput) -> tuple[dict[str, Any], bool]:
    """Mark a passage of one of the pair's two responses. Returns the blinded span and whether it is new: the
    same passage with the same label again (a double click, a retried request) returns the existing span."""
    locked = _lock_markable(assignment, rater)
    left_id, right_id = side_response_ids(locked)
    # Validate the side first: the text to check the offsets against depends on it.
    side_errors: dict[str, str] = {}
    side = _integer(data.side, "side", side_errors)
    if side_errors or side not in (1, 2):
        raise ValidationError({"side": "Choose Response 1 or Response 2 (side 1 or 2)."})
    response = Response.objects.only("id", "content").get(pk=left_id if side == 1 else right_id)
    clean = span_validate(study=locked.study, content=response.content, data=data)
    existing = Span.objects.filter(
        assignment=locked, response=response, start=clean["start"], end=clean["end"], label=clean["label"]
    ).first()
    if existing is not None:
        if clean["note"] and existing.note != clean["note"]:
            existing.note = clean["note"]
            existing.save(update_fields=["note", "updated_at"])
        return span_blinded(existing, left_id=left_id), False
    if Span.objects.filter(assignment=locked).count() >= MAX_SPANS_PER_ASSIGNMENT:
        raise ValidationError({"start": f"A pair takes at most {MAX_SPANS_PER_ASSIGNMENT} marked passages."})
    span = Span.objects.create(
        assignment=locked,
        response=response,
        start=clean["start"],
        end=clean["end"],
        label=clean["label"],
        note=clean["note"],
        quote=clean["quote"],
    )
    audit_record(
        actor=rater.user if rater.user_id else None,
        actor_label=rater.label,
        action="span.create",
        study=locked.study,
        obj=span,
        data={
            "assignment": locked.pk,
            "response": response.pk,
            "side": side,
            "start": span.start,
            "end": span.end,
            "label": span.label,
            "note": span.note,
        },
    )
    return span_blinded(span, left_id=left_id), True


@transaction.atomic
def span_delete(*, assignment: Assignment, rater: Rater, span_id: int) -> None:
    """Remove one of the rater's spans on this pair; a span that is not theirs (or gone) is 'not found'."""
    locked = _lock_markable(assignment, rater)
    span = Span.objects.filter(pk=span_id, assignment=locked).first()
    if span is None:
        raise ValidationError("No such marked passage on this pair.", code="not_found")
    audit_record(
        actor=rater.user if rater.user_id else None,
        actor_label=rater.label,
        action="span.delete",
        study=locked.study,
        obj=span,
        data={
            "assignment": locked.pk,
            "response": span.response_id,
            "start": span.start,
            "end": span.end,
            "label": span.label,
            "note": span.note,
        },
    )
    span.delete()


def span_labels_clean(raw: Any) -> list[str]:
    """A study's span labels from a list or from text (one per line or comma-separated): trimmed, lower-case,
    without duplicates; 'unsafe' is always kept, since the safety analyses read it."""
    if isinstance(raw, str):
        parts = [p for line in raw.splitlines() for p in line.split(",")]
    elif isinstance(raw, list | tuple):
        if not all(isinstance(p, str) for p in raw):
            raise ValidationError({"span_labels": "Give the labels as text."})
        parts = list(raw)
    else:
        raise ValidationError({"span_labels": "Give the labels as a list of words."})
    labels: list[str] = [UNSAFE_LABEL]
    for part in parts:
        label = " ".join(part.split()).lower()
        if not label or label in labels:
            continue
        if len(label) > MAX_LABEL_LENGTH:
            raise ValidationError(
                {"span_labels": f"Keep each label under {MAX_LABEL_LENGTH} characters: {label[:20]}…"}
            )
        labels.append(label)
    if len(labels) > MAX_LABELS:
        raise ValidationError({"span_labels": f"A study takes at most {MAX_LABELS} span labels."})
    return labels
