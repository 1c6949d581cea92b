"""Properties every agreement figure must have, checked on generated and constructed data."""

import dataclasses
import json

import numpy as np
import pytest

from annotations.stats import RatingTable, compute_report, krippendorff_alpha, synthetic_ratings

from .tables import assert_same_report, krippendorff_example_ratings, table_from_ratings, value_counts


def test_perfect_agreement_gives_one_everywhere():
    values = [-2, -1, 0, 1, 2, 2, -2, 1]
    ratings = [(item, rater, value) for item, value in enumerate(values) for rater in ("r1", "r2", "r3")]
    reliability = compute_report(table_from_ratings(ratings), scale_points=5, n_resamples=20)["criteria"]["overall"][
        "reliability"
    ]
    for level in ("nominal", "ordinal", "interval"):
        assert reliability["alpha"][level]["estimate"] == pytest.approx(1.0)
    for name in ("fleiss_kappa", "gwet_ac1", "gwet_ac2_ordinal", "percent_agreement", "percent_agreement_without_ties"):
        assert reliability[name]["estimate"] == pytest.approx(1.0), name
    for name in ("kappa", "kappa_quadratic", "percent_agreement"):
        assert reliability["mean_pairwise"][name]["estimate"] is None  # pairs share 8 < 10 items
        assert reliability["cohen_kappa_matrix"][name][0][1] == pytest.approx(1.0)


def test_relabelling_values_leaves_nominal_alpha_unchanged():
    values = [1, 2, 3, 4, 5]
    counts = value_counts(krippendorff_example_ratings(), values)
    original = krippendorff_alpha(counts, np.array(values), "nominal")
    permutation = [3, 0, 4, 1, 2]
    assert krippendorff_alpha(counts[:, permutation], np.array(values), "nominal") == pytest.approx(original)
    # The ordinal figure does depend on the order, so the check above is not vacuous.
    assert krippendorff_alpha(counts[:, permutation], np.array(values), "ordinal") != pytest.approx(
        krippendorff_alpha(counts, np.array(values), "ordinal")
    )


def flipped(table: RatingTable) -> RatingTable:
    """Every comparison stored the other way round: values negated, systems and side swapped."""
    known = table.left_is_first >= 0
    return dataclasses.replace(
        table,
        value=-table.value,
        system_first=table.system_second,
        system_second=table.system_first,
        left_is_first=np.where(known, 1 - table.left_is_first, table.left_is_first),
    )


@pytest.mark.parametrize("scale_points", [3, 7])
def test_flipping_the_orientation_of_every_comparison_changes_nothing(scale_points):
    table = synthetic_ratings(n_comparisons=300, n_prompts=40, n_criteria=2, n_clinicians=6, scale_points=scale_points)
    report = compute_report(table, scale_points=scale_points, n_resamples=50, seed=3)
    assert_same_report(report, compute_report(flipped(table), scale_points=scale_points, n_resamples=50, seed=3))


def test_report_is_deterministic_for_a_seed_and_strict_json():
    table = synthetic_ratings(n_comparisons=200, n_prompts=30, n_criteria=1, n_clinicians=5, scale_points=5)
    first = compute_report(table, scale_points=5, n_resamples=30, seed=7)
    assert json.dumps(first, allow_nan=False) == json.dumps(
        compute_report(table, scale_points=5, n_resamples=30, seed=7)
    )
    other_seed = compute_report(table, scale_points=5, n_resamples=30, seed=8)
    alpha = first["criteria"]["criterion-0"]["reliability"]["alpha"]["ordinal"]
    assert alpha["estimate"] == other_seed["criteria"]["criterion-0"]["reliability"]["alpha"]["ordinal"]["estimate"]
    assert alpha["ci_low"] != other_seed["criteria"]["criterion-0"]["reliability"]["alpha"]["ordinal"]["ci_low"]


def judged_table(judge_kind: str, seed: int = 0) -> RatingTable:
    """5 clinicians rate all 120 items (A / tie / B); the judge copies their majority or answers at random."""
    rng = np.random.default_rng(seed)
    truth = rng.choice([-1, 0, 1], size=120, p=[0.45, 0.1, 0.45])
    ratings = []
    for item, true_value in enumerate(truth):
        choices = []
        for rater in range(5):
            value = int(true_value if rng.random() < 0.75 else rng.choice([-1, 0, 1]))
            choices.append(value)
            ratings.append((item, f"clinician-{rater}", value))
        counts = [choices.count(v) for v in (-1, 0, 1)]
        majority = (-1, 0, 1)[int(np.argmax(counts))]
        judge_value = majority if judge_kind == "majority" else int(rng.choice([-1, 0, 1]))
        ratings.append((item, "judge", judge_value))
    return table_from_ratings(ratings, judges=("judge",), prompt_of_item=lambda item: item // 3)


def test_alternative_annotator_test_passes_a_judge_that_copies_the_majority():
    report = compute_report(judged_table("majority"), scale_points=3, n_resamples=50)
    judge = report["criteria"]["overall"]["judges"]["judge"]
    alt_test = judge["alternative_annotator_test"]
    assert alt_test["n_humans_tested"] == 5
    assert alt_test["passed"] is True
    assert alt_test["winning_rate"] >= 0.5
    accuracy = judge["loo_majority_accuracy"]
    assert accuracy["judge"]["estimate"] > accuracy["clinicians"]["estimate"]
    assert judge["against_clinicians"]["kappa"]["difference"]["ci_low"] > 0


def test_alternative_annotator_test_fails_a_judge_that_answers_at_random():
    report = compute_report(judged_table("random"), scale_points=3, n_resamples=50)
    judge = report["criteria"]["overall"]["judges"]["judge"]
    assert judge["alternative_annotator_test"]["passed"] is False
    assert judge["alternative_annotator_test"]["winning_rate"] < 0.5
    assert judge["against_clinicians"]["kappa"]["difference"]["ci_high"] < 0
    assert judge["alpha"]["judge_added_minus_clinicians_only"]["nominal"]["ci_high"] < 0


def test_judge_replacing_a_clinician_matches_a_recomputed_alpha():
    table = judged_table("random", seed=1)
    report = compute_report(table, scale_points=3, n_resamples=0)
    replaced = report["criteria"]["overall"]["judges"]["judge"]["alpha"]["judge_replacing_each_clinician"]
    judge = table.rater_labels.index("judge")
    human = table.rater_labels.index("clinician-2")
    judge_values = dict(zip(table.item[table.rater == judge], table.value[table.rater == judge], strict=True))
    ratings = [
        (int(item), "x", int(judge_values[item] if rater == human else value))
        for item, rater, value in zip(table.item, table.rater, table.value, strict=True)
        if rater != judge
    ]
    expected = krippendorff_alpha(value_counts(ratings, [-1, 0, 1]), np.array([-1, 0, 1]), "nominal")
    assert replaced["clinician-2"]["nominal"] == pytest.approx(expected)
