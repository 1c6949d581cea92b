"""The input of the statistics core: one row per rating of one criterion, as columnar numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# left_is_first takes three values; imported data often does not say which side a rater saw.
LEFT_WAS_SECOND = 0
LEFT_WAS_FIRST = 1
LEFT_UNKNOWN = -1

SCALE_POINTS = (3, 5, 7)

# consistency of a judge's verdict across the two orders it was shown in (Judgment.consistency).
CONSISTENCY_NOT_RECORDED = -1  # clinicians' ratings, and judgments from data that do not say
CONSISTENCY_SINGLE = 0  # judged in one order only
CONSISTENCY_CONSISTENT = 1  # both orders agree
CONSISTENCY_INCONSISTENT = 2  # the orders disagree: stored as a tie (value 0)
CONSISTENCY_CODES = {
    None: CONSISTENCY_NOT_RECORDED,
    "single": CONSISTENCY_SINGLE,
    "consistent": CONSISTENCY_CONSISTENT,
    "inconsistent": CONSISTENCY_INCONSISTENT,
}
# A response length (characters) that the data do not give.
LENGTH_UNKNOWN = -1


def scale_values(scale_points: int) -> np.ndarray:
    """The signed values of a scale in canonical orientation: 3 -> [-1, 0, 1], 7 -> [-3 .. 3]."""
    if scale_points not in SCALE_POINTS:
        raise ValueError(f"scale_points must be one of {SCALE_POINTS}, got {scale_points}")
    half = scale_points // 2
    return np.arange(-half, half + 1)


@dataclass(frozen=True)
class RatingTable:
    """Ratings in canonical orientation, one row per (rater, comparison, criterion).

    value < 0 favours the comparison's FIRST response, value > 0 its second, 0 is a tie.
    Integer columns index into the label tuples; `rater_is_judge` runs parallel to `rater_labels`.
    Build it with `RatingTable.from_columns` when criteria, raters or systems come as strings.

    Optional columns (None fills the default): `consistency` (CONSISTENCY_* codes, default not recorded),
    `both_unacceptable` (0/1: the rater flagged both responses unacceptable on this comparison, default 0),
    `length_first` / `length_second` (characters of the comparison's responses, default LENGTH_UNKNOWN).
    """

    criterion: np.ndarray  # int, index into criterion_labels
    item: np.ndarray  # int, the comparison id
    prompt: np.ndarray  # int, the prompt id: the bootstrap cluster
    rater: np.ndarray  # int, index into rater_labels
    value: np.ndarray  # int, signed, canonical orientation
    left_is_first: np.ndarray  # int: LEFT_WAS_FIRST, LEFT_WAS_SECOND or LEFT_UNKNOWN
    system_first: np.ndarray  # int, index into system_labels
    system_second: np.ndarray  # int, index into system_labels
    criterion_labels: tuple[str, ...]
    rater_labels: tuple[str, ...]
    rater_is_judge: tuple[bool, ...]
    system_labels: tuple[str, ...]
    consistency: np.ndarray | None = None  # int, CONSISTENCY_* codes
    both_unacceptable: np.ndarray | None = None  # int 0/1
    length_first: np.ndarray | None = None  # int, characters of the first response, or LENGTH_UNKNOWN
    length_second: np.ndarray | None = None  # int, characters of the second response, or LENGTH_UNKNOWN

    def __post_init__(self) -> None:
        n_default = len(np.asarray(self.criterion))
        for name, default in (
            ("consistency", CONSISTENCY_NOT_RECORDED),
            ("both_unacceptable", 0),
            ("length_first", LENGTH_UNKNOWN),
            ("length_second", LENGTH_UNKNOWN),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(n_default, default, dtype=np.int64))
        columns = (
            "criterion",
            "item",
            "prompt",
            "rater",
            "value",
            "left_is_first",
            "system_first",
            "system_second",
            "consistency",
            "both_unacceptable",
            "length_first",
            "length_second",
        )
        for name in columns:
            array = np.asarray(getattr(self, name))
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"RatingTable.{name} must be a 1-d integer array")
            object.__setattr__(self, name, array)
        n_rows = len(self.criterion)
        for name in columns:
            if len(getattr(self, name)) != n_rows:
                raise ValueError(f"RatingTable.{name} has {len(getattr(self, name))} rows, expected {n_rows}")
        if len(self.rater_is_judge) != len(self.rater_labels):
            raise ValueError("rater_is_judge must run parallel to rater_labels")
        _check_index("criterion", self.criterion, len(self.criterion_labels))
        _check_index("rater", self.rater, len(self.rater_labels))
        _check_index("system_first", self.system_first, len(self.system_labels))
        _check_index("system_second", self.system_second, len(self.system_labels))
        if not np.isin(self.left_is_first, (LEFT_WAS_SECOND, LEFT_WAS_FIRST, LEFT_UNKNOWN)).all():
            raise ValueError("left_is_first must hold 1 (first shown left), 0 (second shown left) or -1 (unknown)")
        if not np.isin(self.consistency, tuple(CONSISTENCY_CODES.values())).all():
            raise ValueError("consistency must hold CONSISTENCY_* codes (-1, 0, 1 or 2)")
        if not np.isin(self.both_unacceptable, (0, 1)).all():
            raise ValueError("both_unacceptable must hold 0 or 1")
        if n_rows and (np.minimum(self.length_first, self.length_second) < LENGTH_UNKNOWN).any():
            raise ValueError("response lengths must be >= 0, or LENGTH_UNKNOWN (-1)")
        if n_rows and (self.system_first == self.system_second).any():
            raise ValueError("a comparison must oppose two different systems")
        self._check_one_rating_per_rater_item_criterion()
        self._check_item_attributes_agree()

    @property
    def n_rows(self) -> int:
        return len(self.criterion)

    @classmethod
    def from_columns(
        cls,
        *,
        criterion: Sequence[str],
        item: Sequence[int],
        prompt: Sequence[int],
        rater: Sequence[str],
        value: Sequence[int],
        system_first: Sequence[str],
        system_second: Sequence[str],
        left_is_first: Sequence[bool | None] | None = None,
        judge_raters: Sequence[str] = (),
        consistency: Sequence[str | None] | None = None,
        both_unacceptable: Sequence[bool] | None = None,
        length_first: Sequence[int | None] | None = None,
        length_second: Sequence[int | None] | None = None,
    ) -> RatingTable:
        """Build a table from plain per-row columns (e.g. a selector's `values_list`).

        Strings are factorized in sorted order; `left_is_first` holds True / False / None (unknown);
        `judge_raters` names the raters that are AI judges; `consistency` holds "consistent",
        "inconsistent", "single" or None (not recorded); lengths are characters, None when unknown.
        """
        criterion_labels, criterion_codes = _factorize(criterion)
        rater_labels, rater_codes = _factorize(rater)
        system_labels, system_codes = _factorize(list(system_first) + list(system_second))
        n_rows = len(criterion_codes)
        if left_is_first is None:
            left_codes = np.full(n_rows, LEFT_UNKNOWN, dtype=np.int8)
        else:
            left_codes = np.array(
                [LEFT_UNKNOWN if flag is None else int(bool(flag)) for flag in left_is_first], dtype=np.int8
            )
        judges = set(judge_raters)
        unknown_judges = judges - set(rater_labels)
        if unknown_judges:
            raise ValueError(f"judge_raters name raters with no rating: {sorted(unknown_judges)}")
        return cls(
            criterion=criterion_codes,
            item=np.asarray(item, dtype=np.int64),
            prompt=np.asarray(prompt, dtype=np.int64),
            rater=rater_codes,
            value=np.asarray(value, dtype=np.int64),
            left_is_first=left_codes,
            system_first=system_codes[:n_rows],
            system_second=system_codes[n_rows:],
            criterion_labels=criterion_labels,
            rater_labels=rater_labels,
            rater_is_judge=tuple(label in judges for label in rater_labels),
            system_labels=system_labels,
            consistency=None if consistency is None else _consistency_codes(consistency),
            both_unacceptable=None
            if both_unacceptable is None
            else np.array([int(bool(flag)) for flag in both_unacceptable], dtype=np.int64),
            length_first=None if length_first is None else _lengths(length_first),
            length_second=None if length_second is None else _lengths(length_second),
        )

    def _check_one_rating_per_rater_item_criterion(self) -> None:
        if self.n_rows == 0:
            return
        order = np.lexsort((self.rater, self.item, self.criterion))
        keys = np.stack([self.criterion[order], self.item[order], self.rater[order]])
        repeated = (np.diff(keys, axis=1) == 0).all(axis=0)
        if repeated.any():
            row = order[np.argmax(repeated) + 1]
            raise ValueError(
                f"rater {self.rater_labels[self.rater[row]]!r} rated item {self.item[row]} twice on criterion "
                f"{self.criterion_labels[self.criterion[row]]!r}"
            )

    def _check_item_attributes_agree(self) -> None:
        """An item is one comparison: one prompt and one ordered pair of systems on every row."""
        if self.n_rows == 0:
            return
        order = np.argsort(self.item, kind="stable")
        same_item = np.diff(self.item[order]) == 0
        for name in ("prompt", "system_first", "system_second", "length_first", "length_second"):
            column = getattr(self, name)[order]
            clash = same_item & (np.diff(column) != 0)
            if clash.any():
                item = self.item[order][np.argmax(clash)]
                raise ValueError(f"item {item} has more than one {name} across its rows")


def _check_index(name: str, codes: np.ndarray, n_labels: int) -> None:
    if len(codes) and (codes.min() < 0 or codes.max() >= n_labels):
        raise ValueError(f"RatingTable.{name} holds an index outside its {n_labels} labels")


def _consistency_codes(names: Sequence[str | None]) -> np.ndarray:
    unknown = set(names) - set(CONSISTENCY_CODES)
    if unknown:
        raise ValueError(
            f"consistency must be consistent, inconsistent, single or None, got {sorted(map(str, unknown))}"
        )
    return np.array([CONSISTENCY_CODES[name] for name in names], dtype=np.int64)


def _lengths(lengths: Sequence[int | None]) -> np.ndarray:
    return np.array([LENGTH_UNKNOWN if n is None else int(n) for n in lengths], dtype=np.int64)


def _factorize(labels: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    unique, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return tuple(str(label) for label in unique), codes.astype(np.int64)
