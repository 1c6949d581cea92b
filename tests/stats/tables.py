"""Small table builders and the published examples (published_examples.json) for the stats tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from annotations.stats import LEFT_UNKNOWN, RatingTable

PUBLISHED_EXAMPLES = json.loads((Path(__file__).parent / "published_examples.json").read_text())


def table_from_ratings(
    ratings: list[tuple[int, str, int]],
    *,
    judges: tuple[str, ...] = (),
    systems: tuple[str, str] = ("system-a", "system-b"),
    prompt_of_item=None,
    left_is_first=None,
) -> RatingTable:
    """One criterion; ratings are (item, rater, value); every item opposes systems[0] (first) to systems[1]."""
    item = [r[0] for r in ratings]
    return RatingTable.from_columns(
        criterion=["overall"] * len(ratings),
        item=item,
        prompt=[prompt_of_item(i) if prompt_of_item else i for i in item],
        rater=[r[1] for r in ratings],
        value=[r[2] for r in ratings],
        system_first=[systems[0]] * len(ratings),
        system_second=[systems[1]] * len(ratings),
        left_is_first=left_is_first,
        judge_raters=judges,
    )


def krippendorff_example_ratings(value_offset: int = 0) -> list[tuple[int, str, int]]:
    example = PUBLISHED_EXAMPLES["krippendorff_2011"]
    return [
        (unit, observer, value + value_offset)
        for observer, values in example["ratings_by_observer"].items()
        for unit, value in enumerate(values)
        if value is not None
    ]


def abstractor_ratings() -> list[tuple[int, str, int]]:
    """irrCAC's cont3x3abstractors expanded to one item per woman; categories become values -1, 0, 1."""
    table = PUBLISHED_EXAMPLES["irrcac_cont3x3abstractors"]["contingency_table"]
    ratings, item = [], 0
    for row, counts in enumerate(table):
        for column, count in enumerate(counts):
            for _ in range(count):
                ratings += [(item, "abstractor-1", row - 1), (item, "abstractor-2", column - 1)]
                item += 1
    return ratings


def value_counts(ratings: list[tuple[int, str, int]], values: list[int]) -> np.ndarray:
    n_items = max(r[0] for r in ratings) + 1
    counts = np.zeros((n_items, len(values)), dtype=int)
    for item, _, value in ratings:
        counts[item, values.index(value)] += 1
    return counts


def assert_same_report(left, right, path: str = "report") -> None:
    """Deep equality with floats compared to 1e-9."""
    assert type(left) is type(right) or {type(left), type(right)} <= {int, float}, path
    if isinstance(left, dict):
        assert left.keys() == right.keys(), path
        for key in left:
            assert_same_report(left[key], right[key], f"{path}.{key}")
    elif isinstance(left, list):
        assert len(left) == len(right), path
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same_report(a, b, f"{path}[{index}]")
    elif isinstance(left, float):
        assert math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {left} != {right}"
    else:
        assert left == right, path


__all__ = ["LEFT_UNKNOWN"]
