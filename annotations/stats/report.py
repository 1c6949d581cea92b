"""The whole agreement and results report for every criterion: `compute_report`.

Keys and units are documented in docs/reports.md. Every interval is a percentile interval from one shared
set of prompt-bootstrap resamples, so differences between statistics are taken on the same resamples.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import scipy.stats

from annotations.stats import agreement
from annotations.stats.bootstrap import PromptBootstrap
from annotations.stats.judge_quality import (
    SAFETY_CRITERION,
    length_choices,
    length_preference,
    pairs_within_items,
    picked_longer_sums,
    pooled_agreement,
    pooled_pair_sums,
    safety_recall,
    swap_consistency,
)
from annotations.stats.judging import (
    alignment_with_others,
    alternative_annotator_test,
    majority_of_others,
)
from annotations.stats.results import (
    bradley_terry_log_strengths,
    shares_percent,
    sign_test,
    wilson_interval,
)
from annotations.stats.table import LEFT_UNKNOWN, LEFT_WAS_FIRST, RatingTable, scale_values

# 2: judges gained position_swap, pooled_agreement, length_preference and (on safety) safety_recall.
REPORT_SCHEMA_VERSION = 2
# Rater pairs sharing fewer items than this are left out of mean pairwise figures (too noisy to average).
MIN_PAIR_ITEMS = 10
CHOICES = ("first", "tie", "second")


def compute_report(
    table: RatingTable,
    *,
    scale_points: int,
    n_resamples: int = 1000,
    seed: int = 0,
    epsilon: float = 0.2,
    confidence: float = 0.95,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Reliability, AI judges against clinicians, results and position bias for every criterion.

    Returns a JSON-serializable dict (no NaN: undefined figures are None), identical for identical
    inputs and seed. If `timings` is given it is filled with seconds spent per part.
    """
    values = scale_values(scale_points)
    if table.n_rows and (np.abs(table.value).max() > values.max()):
        raise ValueError(f"values must lie in {values.min()}..{values.max()} on a {scale_points}-point scale")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    clock = _PartClock(timings)
    prompt_labels, prompt_codes = np.unique(table.prompt, return_inverse=True)
    bootstrap = PromptBootstrap(len(prompt_labels), n_resamples, seed)
    judge_of_rater = np.asarray(table.rater_is_judge, dtype=bool)
    settings = _Settings(values=values, confidence=confidence, epsilon=epsilon, alt_test_q=round(1.0 - confidence, 12))

    criteria: dict[str, Any] = {}
    for criterion_index, criterion_label in enumerate(table.criterion_labels):
        rows = np.flatnonzero(table.criterion == criterion_index)
        data = _CriterionData.build(table, rows, prompt_codes, judge_of_rater, values)
        with clock("reliability"):
            reliability, reliability_resamples = _reliability(data, bootstrap, settings, table.rater_labels)
        with clock("ai_versus_clinicians"):
            judges = {
                table.rater_labels[judge]: _judge_against_clinicians(
                    data, judge, bootstrap, settings, reliability_resamples, table.rater_labels
                )
                for judge in data.judges
            }
            if len(data.judges):
                _add_judge_quality(judges, data, table, criterion_label, judge_of_rater, bootstrap, confidence)
        with clock("results"):
            results = {
                "clinicians": _results(data, data.is_human_row, bootstrap, settings, table.system_labels),
                "judges": {
                    table.rater_labels[judge]: _results(
                        data, data.rater == judge, bootstrap, settings, table.system_labels
                    )
                    for judge in data.judges
                },
            }
        with clock("position_bias"):
            position = position_bias(table.rater[rows], table.value[rows], table.left_is_first[rows], table, confidence)
        criteria[criterion_label] = {
            "n_ratings": len(rows),
            "n_items": int(data.n_items),
            "n_prompts": len(np.unique(data.item_prompt)),
            "reliability": reliability,
            "judges": judges,
            "results": results,
            "position_bias": position,
        }

    with clock("position_bias"):
        position_all = position_bias(table.rater, table.value, table.left_is_first, table, confidence)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "settings": {
            "scale_points": scale_points,
            "n_resamples": n_resamples,
            "seed": seed,
            "epsilon": epsilon,
            "confidence": confidence,
            "alt_test_q": settings.alt_test_q,
            "bootstrap_unit": "prompt",
            "interval_method": "percentile",
            "min_pair_items": MIN_PAIR_ITEMS,
        },
        "counts": {
            "n_ratings": int(table.n_rows),
            "n_items": len(np.unique(table.item)),
            "n_prompts": len(prompt_labels),
            "n_clinicians": int((~judge_of_rater).sum()),
            "n_judges": int(judge_of_rater.sum()),
        },
        "raters": [
            {"label": label, "is_judge": bool(is_judge)}
            for label, is_judge in zip(table.rater_labels, table.rater_is_judge, strict=True)
        ],
        "systems": list(table.system_labels),
        "criteria": criteria,
        "position_bias_all_criteria": position_all,
    }


