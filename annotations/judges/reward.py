"""The reward-model judge: per-criterion reward models score both responses; the score difference maps
onto the study's scale with bands calibrated on the clinicians' ratings of the same study.

Calibration is quantile matching (docs/judges.md): the clinicians' ratings of a criterion give the share of
ties and of each strength 1..m among all their ratings; the thresholds on |score difference| are the
quantiles of the judge's |differences|, over the comparisons the clinicians rated, at those cumulative
shares. So on those comparisons the judge says "tie" as often as the clinicians do, and on 5- and 7-point
scales each strength as often too. Pure core: numpy in, numbers out; torch only inside `score_responses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Calibration:
    thresholds: list[float]  # ascending; |difference| >= thresholds[k-1] means strength >= k
    human_shares: list[float]  # share of clinician ratings at |value| = 0, 1, ..., m
    n_human_ratings: int
    n_calibration_items: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds,
            "human_shares": self.human_shares,
            "n_human_ratings": self.n_human_ratings,
            "n_calibration_items": self.n_calibration_items,
            "note": self.note,
        }


def calibrate(*, differences_on_rated: np.ndarray, human_values: np.ndarray, scale_points: int) -> Calibration:
    """Thresholds on |difference| from the clinicians' distribution of |value| on the same study.

    `differences_on_rated`: the judge's score differences (second minus first) on comparisons the
    clinicians rated; `human_values`: the clinicians' canonical values of this criterion.
    """
    half = scale_points // 2
    human_values = np.asarray(human_values, dtype=int)
    magnitudes = np.abs(np.asarray(differences_on_rated, dtype=float))
    if len(human_values) == 0 or len(magnitudes) == 0:
        # Nothing to calibrate on: a tie only when the scores are exactly equal, strength 1 otherwise.
        return Calibration(
            thresholds=[float(np.finfo(float).tiny)] + [float("inf")] * (half - 1),
            human_shares=[],
            n_human_ratings=len(human_values),
            n_calibration_items=len(magnitudes),
            note="not calibrated: no clinician ratings of this criterion on judged comparisons",
        )
    counts = np.bincount(np.minimum(np.abs(human_values), half), minlength=half + 1).astype(float)
    shares = counts / counts.sum()
    cumulative = np.cumsum(shares)[:-1]  # share at or below strength 0, 1, ..., m-1
    thresholds = [float(np.quantile(magnitudes, q, method="linear")) if q > 0 else 0.0 for q in cumulative]
    return Calibration(
        thresholds=thresholds,
        human_shares=[float(s) for s in shares],
        n_human_ratings=int(counts.sum()),
        n_calibration_items=len(magnitudes),
    )


def to_scale(differences: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Canonical values: sign of the difference times how many thresholds its size reaches."""
    differences = np.asarray(differences, dtype=float)
    magnitude = np.abs(differences)
    strength = np.zeros(len(differences), dtype=int)
    for threshold in calibration.thresholds:
        strength += (magnitude > threshold) | ((magnitude == threshold) & (threshold > 0))
    return (np.sign(differences).astype(int) * strength).astype(int)


def score_responses(
    directory: str,
    conversations: Sequence[list[dict[str, str]]],
    *,
    max_length: int,
    batch_size: int = 16,
) -> list[float]:
    """Reward of each conversation (prompt messages + the response as the assistant's turn)."""
    import torch

    from annotations.training.models import load_reward_model, load_tokenizer, score_conversations

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_reward_model(directory).to(device)
    try:
        return score_conversations(
            model, load_tokenizer(directory), conversations, max_length=max_length, batch_size=batch_size
        )
    finally:
        del model
