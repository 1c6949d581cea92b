"""Plain input records for an export: one ComparisonRecord per comparison, streamed in a stable order.

The Django side builds these from a chunked server-side cursor (or passes plain dicts through
`ComparisonRecord.from_dict`); nothing here knows about models or querysets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ExportInputError(ValueError):
    """A record or an export-level input is malformed; the message names the record and the field."""


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    response_id: str
    content: str
    system: str


@dataclass(frozen=True, slots=True)
class VoteRecord:
    """One rater's rating of one criterion of one comparison.

    value is signed and in canonical orientation: negative favours the FIRST response, positive the
    second, 0 is a tie; |value| <= 1, 2 or 3 on a 3-, 5- or 7-point scale.
    """

    criterion: str
    rater: str
    is_judge: bool
    value: int
    both_unacceptable: bool = False


@dataclass(frozen=True, slots=True)
class ComparisonRecord:
    comparison_id: str
    prompt_id: str
    prompt: tuple[Message, ...]
    first: ResponseRecord
    second: ResponseRecord
    votes: tuple[VoteRecord, ...]
    # (criterion key, canonical value) decided by an adjudicator; used under the "adjudicated" decision.
    adjudications: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparisonRecord:
        """Build a record from plain data, e.g. one row assembled from a database cursor.

        Expected keys: comparison_id, prompt_id, prompt (list of {"role", "content"}),
        first and second ({"id", "content", "system"}), votes (list of {"criterion", "rater",
        "is_judge", "value", "both_unacceptable"}); optionally adjudications ({criterion: canonical value}).
        """
        comparison_id = _require(data, "comparison_id", "record")
        where = f"comparison {comparison_id!r}"
        try:
            prompt = tuple(
                Message(
                    role=_require(m, "role", f"{where}: prompt[{i}]"),
                    content=_require(m, "content", f"{where}: prompt[{i}]"),
                )
                for i, m in enumerate(_require(data, "prompt", where))
            )
            first = _response_from_dict(_require(data, "first", where), f"{where}: first")
            second = _response_from_dict(_require(data, "second", where), f"{where}: second")
            votes = tuple(
                VoteRecord(
                    criterion=_require(v, "criterion", f"{where}: votes[{i}]"),
                    rater=_require(v, "rater", f"{where}: votes[{i}]"),
                    is_judge=_require(v, "is_judge", f"{where}: votes[{i}]"),
                    value=_require(v, "value", f"{where}: votes[{i}]"),
                    both_unacceptable=v.get("both_unacceptable", False),
                )
                for i, v in enumerate(_require(data, "votes", where))
            )
            adjudications = tuple(sorted((data.get("adjudications") or {}).items()))
        except (TypeError, AttributeError) as error:
            raise ExportInputError(f"{where}: malformed record ({error})") from error
        return cls(
            comparison_id=comparison_id,
            prompt_id=_require(data, "prompt_id", where),
            prompt=prompt,
            first=first,
            second=second,
            votes=votes,
            adjudications=adjudications,
        )


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ExportInputError(f"{where}: expected a mapping, got {type(data).__name__}")
    if key not in data:
        raise ExportInputError(f"{where}: missing field {key!r}")
    return data[key]


def _response_from_dict(data: Mapping[str, Any], where: str) -> ResponseRecord:
    return ResponseRecord(
        response_id=_require(data, "id", where),
        content=_require(data, "content", where),
        system=_require(data, "system", where),
    )


def validate_record(record: ComparisonRecord, *, max_strength: int) -> None:
    """Check types and the vote scale; raise ExportInputError naming the comparison and field."""
    where = f"comparison {getattr(record, 'comparison_id', '?')!r}"
    if not isinstance(record, ComparisonRecord):
        raise ExportInputError(f"expected a ComparisonRecord, got {type(record).__name__}")
    _check_str(record.comparison_id, f"{where}: comparison_id", allow_empty=False)
    _check_str(record.prompt_id, f"{where}: prompt_id", allow_empty=False)
    if not isinstance(record.prompt, Sequence) or len(record.prompt) == 0:
        raise ExportInputError(f"{where}: prompt must be a non-empty list of messages")
    for i, message in enumerate(record.prompt):
        if not isinstance(message, Message):
            raise ExportInputError(f"{where}: prompt[{i}] must be a Message, got {type(message).__name__}")
        _check_str(message.role, f"{where}: prompt[{i}].role", allow_empty=False)
        _check_str(message.content, f"{where}: prompt[{i}].content", allow_empty=True)
    for side in ("first", "second"):
        response = getattr(record, side)
        if not isinstance(response, ResponseRecord):
            raise ExportInputError(f"{where}: {side} must be a ResponseRecord")
        _check_str(response.response_id, f"{where}: {side}.response_id", allow_empty=False)
        _check_str(response.content, f"{where}: {side}.content", allow_empty=True)
        _check_str(response.system, f"{where}: {side}.system", allow_empty=False)
    seen: set[tuple[str, bool, str]] = set()
    for i, vote in enumerate(record.votes):
        field = f"{where}: votes[{i}]"
        if not isinstance(vote, VoteRecord):
            raise ExportInputError(f"{field} must be a VoteRecord, got {type(vote).__name__}")
        _check_str(vote.criterion, f"{field}.criterion", allow_empty=False)
        _check_str(vote.rater, f"{field}.rater", allow_empty=False)
        if not isinstance(vote.is_judge, bool):
            raise ExportInputError(f"{field}.is_judge must be a bool, got {vote.is_judge!r}")
        if not isinstance(vote.both_unacceptable, bool):
            raise ExportInputError(f"{field}.both_unacceptable must be a bool, got {vote.both_unacceptable!r}")
        if isinstance(vote.value, bool) or not isinstance(vote.value, int):
            raise ExportInputError(f"{field}.value must be an int, got {vote.value!r}")
        if abs(vote.value) > max_strength:
            raise ExportInputError(
                f"{field}.value {vote.value} is outside the {2 * max_strength + 1}-point scale (|value| <= {max_strength})"
            )
        # Two votes by one rater on one criterion would be counted twice; the caller must pick one.
        key = (vote.criterion, vote.is_judge, vote.rater)
        if key in seen:
            raise ExportInputError(f"{field}: rater {vote.rater!r} voted twice on criterion {vote.criterion!r}")
        seen.add(key)
    decided: set[str] = set()
    for i, pair in enumerate(record.adjudications):
        field = f"{where}: adjudications[{i}]"
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ExportInputError(f"{field} must be a (criterion, value) pair")
        criterion, value = pair
        _check_str(criterion, f"{field}.criterion", allow_empty=False)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > max_strength:
            raise ExportInputError(f"{field}.value must be an int with |value| <= {max_strength}, got {value!r}")
        if criterion in decided:
            raise ExportInputError(f"{field}: criterion {criterion!r} adjudicated twice")
        decided.add(criterion)


def _check_str(value: object, field: str, *, allow_empty: bool) -> None:
    if not isinstance(value, str):
        raise ExportInputError(f"{field} must be a string, got {type(value).__name__}")
    if not allow_empty and value == "":
        raise ExportInputError(f"{field} must not be empty")
