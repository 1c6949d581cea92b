"""Win / tie / loss tables, Bradley-Terry, position bias and input validation."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annotations.stats import (
    LEFT_UNKNOWN,
    RatingTable,
    bradley_terry_log_strengths,
    compute_report,
    wilson_interval,
)

from .tables import table_from_ratings

REPO_ROOT = Path(__file__).resolve().parents[2]


def paper_like_ratings() -> list[tuple[int, str, int]]:
    """100 empathy comparisons of 'base' (first) against 'new' (second), two clinicians each:
    per rating, new wins 85%, base wins 6%, ties 9% (the research's empathy row)."""
    outcomes = [1] * 170 + [-1] * 12 + [0] * 18
    return [(index // 2, f"clinician-{index % 2}", value) for index, value in enumerate(outcomes)]


def test_win_tie_loss_shares_reproduce_the_papers_table_format():
    table = table_from_ratings(paper_like_ratings(), systems=("base", "new"), prompt_of_item=lambda item: item // 4)
    results = compute_report(table, scale_points=3, n_resamples=100)["criteria"]["overall"]["results"]["clinicians"]
    (pair,) = results["pairs"]
    assert (pair["system"], pair["opponent"]) == ("base", "new")
    per_rating = pair["per_rating"]
    # From the opponent's ("new") side: 85 / 6 / 9 as new / base / tie.
    assert per_rating["shares_percent"] == {"wins": 6.0, "losses": 85.0, "ties": 9.0}
    assert (per_rating["wins"], per_rating["ties"], per_rating["losses"], per_rating["n"]) == (12, 18, 170, 200)
    assert per_rating["win_rate"]["estimate"] == pytest.approx(0.06)
    low, high = wilson_interval(12, 200, 0.95)
    assert (per_rating["win_rate"]["wilson_low"], per_rating["win_rate"]["wilson_high"]) == (low, high)
    assert per_rating["sign_test_p_value"] < 1e-30
    assert results["average_win_rate"]["new"]["estimate"] == pytest.approx(0.85)
    assert results["average_win_rate"]["base"]["estimate"] == pytest.approx(0.06)
    strengths = results["bradley_terry"]["log_strength"]
    # Ties split half / half: new 170 + 9 = 179 wins against base 12 + 9 = 21.
    assert strengths["new"]["estimate"] - strengths["base"]["estimate"] == pytest.approx(math.log(179 / 21))


def test_per_comparison_unit_counts_each_comparisons_majority_once():
    ratings = [(0, "a", 1), (0, "b", 1), (0, "c", -1), (1, "a", -1), (1, "b", 1), (1, "c", 0), (2, "a", 0)]
    results = compute_report(table_from_ratings(ratings), scale_points=3, n_resamples=0)["criteria"]["overall"][
        "results"
    ]["clinicians"]
    per_comparison = results["pairs"][0]["per_comparison"]
    # Item 0: second system by majority; item 1: no plurality, a tie; item 2: a tie.
    assert (per_comparison["wins"], per_comparison["ties"], per_comparison["losses"]) == (0, 2, 1)


def test_bradley_terry_recovers_strengths_of_three_systems():
    true_log = np.array([0.0, 1.0, -0.5])
    probability = 1 / (1 + np.exp(-(true_log[:, None] - true_log[None, :])))
    wins = 10_000 * probability * (1 - np.eye(3))
    estimated = bradley_terry_log_strengths(wins)
    assert estimated == pytest.approx(true_log - true_log.mean(), abs=1e-6)
    never_wins = wins.copy()
    never_wins[2, :] = 0
    assert np.isnan(bradley_terry_log_strengths(never_wins)).all()


def test_position_bias_counts_left_choices_without_ties_or_unknown_sides():
    # Rater "left" always picks the left response; the first response is on the left on even items.
    ratings, left_is_first = [], []
    for item in range(40):
        first_on_left = item % 2 == 0
        ratings.append((item, "left", -1 if first_on_left else 1))
        left_is_first.append(first_on_left)
        ratings.append((item, "fair", 0 if item < 10 else (-1 if item % 4 < 2 else 1)))
        left_is_first.append(None if item >= 30 else first_on_left)
    table = table_from_ratings(ratings, left_is_first=left_is_first)
    bias = compute_report(table, scale_points=3, n_resamples=0)["position_bias_all_criteria"]
    assert bias["left"]["n"] == 40 and bias["left"]["share_left"] == 1.0 and bias["left"]["p_value"] < 1e-10
    assert bias["fair"]["n_ties"] == 10 and bias["fair"]["n_unknown_side"] == 10 and bias["fair"]["n"] == 20
    assert bias["fair"]["p_value"] > 0.5
    assert LEFT_UNKNOWN in table.left_is_first


def test_table_rejects_a_second_rating_by_the_same_rater():
    with pytest.raises(ValueError, match="twice"):
        table_from_ratings([(0, "a", 1), (0, "a", -1)])


def test_table_rejects_an_item_with_two_prompts():
    with pytest.raises(ValueError, match="more than one prompt"):
        RatingTable.from_columns(
            criterion=["c", "c"],
            item=[0, 0],
            prompt=[1, 2],
            rater=["a", "b"],
            value=[1, 1],
            system_first=["s", "s"],
            system_second=["t", "t"],
        )


def test_report_rejects_values_outside_the_scale():
    with pytest.raises(ValueError, match="values must lie"):
        compute_report(table_from_ratings([(0, "a", 2), (0, "b", 1)]), scale_points=3)


def test_benchmark_quick_run_completes():
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "agreement.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "full report" in completed.stdout and "ratio" in completed.stdout
