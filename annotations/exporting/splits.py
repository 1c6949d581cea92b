"""Train / validation / test splits by prompt: a prompt never appears in two splits.

Plain splits need no lookahead: a prompt's split is a function of a seeded hash of its id, so
streaming comparisons in any order puts all comparisons of one prompt in the same split.

Stratified splits take exact per-stratum shares, which needs the list of prompts and their strata
up front: a cheap first pass over the prompts (not the comparisons). Within each stratum, prompts
are ordered by the same seeded hash; the first round(n * test_fraction) go to test, the next
round(n * validation_fraction) to validation, the rest to train. Memory is one entry per prompt.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from annotations.exporting.records import ExportInputError

TRAIN, VALIDATION, TEST = "train", "validation", "test"


class SplitConfigError(ValueError):
    """An invalid split configuration; the message names the field."""


@dataclass(frozen=True)
class SplitConfig:
    """seed: changes which prompts land where. stratify_by: the name of what the caller stratifies on
    (e.g. "scenario_category"), recorded in the manifest; None for a plain hashed split."""

    seed: int = 0
    test_fraction: float = 0.1
    validation_fraction: float = 0.0
    stratify_by: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise SplitConfigError(f"split.seed must be an integer; got {self.seed!r}")
        for name in ("test_fraction", "validation_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
                raise SplitConfigError(f"split.{name} must be a number in [0, 1); got {value!r}")
        if self.test_fraction + self.validation_fraction >= 1.0:
            raise SplitConfigError(
                "split.test_fraction + split.validation_fraction must be below 1 (train would be empty)"
            )
        if self.stratify_by is not None and (not isinstance(self.stratify_by, str) or not self.stratify_by):
            raise SplitConfigError(f"split.stratify_by must be null or a non-empty string; got {self.stratify_by!r}")

    @property
    def split_names(self) -> tuple[str, ...]:
        return (TRAIN, VALIDATION, TEST) if self.validation_fraction > 0 else (TRAIN, TEST)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unit": "prompt"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitConfig:
        known = {"seed", "test_fraction", "validation_fraction", "stratify_by"}
        unknown = sorted(set(data) - known - {"unit"})
        if unknown:
            raise SplitConfigError(f"split has unknown field(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def prompt_hash_unit(prompt_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from the seed and prompt id, the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}\x00{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class PromptSplitter:
    """Maps a prompt id to its split name. Build with `PromptSplitter(config)` for a hashed split,
    or `PromptSplitter.stratified(config, prompt_strata)` when config.stratify_by is set."""

    def __init__(self, config: SplitConfig, assignments: Mapping[str, str] | None = None) -> None:
        if config.stratify_by is not None and assignments is None:
            raise SplitConfigError(
                f"split.stratify_by is {config.stratify_by!r}: build the splitter with PromptSplitter.stratified(config, prompt_strata)"
            )
        self.config = config
        self._assignments = assignments

    @classmethod
    def stratified(
        cls, config: SplitConfig, prompt_strata: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> PromptSplitter:
        pairs = prompt_strata.items() if isinstance(prompt_strata, Mapping) else prompt_strata
        by_stratum: dict[str, list[tuple[float, str]]] = {}
        for prompt_id, stratum in pairs:
            by_stratum.setdefault(stratum, []).append((prompt_hash_unit(prompt_id, config.seed), prompt_id))
        assignments: dict[str, str] = {}
        for members in by_stratum.values():
            members.sort()
            n_test = _round_half_up(len(members) * config.test_fraction)
            n_validation = _round_half_up(len(members) * config.validation_fraction)
            for position, (_, prompt_id) in enumerate(members):
                if position < n_test:
                    assignments[prompt_id] = TEST
                elif position < n_test + n_validation:
                    assignments[prompt_id] = VALIDATION
                else:
                    assignments[prompt_id] = TRAIN
        return cls(config, assignments)

    def split_of(self, prompt_id: str) -> str:
        if self._assignments is not None:
            try:
                return self._assignments[prompt_id]
            except KeyError:
                raise ExportInputError(f"prompt {prompt_id!r} has no stratum in prompt_strata") from None
        unit = prompt_hash_unit(prompt_id, self.config.seed)
        if unit < self.config.test_fraction:
            return TEST
        if unit < self.config.test_fraction + self.config.validation_fraction:
            return VALIDATION
        return TRAIN


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)
