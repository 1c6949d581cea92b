"""The aggregation policy: how the votes on one criterion of one comparison become a label.

Chosen per export and recorded verbatim in its manifest (`AggregationPolicy.to_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

DECISIONS = ("majority", "unanimity", "adjudicated")
TIE_HANDLING = ("drop", "separate_file")


class PolicyError(ValueError):
    """An invalid policy; the message names the field."""


@dataclass(frozen=True)
class AggregationPolicy:
    """How counted votes become a preference.

    decision: "majority" (the option among a / tie / b with strictly the most counted votes; a
        shared top is "disputed", no label) or "unanimity" (every counted vote on the same option, else no
        label) or "adjudicated" (a researcher's recorded decision where one exists for the comparison and
        criterion, the majority rule elsewhere).
    min_votes: fewer counted votes than this gives no label.
    min_margin: a chosen side also needs a strength-weighted margin of at least this much, in
        [0, 1]: the mean over counted votes of value / max|value|, signed toward the chosen side
        (ties count as 0 and dilute it). 0 turns the check off.
    ties: "drop" (tie outcomes are not written) or "separate_file" (written to ties/<criterion>/).
        Applies to the pairwise formats; multi-objective rows always carry "tie" labels.
    min_gold_accuracy: raters whose gold accuracy is below this are not counted; None turns it off.
    keep_raters_without_gold: whether raters with no gold accuracy are counted when
        min_gold_accuracy is set.
    include_judges: whether AI judgments count as votes (they are reported apart as judge_votes).

    Not a setting: a comparison that any clinician flagged "both unacceptable" never yields a
    chosen response, on any criterion.
    """

    decision: str = "majority"
    min_votes: int = 1
    min_margin: float = 0.0
    ties: str = "drop"
    min_gold_accuracy: float | None = None
    keep_raters_without_gold: bool = True
    include_judges: bool = False

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise PolicyError(f"policy.decision must be one of {', '.join(DECISIONS)}; got {self.decision!r}")
        if isinstance(self.min_votes, bool) or not isinstance(self.min_votes, int) or self.min_votes < 1:
            raise PolicyError(f"policy.min_votes must be an integer >= 1; got {self.min_votes!r}")
        if not _is_number(self.min_margin) or not 0.0 <= self.min_margin <= 1.0:
            raise PolicyError(f"policy.min_margin must be a number in [0, 1]; got {self.min_margin!r}")
        if self.ties not in TIE_HANDLING:
            raise PolicyError(f"policy.ties must be one of {', '.join(TIE_HANDLING)}; got {self.ties!r}")
        if self.min_gold_accuracy is not None and (
            not _is_number(self.min_gold_accuracy) or not 0.0 <= self.min_gold_accuracy <= 1.0
        ):
            raise PolicyError(
                f"policy.min_gold_accuracy must be null or a number in [0, 1]; got {self.min_gold_accuracy!r}"
            )
        if not isinstance(self.keep_raters_without_gold, bool):
            raise PolicyError(f"policy.keep_raters_without_gold must be a bool; got {self.keep_raters_without_gold!r}")
        if not isinstance(self.include_judges, bool):
            raise PolicyError(f"policy.include_judges must be a bool; got {self.include_judges!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AggregationPolicy:
        """Build from plain data (a form, an API body, a manifest); unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise PolicyError(f"policy must be an object; got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(f"policy has unknown field(s): {', '.join(unknown)}")
        return cls(**dict(data))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
