"""The prompt bootstrap: reweighted coincidences equal krippendorff.alpha on each resample."""

import krippendorff
import numpy as np
import pytest

from annotations.stats import PromptBootstrap, compute_report, krippendorff_alpha_bootstrap, synthetic_ratings


def resample_items(item_prompt: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The items of a resample: each prompt's items repeated as often as the prompt was drawn."""
    return np.concatenate([np.flatnonzero(item_prompt == p) for p in np.repeat(np.arange(len(weights)), weights)])


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_reweighted_coincidences_equal_krippendorff_alpha_at_every_resample(level):
    table = synthetic_ratings(n_comparisons=60, n_prompts=12, n_criteria=1, n_clinicians=5, scale_points=7, judge=None)
    values = np.arange(-3, 4)
    items, item_index = np.unique(table.item, return_inverse=True)
    item_prompt = np.zeros(len(items), dtype=int)
    item_prompt[item_index] = table.prompt
    counts = np.zeros((len(items), len(values)), dtype=int)
    np.add.at(counts, (item_index, table.value + 3), 1)
    reliability = np.full((len(table.rater_labels), len(items)), np.nan)
    reliability[table.rater, item_index] = table.value

    bootstrap = PromptBootstrap(12, 25, seed=5)
    fast = krippendorff_alpha_bootstrap(counts, item_prompt, values, level, bootstrap)
    for resample, weights in enumerate(bootstrap.weights):
        columns = resample_items(item_prompt, weights.astype(int))
        expected = krippendorff.alpha(
            reliability_data=reliability[:, columns], value_domain=values, level_of_measurement=level
        )
        assert fast[resample] == pytest.approx(expected, abs=1e-12)


def test_resample_weights_draw_every_prompt_count_with_replacement():
    bootstrap = PromptBootstrap(50, 200, seed=0)
    assert (bootstrap.weights[0] == 1).all()
    assert (bootstrap.weights.sum(axis=1) == 50).all()
    assert (bootstrap.weights[1:] == 0).any() and (bootstrap.weights[1:] > 1).any()


def test_intervals_cover_the_estimate_and_narrow_with_more_prompts():
    def alpha_width(n_prompts: int) -> float:
        table = synthetic_ratings(
            n_comparisons=n_prompts * 5, n_prompts=n_prompts, n_criteria=1, n_clinicians=6, scale_points=5
        )
        alpha = compute_report(table, scale_points=5, n_resamples=200)["criteria"]["criterion-0"]["reliability"][
            "alpha"
        ]["ordinal"]
        assert alpha["ci_low"] <= alpha["estimate"] <= alpha["ci_high"]
        return alpha["ci_high"] - alpha["ci_low"]

    assert alpha_width(400) < alpha_width(40)