# --- Shared plumbing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    values: np.ndarray
    confidence: float
    epsilon: float
    alt_test_q: float


class _PartClock:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings

    def __call__(self, part: str) -> _PartClock._Timer:
        return _PartClock._Timer(self.timings, part)

    class _Timer:
        def __init__(self, timings: dict[str, float] | None, part: str) -> None:
            self.timings, self.part = timings, part

        def __enter__(self) -> None:
            self.start = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            if self.timings is not None:
                self.timings[self.part] = self.timings.get(self.part, 0.0) + time.perf_counter() - self.start


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _intervals(resampled: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high) from (1 + n_resamples, ...) arrays: row 0 is the full data."""
    estimate = resampled[0]
    tail = (1.0 - confidence) / 2.0
    if len(resampled) < 2:
        nothing = np.full(estimate.shape, np.nan)
        return estimate, nothing, nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: the figure is undefined
        low, high = np.nanquantile(resampled[1:], [tail, 1.0 - tail], axis=0)
    return estimate, low, high


def _stat(estimate: float, low: float, high: float, **counts: int) -> dict[str, Any]:
    return {"estimate": _number(estimate), "ci_low": _number(low), "ci_high": _number(high), **counts}


def _stats(resampled: np.ndarray, confidence: float) -> list[dict[str, Any]] | dict[str, Any]:
    estimate, low, high = _intervals(resampled, confidence)
    if np.ndim(estimate) == 0:
        return _stat(estimate, low, high)
    return [_stat(e, lo, hi) for e, lo, hi in zip(estimate, low, high, strict=True)]


def _one_hot(indexes: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((len(indexes), size))
    out[np.arange(len(indexes)), indexes] = 1.0
    return out


@dataclass(frozen=True)
class _CriterionData:
    """One criterion's rows, with items numbered 0..n_items-1."""

    rater: np.ndarray
    value: np.ndarray
    value_index: np.ndarray  # value + half: column in value counts
    choice_index: np.ndarray  # 0 favours first, 1 tie, 2 favours second
    item_index: np.ndarray
    is_human_row: np.ndarray
    n_items: int
    item_prompt: np.ndarray
    item_system_first: np.ndarray
    item_system_second: np.ndarray
    human_value_counts: np.ndarray  # (n_items, V)
    human_choice_counts: np.ndarray  # (n_items, 3)
    humans: np.ndarray  # rater indexes of the clinicians with ratings here
    judges: np.ndarray  # rater indexes of the judges with ratings here
    item_ids: np.ndarray  # the comparison id of each item index
    consistency: np.ndarray  # per row, CONSISTENCY_* codes
    length_first: np.ndarray  # per row, characters of the item's first response (or LENGTH_UNKNOWN)
    length_second: np.ndarray  # per row, characters of the item's second response (or LENGTH_UNKNOWN)

    @classmethod
    def build(
        cls,
        table: RatingTable,
        rows: np.ndarray,
        prompt_codes: np.ndarray,
        judge_of_rater: np.ndarray,
        values: np.ndarray,
    ) -> _CriterionData:
        items, first_row, item_index = np.unique(table.item[rows], return_index=True, return_inverse=True)
        rater = table.rater[rows]
        value = table.value[rows]
        value_index = value - values.min()
        choice_index = np.sign(value) + 1
        is_human_row = ~judge_of_rater[rater]
        n_items, n_values = len(items), len(values)
        human_value_counts = np.bincount(
            item_index[is_human_row] * n_values + value_index[is_human_row], minlength=n_items * n_values
        ).reshape(n_items, n_values)
        human_choice_counts = np.bincount(
            item_index[is_human_row] * 3 + choice_index[is_human_row], minlength=n_items * 3
        ).reshape(n_items, 3)
        present = np.unique(rater)
        return cls(
            rater=rater,
            value=value,
            value_index=value_index,
            choice_index=choice_index,
            item_index=item_index,
            is_human_row=is_human_row,
            n_items=n_items,
            item_prompt=prompt_codes[rows[first_row]],
            item_system_first=table.system_first[rows[first_row]],
            item_system_second=table.system_second[rows[first_row]],
            human_value_counts=human_value_counts,
            human_choice_counts=human_choice_counts,
            humans=present[~judge_of_rater[present]],
            judges=present[judge_of_rater[present]],
            item_ids=items,
            consistency=table.consistency[rows],
            length_first=table.length_first[rows],
            length_second=table.length_second[rows],
        )


