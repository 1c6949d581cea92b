"""Row shapes of each export format, and the matching Parquet schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from annotations.exporting.aggregate import CriterionOutcome
from annotations.exporting.records import ComparisonRecord

FORMATS = ("trl-dpo", "reward", "multi-objective")
FILE_FORMATS = ("jsonl", "parquet")

# Field order inside structs follows sorted key order, like the JSONL files (sort_keys=True).
_MESSAGE = pa.struct([("content", pa.string()), ("role", pa.string())])
_MESSAGES = pa.list_(_MESSAGE)
_COUNTS = pa.struct([("a", pa.int64()), ("b", pa.int64()), ("tie", pa.int64())])


def prompt_messages(record: ComparisonRecord) -> list[dict[str, str]]:
    return [message.to_dict() for message in record.prompt]


def assistant(content: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": content}]


def pair_row(
    record: ComparisonRecord,
    outcome: CriterionOutcome,
    *,
    with_margin: bool,
    prompt: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A trl-dpo row (reward adds "margin"); the outcome must prefer "a" or "b"."""
    if outcome.preferred == "a":
        chosen, rejected = record.first, record.second
    elif outcome.preferred == "b":
        chosen, rejected = record.second, record.first
    else:
        raise ValueError(
            f"comparison {record.comparison_id!r}: a pair row needs a preferred side, got {outcome.preferred!r}"
        )
    row: dict[str, Any] = {
        "comparison_id": record.comparison_id,
        "prompt": prompt if prompt is not None else prompt_messages(record),
        "chosen": assistant(chosen.content),
        "rejected": assistant(rejected.content),
    }
    if with_margin:
        row["margin"] = outcome.margin
    return row


def tie_row(
    record: ComparisonRecord, outcome: CriterionOutcome, *, prompt: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """A row of ties/<criterion>/<split>: both responses, unordered by preference, with the vote counts."""
    return {
        "comparison_id": record.comparison_id,
        "prompt": prompt if prompt is not None else prompt_messages(record),
        "response_a": assistant(record.first.content),
        "response_b": assistant(record.second.content),
        "votes": outcome.votes.to_dict(),
    }


def multi_objective_row(
    record: ComparisonRecord,
    outcomes: dict[str, CriterionOutcome],
    *,
    prompt: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "comparison_id": record.comparison_id,
        "prompt": prompt if prompt is not None else prompt_messages(record),
        "response_a": assistant(record.first.content),
        "response_b": assistant(record.second.content),
        "labels": {key: outcome.label_dict() for key, outcome in outcomes.items()},
    }


def pair_schema(*, with_margin: bool) -> pa.Schema:
    columns = [
        ("chosen", _MESSAGES),
        ("comparison_id", pa.string()),
        ("prompt", _MESSAGES),
        ("rejected", _MESSAGES),
    ]
    if with_margin:
        columns.insert(2, ("margin", pa.float64()))
    return pa.schema(columns)


def tie_schema() -> pa.Schema:
    return pa.schema(
        [
            ("comparison_id", pa.string()),
            ("prompt", _MESSAGES),
            ("response_a", _MESSAGES),
            ("response_b", _MESSAGES),
            ("votes", _COUNTS),
        ]
    )


def multi_objective_schema(criteria: Sequence[str]) -> pa.Schema:
    label = pa.struct(
        [
            ("agreement", pa.float64()),
            ("judge_votes", _COUNTS),
            ("margin", pa.float64()),
            ("preferred", pa.string()),
            ("votes", _COUNTS),
        ]
    )
    return pa.schema(
        [
            ("comparison_id", pa.string()),
            ("labels", pa.struct([(key, label) for key in sorted(criteria)])),
            ("prompt", _MESSAGES),
            ("response_a", _MESSAGES),
            ("response_b", _MESSAGES),
        ]
    )
