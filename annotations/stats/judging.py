"""AI judges against clinicians: the alternative annotator test and leave-one-out majority targets."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.stats

# Calderon et al. (2025) ask for at least 30 instances per left-out human for the t-test's normality.
ALT_TEST_MIN_ITEMS = 30


def majority_of_others(choice_counts: np.ndarray, own_choice: np.ndarray) -> np.ndarray:
    """The strict plurality choice (0, 1, 2) of the other raters of each row's item, or -1 if there is none.

    `choice_counts` are the item's choice counts (favours first, tie, favours second) including the row's
    own rating `own_choice` (0, 1, 2), which is removed before the vote.
    """
    others = np.asarray(choice_counts, dtype=float).copy()
    others[np.arange(len(others)), own_choice] -= 1
    top = others.max(axis=1)
    unique_top = (others == top[:, None]).sum(axis=1) == 1
    return np.where(unique_top & (top > 0), others.argmax(axis=1), -1)


def alignment_with_others(choice_counts: np.ndarray, own_choice: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Share of the other raters of each row's item (own rating removed) who chose `candidate`."""
    others = np.asarray(choice_counts, dtype=float).copy()
    rows = np.arange(len(others))
    others[rows, own_choice] -= 1
    n_others = others.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_others > 0, others[rows, candidate] / n_others, np.nan)


def alternative_annotator_test(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    epsilon: float,
    q: float = 0.05,
    min_items: int = ALT_TEST_MIN_ITEMS,
) -> dict:
    """The alt-test of Calderon, Reichart and Dror (ACL 2025).

    `scores[human] = (judge_alignment, human_alignment)`: per item the left-out human rated, how well the
    judge and that human agree with the remaining humans. The judge "wins" an item if its alignment is
    at least the human's (and vice versa). Per human, H0: rho_judge <= rho_human - epsilon is tested by a
    one-sided one-sample t-test of d = W_human - W_judge against epsilon; p-values are corrected across
    humans by Benjamini-Yekutieli at level q. Winning rate = share of humans whose H0 is rejected;
    the judge passes if it is at least 0.5. Humans with fewer than `min_items` items are skipped.
    """
    per_human: dict[str, dict] = {}
    tested: list[str] = []
    p_values: list[float] = []
    for human, (judge_alignment, human_alignment) in scores.items():
        judge_alignment = np.asarray(judge_alignment, dtype=float)
        human_alignment = np.asarray(human_alignment, dtype=float)
        judge_wins = (judge_alignment >= human_alignment).astype(float)
        human_wins = (human_alignment >= judge_alignment).astype(float)
        n_items = len(judge_wins)
        entry: dict = {
            "n_items": n_items,
            "judge_advantage_probability": float(judge_wins.mean()) if n_items else None,
            "human_advantage_probability": float(human_wins.mean()) if n_items else None,
            "p_value": None,
            "p_value_adjusted": None,
            "judge_wins": None,
        }
        per_human[human] = entry
        if n_items < max(2, min_items):
            continue
        difference = human_wins - judge_wins
        if np.std(difference) == 0:
            # The t statistic is infinite or undefined; the decision is still clear-cut.
            p_value = 0.0 if difference.mean() < epsilon else 1.0
        else:
            p_value = float(scipy.stats.ttest_1samp(difference, epsilon, alternative="less").pvalue)
        entry["p_value"] = p_value
        tested.append(human)
        p_values.append(p_value)
    if tested:
        adjusted = scipy.stats.false_discovery_control(np.array(p_values), method="by")
        for human, p_adjusted in zip(tested, adjusted, strict=True):
            per_human[human]["p_value_adjusted"] = float(p_adjusted)
            per_human[human]["judge_wins"] = bool(p_adjusted <= q)
    n_wins = sum(per_human[human]["judge_wins"] for human in tested)
    winning_rate = n_wins / len(tested) if tested else None
    advantage = [per_human[human]["judge_advantage_probability"] for human in tested]
    return {
        "epsilon": epsilon,
        "q": q,
        "min_items": min_items,
        "n_humans_tested": len(tested),
        "n_humans_skipped": len(per_human) - len(tested),
        "winning_rate": winning_rate,
        "average_advantage_probability": float(np.mean(advantage)) if advantage else None,
        "passed": None if winning_rate is None else bool(winning_rate >= 0.5),
        "per_human": per_human,
    }