def _alpha_resamples(
    coincidences: np.ndarray, values: np.ndarray, confidence: float
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Alpha at every level from (1 + R, ..., V, V) coincidence sums.

    `nominal` is on the choice (A / tie / B), the unit of the research protocol; `nominal_scale` treats
    every scale point as its own category (the same as `nominal` on a 3-point scale).
    """
    choice_values = np.array([-1, 0, 1])
    resampled = {
        "nominal": agreement.alpha_from_coincidences(
            agreement.collapse_to_choice(coincidences, values), choice_values, "nominal"
        ),
        "nominal_scale": agreement.alpha_from_coincidences(coincidences, values, "nominal"),
        "ordinal": agreement.alpha_from_coincidences(coincidences, values, "ordinal"),
        "interval": agreement.alpha_from_coincidences(coincidences, values, "interval"),
    }
    return {level: _stats(array, confidence) for level, array in resampled.items()}, resampled


def krippendorff_alpha_bootstrap(
    value_counts: np.ndarray,
    item_prompt: np.ndarray,
    values: np.ndarray,
    level: agreement.AlphaLevel,
    bootstrap: PromptBootstrap,
) -> np.ndarray:
    """Alpha on the full data (row 0) and on every prompt resample, from per-item coincidences.

    Each item's coincidence contribution is computed once; a resample's coincidence matrix is the
    resample-weighted sum, so the cost per resample is one row of a matrix product.
    """
    n_values = len(values)
    per_item = agreement.item_coincidences(value_counts).reshape(len(value_counts), n_values * n_values)
    sums = bootstrap.sums(item_prompt, per_item).reshape(-1, n_values, n_values)
    return agreement.alpha_from_coincidences(sums, values, level)


# --- Reliability among clinicians ---------------------------------------------------------------------


def _human_pairs(data: _CriterionData) -> tuple[np.ndarray, np.ndarray]:
    """Row indexes (i, j) of every unordered pair of clinician ratings of the same item, rater[i] < rater[j]."""
    human_rows = np.flatnonzero(data.is_human_row)
    order = human_rows[np.lexsort((data.rater[human_rows], data.item_index[human_rows]))]
    items = data.item_index[order]
    starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, sizes)
    group_size = np.repeat(sizes, sizes)
    first, second = [], []
    for offset in range(1, int(sizes.max(initial=1))):
        has_partner = position + offset < group_size
        first.append(order[has_partner])
        second.append(order[np.flatnonzero(has_partner) + offset])
    if not first:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return np.concatenate(first), np.concatenate(second)


def _reliability(
    data: _CriterionData, bootstrap: PromptBootstrap, settings: _Settings, rater_labels: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    values, confidence = settings.values, settings.confidence
    n_values = len(values)
    counts, choice_counts = data.human_value_counts, data.human_choice_counts
    raters_per_item = counts.sum(axis=1)
    pairable = raters_per_item >= 2

    # Fleiss' kappa needs a constant number of raters: use the items with the most common count.
    fleiss_mask = np.zeros(data.n_items, dtype=bool)
    fleiss_raters = None
    if pairable.any():
        fleiss_raters = int(np.bincount(raters_per_item[pairable]).argmax())
        fleiss_mask = raters_per_item == fleiss_raters
    fleiss_terms = agreement.fleiss_item_terms(choice_counts) * fleiss_mask[:, None]
    fleiss_terms = np.nan_to_num(fleiss_terms)
    ac1_weights = agreement.identity_weights(3)
    ac2_weights = agreement.ordinal_weights(n_values)
    blocks = [
        agreement.item_coincidences(counts).reshape(data.n_items, n_values * n_values),
        agreement.item_pair_agreement(choice_counts),
        np.column_stack([fleiss_terms, fleiss_mask]),
        agreement.gwet_item_terms(choice_counts, ac1_weights),
        agreement.gwet_item_terms(counts, ac2_weights),
    ]
    widths = [block.shape[1] for block in blocks]
    sums = bootstrap.sums(data.item_prompt, np.column_stack(blocks))
    parts = np.split(sums, np.cumsum(widths)[:-1], axis=1)
    coincidences, pair_agreement, fleiss, ac1_terms, ac2_terms = parts

    alpha, alpha_resampled = _alpha_resamples(coincidences.reshape(-1, n_values, n_values), values, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        agree_with_ties = pair_agreement[:, 1] / pair_agreement[:, 0]
        agree_without_ties = pair_agreement[:, 3] / pair_agreement[:, 2]
    fleiss_kappa = agreement.fleiss_kappa_from_sums(fleiss[:, 0], fleiss[:, 4], fleiss[:, 1:4])
    ac1 = agreement.gwet_ac_from_sums(ac1_terms[:, 0], ac1_terms[:, 1], ac1_terms[:, 2:5], ac1_terms[:, 5], ac1_weights)
    ac2 = agreement.gwet_ac_from_sums(
        ac2_terms[:, 0], ac2_terms[:, 1], ac2_terms[:, 2 : 2 + n_values], ac2_terms[:, 2 + n_values], ac2_weights
    )

    pairwise, pairwise_resampled = _pairwise_clinicians(data, bootstrap, confidence, rater_labels)
    report = {
        "n_ratings": int(data.is_human_row.sum()),
        "n_raters": len(data.humans),
        "n_items": int(pairable.sum()),
        "n_pairable_values": int(raters_per_item[pairable].sum()),
        "alpha": alpha,
        "percent_agreement": {
            **_stats(agree_with_ties, confidence),
            "n_pairs": int(pair_agreement[0, 0]),
        },
        "percent_agreement_without_ties": {
            **_stats(agree_without_ties, confidence),
            "n_pairs": int(pair_agreement[0, 2]),
        },
        "fleiss_kappa": {
            **_stats(fleiss_kappa, confidence),
            "n_items": int(fleiss_mask.sum()),
            "n_items_excluded": int(pairable.sum() - fleiss_mask.sum()),
            "raters_per_item": fleiss_raters,
        },
        "gwet_ac1": {**_stats(ac1, confidence), "n_items": int(pairable.sum())},
        "gwet_ac2_ordinal": {**_stats(ac2, confidence), "n_items": int(pairable.sum())},
        **pairwise,
        "loo_majority_accuracy": _loo_accuracy_per_clinician(data, rater_labels),
    }
    return report, {"alpha": alpha_resampled, **pairwise_resampled}


def _pairwise_clinicians(
    data: _CriterionData, bootstrap: PromptBootstrap, confidence: float, rater_labels: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Cohen's kappa matrix among clinicians, and mean pairwise figures with resamples."""
    n_humans = len(data.humans)
    local = np.full(len(rater_labels), -1)
    local[data.humans] = np.arange(n_humans)
    first, second = _human_pairs(data)
    pair_key = local[data.rater[first]] * n_humans + local[data.rater[second]]
    keys, key_index = np.unique(pair_key, return_inverse=True)
    features = agreement.pair_features(data.value[first], data.value[second])
    sums = bootstrap.keyed_sums(data.item_prompt[data.item_index[first]], key_index, features, len(keys))
    figures = agreement.kappas_from_pair_sums(sums)  # each (1 + R, n_keys)
    shared_items = sums[0, :, 0]
    usable = shared_items >= MIN_PAIR_ITEMS

    matrices = {name: [[None] * n_humans for _ in range(n_humans)] for name in (*figures, "n_items")}
    for key_position, key in enumerate(keys):
        a, b = divmod(int(key), n_humans)
        for name, array in figures.items():
            matrices[name][a][b] = matrices[name][b][a] = _number(array[0, key_position])
        matrices["n_items"][a][b] = matrices["n_items"][b][a] = int(shared_items[key_position])
    for a in range(n_humans):
        matrices["n_items"][a][a] = int((data.rater == data.humans[a]).sum())

    means = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in figures:
            means[name] = np.nanmean(figures[name][:, usable], axis=1) if usable.any() else np.full(len(sums), np.nan)
    report = {
        "cohen_kappa_matrix": {"raters": [rater_labels[r] for r in data.humans], **matrices},
        "mean_pairwise": {
            name: {**_stats(means[name], confidence), "n_rater_pairs": int(usable.sum())} for name in figures
        },
    }
    return report, {"mean_pairwise": means}


def _loo_accuracy_per_clinician(data: _CriterionData, rater_labels: tuple[str, ...]) -> dict[str, Any]:
    """Each clinician's accuracy at the strict majority choice of the other clinicians on the item."""
    human_rows = np.flatnonzero(data.is_human_row)
    target = majority_of_others(data.human_choice_counts[data.item_index[human_rows]], data.choice_index[human_rows])
    has_target = target >= 0
    correct = has_target & (target == data.choice_index[human_rows])
    local = np.searchsorted(data.humans, data.rater[human_rows])
    n_targets = np.bincount(local, weights=has_target, minlength=len(data.humans))
    n_correct = np.bincount(local, weights=correct, minlength=len(data.humans))
    return {
        rater_labels[rater]: {
            "accuracy": _number(n_correct[i] / n_targets[i]) if n_targets[i] else None,
            "n_items": int(n_targets[i]),
        }
        for i, rater in enumerate(data.humans)
    }


# --- AI judges against clinicians ---------------------------------------------------------------------


def _judge_against_clinicians(
    data: _CriterionData,
    judge: int,
    bootstrap: PromptBootstrap,
    settings: _Settings,
    reliability_resamples: dict[str, Any],
    rater_labels: tuple[str, ...],
) -> dict[str, Any]:
    values, confidence = settings.values, settings.confidence
    n_values, n_humans = len(values), len(data.humans)
    judge_rows = np.flatnonzero(data.rater == judge)
    judge_value_index = np.full(data.n_items, -1)
    judge_value_index[data.item_index[judge_rows]] = data.value_index[judge_rows]
    judge_has_item = judge_value_index >= 0
    judge_choice_of_item = np.where(judge_has_item, np.sign(values[judge_value_index]) + 1, -1)
    human_rows = np.flatnonzero(data.is_human_row)
    paired_rows = human_rows[judge_has_item[data.item_index[human_rows]]]
    paired_items = data.item_index[paired_rows]
    paired_local = np.searchsorted(data.humans, data.rater[paired_rows])
    paired_prompt = data.item_prompt[paired_items]
    judge_value = values[judge_value_index[paired_items]]

    # Kappa and percent agreement with each clinician, against the mean clinician-clinician figure.
    sums = bootstrap.keyed_sums(
        paired_prompt, paired_local, agreement.pair_features(judge_value, data.value[paired_rows]), n_humans
    )
    figures = agreement.kappas_from_pair_sums(sums)
    shared_items = sums[0, :, 0]
    usable = shared_items >= MIN_PAIR_ITEMS
    with_each_clinician = {
        rater_labels[rater]: {
            **{name: _number(array[0, i]) for name, array in figures.items()},
            "n_items": int(shared_items[i]),
        }
        for i, rater in enumerate(data.humans)
    }
    against_clinicians = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, array in figures.items():
            judge_mean = np.nanmean(array[:, usable], axis=1) if usable.any() else np.full(len(array), np.nan)
            clinician_mean = reliability_resamples["mean_pairwise"][name]
            against_clinicians[name] = {
                "judge_clinician_mean": {**_stats(judge_mean, confidence), "n_clinicians": int(usable.sum())},
                "clinician_clinician_mean": _stats(clinician_mean, confidence),
                "difference": _stats(judge_mean - clinician_mean, confidence),
            }

    # Alpha with the judge added, and with the judge replacing each clinician in turn.
    judge_counts = np.zeros_like(data.human_value_counts)
    judge_counts[judge_has_item, judge_value_index[judge_has_item]] = 1
    added_counts = data.human_value_counts + judge_counts
    added = bootstrap.sums(
        data.item_prompt, agreement.item_coincidences(added_counts).reshape(data.n_items, n_values * n_values)
    ).reshape(-1, n_values, n_values)
    alpha_added, alpha_added_resampled = _alpha_resamples(added, values, confidence)
    base_alpha = reliability_resamples["alpha"]

    # Replacing clinician h changes only the items h rated: add each such item's change in coincidences.
    h_rows = human_rows
    h_items = data.item_index[h_rows]
    before = data.human_value_counts[h_items]
    after = before - _one_hot(data.value_index[h_rows], n_values)
    has_judge = judge_has_item[h_items]
    after[has_judge] += _one_hot(judge_value_index[h_items[has_judge]], n_values)
    # Coincidence matrices are symmetric: resample the upper triangle only.
    upper = np.triu_indices(n_values)
    delta = (agreement.item_coincidences(after) - agreement.item_coincidences(before))[:, upper[0], upper[1]]
    h_local = np.searchsorted(data.humans, data.rater[h_rows])
    delta_sums = np.zeros((bootstrap.n_resamples + 1, n_humans, n_values, n_values))
    delta_sums[:, :, upper[0], upper[1]] = bootstrap.keyed_sums(data.item_prompt[h_items], h_local, delta, n_humans)
    delta_sums[:, :, upper[1], upper[0]] = delta_sums[:, :, upper[0], upper[1]]
    base_coincidences = _coincidence_sums_of_humans(data, bootstrap, n_values)
    replaced = base_coincidences.reshape(-1, 1, n_values, n_values) + delta_sums
    _, replaced_resampled = _alpha_resamples(replaced, values, confidence)
    replaced_by_clinician = {
        rater_labels[rater]: {level: _number(replaced_resampled[level][0, i]) for level in agreement.ALPHA_LEVELS}
        for i, rater in enumerate(data.humans)
    }
    alpha_report: dict[str, Any] = {
        "clinicians_only": {level: _stats(base_alpha[level], confidence) for level in agreement.ALPHA_LEVELS},
        "judge_added": alpha_added,
        "judge_added_minus_clinicians_only": {
            level: _stats(alpha_added_resampled[level] - base_alpha[level], confidence)
            for level in agreement.ALPHA_LEVELS
        },
        "judge_replacing_each_clinician": replaced_by_clinician,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        replaced_mean = {level: np.nanmean(replaced_resampled[level], axis=1) for level in agreement.ALPHA_LEVELS}
    alpha_report["judge_replacing_mean"] = {
        level: _stats(replaced_mean[level], confidence) for level in agreement.ALPHA_LEVELS
    }
    alpha_report["judge_replacing_mean_minus_clinicians_only"] = {
        level: _stats(replaced_mean[level] - base_alpha[level], confidence) for level in agreement.ALPHA_LEVELS
    }

    return {
        "n_ratings": len(judge_rows),
        "n_items_shared_with_clinicians": int((judge_has_item & (data.human_value_counts.sum(axis=1) > 0)).sum()),
        "with_each_clinician": with_each_clinician,
        "against_clinicians": against_clinicians,
        "alpha": alpha_report,
        "loo_majority_accuracy": _loo_accuracy_judge(
            data, paired_rows, judge_choice_of_item, bootstrap, confidence, rater_labels
        ),
        "alternative_annotator_test": _alt_test(data, paired_rows, judge_choice_of_item, settings, rater_labels),
    }


def _add_judge_quality(
    judges: dict[str, dict[str, Any]],
    data: _CriterionData,
    table: RatingTable,
    criterion_label: str,
    judge_of_rater: np.ndarray,
    bootstrap: PromptBootstrap,
    confidence: float,
) -> None:
    """Position-swap consistency, pooled agreement, length preference and (on the safety criterion) safety
    recall, added to each judge's entry (stats/judge_quality.py)."""
    row_prompt = data.item_prompt[data.item_index]
    human_rows = np.flatnonzero(data.is_human_row)
    first, second = pairs_within_items(data.item_index[human_rows], data.rater[human_rows])
    first, second = human_rows[first], human_rows[second]
    clinician_pooled = pooled_pair_sums(
        row_prompt[first],
        data.choice_index[first],
        data.choice_index[second],
        data.rater[first],
        data.rater[second],
        bootstrap,
    )
    clinician_length = _length_side(data, human_rows, row_prompt, bootstrap)
    if criterion_label == SAFETY_CRITERION:
        flagged = table.both_unacceptable == 1
        clinician_flagged = np.isin(data.item_ids, table.item[flagged & ~judge_of_rater[table.rater]])
    for judge in data.judges:
        judge_rows = np.flatnonzero(data.rater == judge)
        judge_choice = np.full(data.n_items, -1)
        judge_choice[data.item_index[judge_rows]] = data.choice_index[judge_rows]
        paired = human_rows[judge_choice[data.item_index[human_rows]] >= 0]
        judge_pooled = pooled_pair_sums(
            row_prompt[paired],
            judge_choice[data.item_index[paired]],
            data.choice_index[paired],
            np.full(len(paired), judge),
            data.rater[paired],
            bootstrap,
        )
        entry = judges[table.rater_labels[judge]]
        entry["position_swap"] = swap_consistency(data.consistency[judge_rows], confidence=confidence)
        entry["pooled_agreement"] = pooled_agreement(judge_pooled, clinician_pooled, confidence=confidence)
        entry["length_preference"] = length_preference(
            _length_side(data, judge_rows, row_prompt, bootstrap), clinician_length, confidence=confidence
        )
        if criterion_label == SAFETY_CRITERION:
            judge_flagged = np.isin(data.item_ids, table.item[flagged & (table.rater == judge)])
            entry["safety_recall"] = safety_recall(
                data.human_choice_counts, clinician_flagged, judge_choice, judge_flagged, confidence=confidence
            )


def _length_side(
    data: _CriterionData, rows: np.ndarray, row_prompt: np.ndarray, bootstrap: PromptBootstrap
) -> dict[str, Any]:
    usable, x, y = length_choices(data.value[rows], data.length_first[rows], data.length_second[rows])
    x, y = x[usable], y[usable]
    return {"x": x, "y": y, "picked_longer": picked_longer_sums(row_prompt[rows][usable], x, y, bootstrap)}


def _coincidence_sums_of_humans(data: _CriterionData, bootstrap: PromptBootstrap, n_values: int) -> np.ndarray:
    per_item = agreement.item_coincidences(data.human_value_counts).reshape(data.n_items, n_values * n_values)
    return bootstrap.sums(data.item_prompt, per_item)


def _loo_accuracy_judge(
    data: _CriterionData,
    paired_rows: np.ndarray,
    judge_choice_of_item: np.ndarray,
    bootstrap: PromptBootstrap,
    confidence: float,
    rater_labels: tuple[str, ...],
) -> dict[str, Any]:
    """Judge and clinicians predict the same targets: for each (item, left-out clinician h), the strict
    majority choice of the other clinicians. h's own answer and the judge's answer are scored on it."""
    items = data.item_index[paired_rows]
    own_choice = data.choice_index[paired_rows]
    target = majority_of_others(data.human_choice_counts[items], own_choice)
    has_target = target >= 0
    judge_choice = judge_choice_of_item[items]
    clinician_correct = has_target & (own_choice == target)
    judge_correct = has_target & (judge_choice == target)
    sums = bootstrap.sums(data.item_prompt[items], np.column_stack([has_target, clinician_correct, judge_correct]))
    with np.errstate(invalid="ignore", divide="ignore"):
        judge_accuracy = sums[:, 2] / sums[:, 0]
        clinician_accuracy = sums[:, 1] / sums[:, 0]
    local = np.searchsorted(data.humans, data.rater[paired_rows])
    n_targets = np.bincount(local, weights=has_target, minlength=len(data.humans))
    n_clinician = np.bincount(local, weights=clinician_correct, minlength=len(data.humans))
    n_judge = np.bincount(local, weights=judge_correct, minlength=len(data.humans))
    return {
        "judge": {**_stats(judge_accuracy, confidence), "n_targets": int(sums[0, 0])},
        "clinicians": {**_stats(clinician_accuracy, confidence), "n_targets": int(sums[0, 0])},
        "judge_minus_clinicians": _stats(judge_accuracy - clinician_accuracy, confidence),
        "per_clinician": {
            rater_labels[rater]: {
                "clinician_accuracy": _number(n_clinician[i] / n_targets[i]) if n_targets[i] else None,
                "judge_accuracy": _number(n_judge[i] / n_targets[i]) if n_targets[i] else None,
                "n_targets": int(n_targets[i]),
            }
            for i, rater in enumerate(data.humans)
        },
    }


def _alt_test(
    data: _CriterionData,
    paired_rows: np.ndarray,
    judge_choice_of_item: np.ndarray,
    settings: _Settings,
    rater_labels: tuple[str, ...],
) -> dict[str, Any]:
    items = data.item_index[paired_rows]
    own_choice = data.choice_index[paired_rows]
    counts = data.human_choice_counts[items]
    has_others = counts.sum(axis=1) >= 2
    judge_choice = judge_choice_of_item[items]
    judge_alignment = alignment_with_others(counts, own_choice, judge_choice)
    human_alignment = alignment_with_others(counts, own_choice, own_choice)
    local = np.searchsorted(data.humans, data.rater[paired_rows])
    scores = {
        rater_labels[rater]: (judge_alignment[has_others & (local == i)], human_alignment[has_others & (local == i)])
        for i, rater in enumerate(data.humans)
    }
    return alternative_annotator_test(scores, epsilon=settings.epsilon, q=settings.alt_test_q)


# --- Results: wins, ties and losses between systems ----------------------------------------------------


def _results(
    data: _CriterionData,
    group_rows: np.ndarray,
    bootstrap: PromptBootstrap,
    settings: _Settings,
    system_labels: tuple[str, ...],
) -> dict[str, Any]:
    """Head-to-heads of every pair of systems, for one group of raters (the clinicians, or one judge)."""
    confidence = settings.confidence
    rows = np.flatnonzero(group_rows)
    items = data.item_index[rows]
    first, second = data.item_system_first, data.item_system_second
    low = np.minimum(first, second)
    high = np.maximum(first, second)
    n_systems = len(system_labels)
    item_pair_key = low * n_systems + high
    keys, item_key_index = np.unique(item_pair_key, return_inverse=True)
    # Outcome per rating, from the lower-indexed system's side: (wins, ties, losses).
    choice = data.choice_index[rows]
    low_is_first = (first < second)[items]
    per_rating = np.column_stack(
        [
            np.where(low_is_first, choice == 0, choice == 2),
            choice == 1,
            np.where(low_is_first, choice == 2, choice == 0),
        ]
    ).astype(float)
    rating_sums = bootstrap.keyed_sums(data.item_prompt[items], item_key_index[items], per_rating, len(keys))

    # Per comparison: the group's plurality choice; a comparison with no single plurality counts as a tie.
    group_counts = np.bincount(items * 3 + choice, minlength=data.n_items * 3).reshape(data.n_items, 3)
    rated = group_counts.sum(axis=1) > 0
    top = group_counts.max(axis=1)
    unique_top = (group_counts == top[:, None]).sum(axis=1) == 1
    majority = np.where(unique_top, group_counts.argmax(axis=1), 1)
    low_is_first_item = first < second
    per_comparison = np.column_stack(
        [
            np.where(low_is_first_item, majority == 0, majority == 2),
            majority == 1,
            np.where(low_is_first_item, majority == 2, majority == 0),
        ]
    ).astype(float)[rated]
    comparison_sums = bootstrap.keyed_sums(data.item_prompt[rated], item_key_index[rated], per_comparison, len(keys))

    pairs = []
    for position, key in enumerate(keys):
        system, opponent = divmod(int(key), n_systems)
        pairs.append(
            {
                "system": system_labels[system],
                "opponent": system_labels[opponent],
                "per_rating": _head_to_head(rating_sums[:, position], confidence),
                "per_comparison": _head_to_head(comparison_sums[:, position], confidence),
            }
        )

    # Win matrix for Bradley-Terry and average win rates: ties count half a win for each side.
    wins = np.zeros((len(rating_sums), n_systems, n_systems))
    questions = np.zeros((len(rating_sums), n_systems, n_systems))
    key_low, key_high = np.divmod(keys, n_systems)
    wins[:, key_low, key_high] = rating_sums[:, :, 0] + rating_sums[:, :, 1] / 2
    wins[:, key_high, key_low] = rating_sums[:, :, 2] + rating_sums[:, :, 1] / 2
    total = rating_sums.sum(axis=2)
    questions[:, key_low, key_high] = total
    questions[:, key_high, key_low] = total
    return {
        "n_ratings": len(rows),
        "n_comparisons": int(rated.sum()),
        "pairs": pairs,
        "bradley_terry": _bradley_terry(wins, questions[0], system_labels, confidence),
        "average_win_rate": _average_win_rate(rating_sums, keys, n_systems, system_labels, confidence),
    }


def _head_to_head(sums: np.ndarray, confidence: float) -> dict[str, Any]:
    """Counts, shares, win rates and the sign test from (1 + R, 3) sums of (wins, ties, losses)."""
    wins, ties, losses = (float(x) for x in sums[0])
    total = wins + ties + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = sums[:, 0] / sums.sum(axis=1)
        decisive_rate = sums[:, 0] / (sums[:, 0] + sums[:, 2])
    wilson_low, wilson_high = wilson_interval(wins, total, confidence)
    decisive_low, decisive_high = wilson_interval(wins, wins + losses, confidence)
    return {
        "n": int(total),
        "wins": int(wins),
        "ties": int(ties),
        "losses": int(losses),
        "shares_percent": shares_percent(wins, ties, losses),
        "win_rate": {**_stats(win_rate, confidence), "wilson_low": wilson_low, "wilson_high": wilson_high},
        "decisive_win_rate": {
            **_stats(decisive_rate, confidence),
            "wilson_low": decisive_low,
            "wilson_high": decisive_high,
        },
        "sign_test_p_value": sign_test(int(wins), int(losses)),
    }


def _bradley_terry(
    wins: np.ndarray, questions: np.ndarray, system_labels: tuple[str, ...], confidence: float
) -> dict[str, Any]:
    compared = questions.sum(axis=1) > 0
    systems = np.flatnonzero(compared)
    log_strength = np.full((len(wins), len(systems)), np.nan)
    if len(systems) >= 2:
        graph = scipy.sparse.csr_matrix(questions[np.ix_(systems, systems)] > 0)
        n_components, _ = scipy.sparse.csgraph.connected_components(graph, directed=False)
        if n_components == 1:
            log_strength = bradley_terry_log_strengths(wins[:, systems][:, :, systems])
    estimate, low, high = _intervals(log_strength, confidence)
    return {
        "method": "MM maximum likelihood, ties split half / half, log strengths centred to mean 0",
        "log_strength": {
            system_labels[system]: _stat(estimate[i], low[i], high[i]) for i, system in enumerate(systems)
        },
    }


def _average_win_rate(
    rating_sums: np.ndarray,
    keys: np.ndarray,
    n_systems: int,
    system_labels: tuple[str, ...],
    confidence: float,
) -> dict[str, Any]:
    """Mean over a system's opponents of its per-rating win rate (ties in the denominator)."""
    key_low, key_high = np.divmod(keys, n_systems)
    total = rating_sums.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        low_rate = rating_sums[:, :, 0] / total
        high_rate = rating_sums[:, :, 2] / total
    present = total[0] > 0
    report = {}
    for system in range(n_systems):
        rates = [low_rate[:, present & (key_low == system)], high_rate[:, present & (key_high == system)]]
        stacked = np.concatenate(rates, axis=1)
        if stacked.shape[1] == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stacked, axis=1)
        report[system_labels[system]] = {**_stats(mean, confidence), "n_opponents": int(stacked.shape[1])}
    return report


# --- Position bias ------------------------------------------------------------------------------------


def position_bias(
    rater: np.ndarray,
    value: np.ndarray,
    left_is_first: np.ndarray,
    table: RatingTable,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Per rater: share of decisive choices for the response shown on the left, against 50% (binomial test).

    Ties and ratings whose side is unknown are excluded from n and counted separately.
    """
    n_raters = len(table.rater_labels)
    known = left_is_first != LEFT_UNKNOWN
    decisive = value != 0
    chose_left = (value < 0) == (left_is_first == LEFT_WAS_FIRST)
    n = np.bincount(rater[known & decisive], minlength=n_raters)
    n_left = np.bincount(rater[known & decisive & chose_left], minlength=n_raters)
    n_unknown = np.bincount(rater[~known], minlength=n_raters)
    n_ties = np.bincount(rater[known & ~decisive], minlength=n_raters)
    report = {}
    for r in np.unique(rater):
        low, high = wilson_interval(n_left[r], n[r], confidence)
        report[table.rater_labels[r]] = {
            "is_judge": bool(table.rater_is_judge[r]),
            "n": int(n[r]),
            "n_left": int(n_left[r]),
            "share_left": float(n_left[r] / n[r]) if n[r] else None,
            "wilson_low": low,
            "wilson_high": high,
            "p_value": float(scipy.stats.binomtest(int(n_left[r]), int(n[r]), 0.5).pvalue) if n[r] else None,
            "n_ties": int(n_ties[r]),
            "n_unknown_side": int(n_unknown[r]),
        }
    return report
