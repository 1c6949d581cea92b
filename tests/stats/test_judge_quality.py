"""What the report adds for AI judges, on data whose answers are counted by hand: position-swap consistency,
pooled agreement, length preference and safety recall."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from annotations.stats import RatingTable, compute_report
from annotations.stats.bootstrap import PromptBootstrap
from annotations.stats.judge_quality import (
    MIN_POOLED_RATER_PAIRS,
    length_choices,
    length_preference,
    logistic_fit,
    picked_longer_sums,
    safety_recall,
    swap_consistency,
)
from annotations.stats.results import wilson_interval
from annotations.stats.table import (
    CONSISTENCY_CONSISTENT,
    CONSISTENCY_INCONSISTENT,
    CONSISTENCY_NOT_RECORDED,
    CONSISTENCY_SINGLE,
)

JUDGE = "judge"


def build_table(rows: list[dict], criterion: str = "overall") -> RatingTable:
    """rows: {item, rater, value} plus optional prompt, consistency, both_unacceptable, lengths, criterion."""
    return RatingTable.from_columns(
        criterion=[r.get("criterion", criterion) for r in rows],
        item=[r["item"] for r in rows],
        prompt=[r.get("prompt", r["item"]) for r in rows],
        rater=[r["rater"] for r in rows],
        value=[r["value"] for r in rows],
        system_first=["system-a"] * len(rows),
        system_second=["system-b"] * len(rows),
        judge_raters=sorted({r["rater"] for r in rows if r["rater"].startswith("judge")}),
        consistency=[r.get("consistency") for r in rows],
        both_unacceptable=[r.get("both_unacceptable", False) for r in rows],
        length_first=[r.get("length_first") for r in rows],
        length_second=[r.get("length_second") for r in rows],
    )


# --- Position-swap consistency --------------------------------------------------------------------------


def test_swap_consistency_counts_only_verdicts_judged_in_both_orders():
    codes = np.array([CONSISTENCY_CONSISTENT] * 3 + [CONSISTENCY_INCONSISTENT] + [CONSISTENCY_SINGLE] * 2)
    result = swap_consistency(codes)
    assert result["consistency"] == pytest.approx(3 / 4)
    assert result["inconsistent_rate"] == pytest.approx(1 / 4)
    assert (result["n_both_orders"], result["n_consistent"], result["n_inconsistent"]) == (4, 3, 1)
    assert result["n_single_order"] == 2 and result["reason"] is None
    assert (result["wilson_low"], result["wilson_high"]) == pytest.approx(wilson_interval(3, 4, 0.95))


@pytest.mark.parametrize(
    ("codes", "reason"),
    [
        ([CONSISTENCY_SINGLE] * 3, "judged in one order only"),
        ([CONSISTENCY_NOT_RECORDED] * 2, "order consistency not recorded"),
        ([], "no judgments"),
    ],
)
def test_swap_consistency_is_none_with_a_reason_without_both_orders(codes, reason):
    result = swap_consistency(np.array(codes, dtype=int))
    assert result["consistency"] is None and result["inconsistent_rate"] is None
    assert result["wilson_low"] is None and result["reason"] == reason


def test_the_report_counts_each_judges_consistency_and_keeps_inconsistent_verdicts_as_ties():
    rows = []
    for item in range(6):
        rows += [{"item": item, "rater": "c1", "value": 1}, {"item": item, "rater": "c2", "value": 1}]
        consistency = "inconsistent" if item < 2 else "consistent"
        rows.append({"item": item, "rater": JUDGE, "value": 0 if item < 2 else 1, "consistency": consistency})
        rows.append({"item": item, "rater": "judge-once", "value": 1, "consistency": "single"})
    report = compute_report(build_table(rows), scale_points=3, n_resamples=50)
    judges = report["criteria"]["overall"]["judges"]
    swap = judges[JUDGE]["position_swap"]
    assert (swap["n_consistent"], swap["n_inconsistent"], swap["consistency"]) == (4, 2, pytest.approx(4 / 6))
    assert judges["judge-once"]["position_swap"]["reason"] == "judged in one order only"
    # The two inconsistent verdicts are ties: the judge agrees with the clinicians on 4 of 6 items.
    assert judges[JUDGE]["pooled_agreement"]["judge_clinician"]["estimate"] == pytest.approx(8 / 12)
    json.dumps(report, allow_nan=False)


# --- Pooled agreement -----------------------------------------------------------------------------------


def sparse_design(seed: int = 3) -> list[dict]:
    """100 items, 6 clinicians, 2 per item: clinicians 1-2 share items 0-19 and 3-4 share items 20-39, the
    other 13 pairs share the remaining 60 items (4 or 5 each); a judge rates every item."""
    rng = np.random.default_rng(seed)
    clinicians = [f"c{i}" for i in range(1, 7)]
    all_pairs = list(itertools.combinations(clinicians, 2))
    small_pairs = [pair for pair in all_pairs if pair not in (("c1", "c2"), ("c3", "c4"))]
    assignment = [("c1", "c2")] * 20 + [("c3", "c4")] * 20 + [small_pairs[i % 13] for i in range(60)]
    rows = []
    for item, (a, b) in enumerate(assignment):
        for rater in (a, b, JUDGE):
            rows.append({"item": item, "rater": rater, "value": int(rng.integers(-1, 2)), "prompt": item // 2})
    return rows


def test_pooled_agreement_uses_every_co_rated_item_pair_of_a_sparse_design():
    rows = sparse_design()
    report = compute_report(build_table(rows), scale_points=3, n_resamples=200)
    entry = report["criteria"]["overall"]
    # The mean of per-pair figures rests on the two clinician pairs sharing at least 10 items ...
    assert entry["reliability"]["mean_pairwise"]["percent_agreement"]["n_rater_pairs"] == 2
    # ... the pooled figure on all 100 clinician item pairs from all 15 clinician pairs.
    by_item: dict[int, dict[str, int]] = {}
    for row in rows:
        by_item.setdefault(row["item"], {})[row["rater"]] = row["value"]
    clinician_pairs = judge_pairs = clinician_agree = judge_agree = 0
    for ratings in by_item.values():
        humans = [value for rater, value in ratings.items() if rater != JUDGE]
        clinician_pairs += 1
        clinician_agree += humans[0] == humans[1]
        for value in humans:
            judge_pairs += 1
            judge_agree += value == ratings[JUDGE]
    pooled = entry["judges"][JUDGE]["pooled_agreement"]
    cc, jc = pooled["clinician_clinician"], pooled["judge_clinician"]
    assert (cc["n_item_pairs"], cc["n_rater_pairs"]) == (100, 15)
    assert (jc["n_item_pairs"], jc["n_rater_pairs"]) == (200, 6)
    assert cc["estimate"] == pytest.approx(clinician_agree / clinician_pairs)
    assert jc["estimate"] == pytest.approx(judge_agree / judge_pairs)
    assert pooled["difference"]["estimate"] == pytest.approx(judge_agree / judge_pairs - clinician_agree / 100)
    assert pooled["difference"]["ci_low"] < pooled["difference"]["estimate"] < pooled["difference"]["ci_high"]
    assert cc["ci_low"] <= cc["estimate"] <= cc["ci_high"]
    # Pooled clinician agreement is the reliability section's percent agreement, pair for pair.
    assert cc["estimate"] == pytest.approx(entry["reliability"]["percent_agreement"]["estimate"])
    assert pooled["warning"] is None


def test_pooled_agreement_warns_when_it_rests_on_few_rater_pairs():
    rows = []
    for item in range(40):
        a, b = ("c1", "c2") if item % 2 else ("c2", "c3")
        rows += [
            {"item": item, "rater": a, "value": 1},
            {"item": item, "rater": b, "value": (item % 3) - 1},
            {"item": item, "rater": JUDGE, "value": 1},
        ]
    pooled = compute_report(build_table(rows), scale_points=3, n_resamples=20)["criteria"]["overall"]["judges"][JUDGE][
        "pooled_agreement"
    ]
    assert pooled["clinician_clinician"]["n_rater_pairs"] == 2 < MIN_POOLED_RATER_PAIRS
    assert pooled["judge_clinician"]["n_rater_pairs"] == 3
    assert "judge–clinician agreement rests on 3 rater pairs and 80 co-rated item pairs" in pooled["warning"]
    assert "clinician–clinician agreement rests on 2 rater pairs" in pooled["warning"]


def test_pooled_agreement_with_no_shared_items_is_none_with_a_warning():
    rows = [{"item": 0, "rater": "c1", "value": 1}, {"item": 1, "rater": JUDGE, "value": 1}]
    pooled = compute_report(build_table(rows), scale_points=3, n_resamples=20)["criteria"]["overall"]["judges"][JUDGE][
        "pooled_agreement"
    ]
    assert pooled["judge_clinician"]["estimate"] is None and pooled["clinician_clinician"]["estimate"] is None
    assert pooled["difference"]["estimate"] is None
    assert "rests on 0 rater pairs and 0 co-rated item pairs" in pooled["warning"]


# --- Length preference ----------------------------------------------------------------------------------


def length_rows(n_items: int = 40) -> list[dict]:
    """The second response is longer on even items; the judge always picks the longer response, the two
    clinicians pick the longer one on half the items each (c1 on items 0-19 and c2 on the others)."""
    rows = []
    for item in range(n_items):
        second_longer = item % 2 == 0
        lengths = (
            {"length_first": 100, "length_second": 300}
            if second_longer
            else {"length_first": 300, "length_second": 100}
        )
        longer = 1 if second_longer else -1
        rows.append({"item": item, "rater": JUDGE, "value": longer, **lengths})
        rows.append({"item": item, "rater": "c1", "value": longer if item < n_items // 2 else -longer, **lengths})
        rows.append({"item": item, "rater": "c2", "value": -longer if item < n_items // 2 else longer, **lengths})
    return rows


def test_a_judge_that_always_picks_the_longer_response_prefers_length_more_than_clinicians():
    report = compute_report(build_table(length_rows()), scale_points=3, n_resamples=200)
    length = report["criteria"]["overall"]["judges"][JUDGE]["length_preference"]
    assert length["judge"]["share_longer"]["estimate"] == 1.0
    assert length["judge"]["share_longer"]["n_choices"] == 40
    assert length["clinicians"]["share_longer"]["estimate"] == pytest.approx(0.5)
    assert length["clinicians"]["share_longer"]["n_picked_longer"] == 40
    difference = length["share_longer_difference"]
    assert difference["estimate"] == pytest.approx(0.5) and difference["ci_low"] > 0
    # Always picking the longer response separates the choices: no finite fit, and no exception.
    assert length["judge"]["fit"]["slope"] is None
    assert "separates" in length["judge"]["fit"]["reason"]
    assert length["clinicians"]["fit"]["slope"] == pytest.approx(0.0, abs=1e-9)
    assert length["clinicians"]["fit"]["odds_ratio_per_doubling"] == pytest.approx(1.0)


def test_logistic_fit_matches_the_saturated_two_group_model():
    # x = -1: 1 of 4 picked the second; x = +1: 3 of 4. logit(3/4) = log 3, so a = 0, b = log 3, and
    # var(b) = (1/(4 * 3/4 * 1/4) + the same) / 4 = 2/3.
    x = np.array([-1.0] * 4 + [1.0] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    fit = logistic_fit(x, y)
    assert fit["intercept"] == pytest.approx(0.0, abs=1e-9)
    assert fit["slope"] == pytest.approx(math.log(3))
    assert fit["slope_se"] == pytest.approx(math.sqrt(2 / 3))
    z = 1.959963984540054
    assert fit["slope_ci_low"] == pytest.approx(math.log(3) - z * math.sqrt(2 / 3))
    assert fit["odds_ratio_per_doubling"] == pytest.approx(3 ** math.log(2))
    assert fit["reason"] is None


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        ([], [], "no non-tie choices"),
        ([0.0, 0.0, 0.0], [1, 0, 1], "same length ratio"),
        ([0.5, -0.5, 0.2], [1, 1, 1], "same way"),
        ([-1.0, -0.5, 0.5, 1.0], [0, 0, 1, 1], "separates"),
        ([-1.0, 0.0, 0.0, 1.0], [0, 0, 1, 1], "separates"),  # quasi-complete: a tie at the threshold
    ],
)
def test_logistic_fit_degenerate_data_give_none_and_a_reason(x, y, reason):
    fit = logistic_fit(np.array(x, dtype=float), np.array(y, dtype=float))
    assert fit["slope"] is None and fit["odds_ratio_per_doubling"] is None
    assert reason in fit["reason"]


def test_degenerate_lengths_in_the_report_give_reasons_not_errors():
    same = [{**row, "length_first": 200, "length_second": 200} for row in length_rows(10)]
    ties = [{**row, "value": 0} for row in length_rows(10)]
    unknown = [{key: value for key, value in row.items() if not key.startswith("length")} for row in length_rows(10)]
    for rows in (same, ties, unknown):
        report = compute_report(build_table(rows), scale_points=3, n_resamples=20)
        json.dumps(report, allow_nan=False)
        length = report["criteria"]["overall"]["judges"][JUDGE]["length_preference"]
        for side in ("judge", "clinicians"):
            assert length[side]["fit"]["slope"] is None and length[side]["fit"]["reason"]
            assert length[side]["share_longer"]["estimate"] is None and length[side]["share_longer"]["reason"]
        assert length["share_longer_difference"]["estimate"] is None
    assert (
        "equal length"
        in compute_report(build_table(same), scale_points=3, n_resamples=0)["criteria"]["overall"]["judges"][JUDGE][
            "length_preference"
        ]["judge"]["share_longer"]["reason"]
    )


def test_length_preference_pieces_by_hand():
    value = np.array([1, -1, 0, 1, 1])
    usable, x, y = length_choices(value, np.array([100, 100, 100, 100, -1]), np.array([200, 200, 200, 100, 50]))
    assert usable.tolist() == [True, True, False, True, False]  # a tie and an unknown length are left out
    assert x[usable] == pytest.approx([math.log(2), math.log(2), 0.0])
    bootstrap = PromptBootstrap(3, 0, 0)
    longer = picked_longer_sums(np.array([0, 1, 2]), x[usable], y[usable], bootstrap)
    assert (longer["n_choices"], longer["n_picked_longer"], longer["n_equal_length"]) == (2, 1, 1)
    result = length_preference(
        {"x": x[usable], "y": y[usable], "picked_longer": longer},
        {"x": x[usable], "y": y[usable], "picked_longer": longer},
    )
    assert result["judge"]["share_longer"]["estimate"] == 0.5
    assert result["share_longer_difference"]["estimate"] == 0.0


# --- Safety recall --------------------------------------------------------------------------------------


def test_safety_recall_counts_by_hand():
    # Items: 0 clinicians favour first, judge agrees; 1 one clinician favours second (the other ties),
    # judge picks first: missed; 2 an even split: no concern; 3 flagged, judge flags: caught; 4 flagged,
    # judge ties without a flag: missed; 5 both second-preferred and flagged, judge picks second without a
    # flag; 6 clinicians favour first, the judge did not rate it.
    counts = np.array([[2, 0, 0], [0, 1, 1], [1, 0, 1], [0, 2, 0], [0, 2, 0], [0, 0, 2], [2, 0, 0]])
    flagged = np.array([False, False, False, True, True, True, False])
    judge_choice = np.array([0, 0, 2, 1, 1, 2, -1])
    judge_flagged = np.array([False, False, False, True, False, False, False])
    result = safety_recall(counts, flagged, judge_choice, judge_flagged)
    preferred, unacceptable, combined = result["preferred"], result["both_unacceptable"], result["combined"]
    assert (preferred["n"], preferred["n_caught"], preferred["n_not_judged"]) == (3, 2, 1)
    assert preferred["recall"] == pytest.approx(2 / 3)
    assert (unacceptable["n"], unacceptable["n_caught"], unacceptable["n_missed"]) == (3, 1, 2)
    assert (combined["n"], combined["n_caught"]) == (5, 3)
    assert (combined["wilson_low"], combined["wilson_high"]) == pytest.approx(wilson_interval(3, 5, 0.95))
    assert result["reason"] is None


def test_safety_recall_without_concerns_has_a_reason():
    result = safety_recall(np.array([[1, 0, 1]]), np.array([False]), np.array([0]), np.array([False]))
    assert result["combined"]["recall"] is None and "no safety concern" in result["reason"]


def test_the_report_puts_safety_recall_under_the_safety_criterion():
    rows = []
    for item in range(4):
        # Clinicians favour the first response on items 0-1 and flag both unacceptable (assignment-wide, so
        # on the empathy row too) on items 2-3; the judge sides with them on item 0 and flags item 2 on
        # its empathy judgment only.
        flag = item >= 2
        for criterion in ("safety", "empathy"):
            for rater in ("c1", "c2"):
                rows.append(
                    {
                        "item": item,
                        "rater": rater,
                        "value": -1 if item < 2 else 0,
                        "both_unacceptable": flag,
                        "criterion": criterion,
                    }
                )
            rows.append(
                {
                    "item": item,
                    "rater": JUDGE,
                    "criterion": criterion,
                    "value": -1 if item == 0 else 1,
                    "both_unacceptable": item == 2 and criterion == "empathy",
                }
            )
    report = compute_report(build_table(rows), scale_points=3, n_resamples=20)
    recall = report["criteria"]["safety"]["judges"][JUDGE]["safety_recall"]
    assert (recall["preferred"]["n"], recall["preferred"]["n_caught"]) == (2, 1)
    assert (recall["both_unacceptable"]["n"], recall["both_unacceptable"]["n_caught"]) == (2, 1)
    assert (recall["combined"]["n"], recall["combined"]["n_caught"]) == (4, 2)
    assert "safety_recall" not in report["criteria"]["empathy"]["judges"][JUDGE]


def test_the_table_checks_its_optional_columns():
    base = {"item": 0, "rater": "c1", "value": 1}
    with pytest.raises(ValueError, match="consistency must be"):
        build_table([{**base, "consistency": "maybe"}])
    with pytest.raises(ValueError, match="more than one length_first"):
        build_table([{**base, "length_first": 10}, {**base, "rater": "c2", "length_first": 11}])
    table = build_table([base])
    assert table.consistency.tolist() == [CONSISTENCY_NOT_RECORDED] and table.both_unacceptable.tolist() == [0]
