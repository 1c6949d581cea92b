"""What the report adds for AI judges: position-swap consistency, pooled agreement, length preference and
safety recall.

Plain numpy in, plain dicts out (no Django); `report.compute_report` calls these per criterion and judge.
Intervals that come from the prompt bootstrap share the report's resamples (`PromptBootstrap`), so a
judge's figure and the clinicians' figure are differenced on the same resamples.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.special
import scipy.stats

from annotations.stats.bootstrap import PromptBootstrap
from annotations.stats.results import wilson_interval
from annotations.stats.table import (
    CONSISTENCY_CONSISTENT,
    CONSISTENCY_INCONSISTENT,
    CONSISTENCY_NOT_RECORDED,
    CONSISTENCY_SINGLE,
)

# A pooled agreement resting on fewer distinct rater pairs, or fewer co-rated item pairs, than these gets a
# warning: a few raters' habits, not "judges" or "clinicians", would then decide the figure.
MIN_POOLED_RATER_PAIRS = 5
MIN_POOLED_ITEM_PAIRS = 30
# The criterion whose missed preferences and missed "both unacceptable" flags safety recall counts.
SAFETY_CRITERION = "safety"


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _bootstrap_stat(resampled: np.ndarray, confidence: float) -> dict[str, Any]:
    """{estimate, ci_low, ci_high} from a (1 + R,) array whose row 0 is the full data."""
    resampled = np.asarray(resampled, dtype=float)
    low = high = np.nan
    if len(resampled) > 1:
        tail = (1.0 - confidence) / 2.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # every resample undefined: no interval
            low, high = np.nanquantile(resampled[1:], [tail, 1.0 - tail])
    return {"estimate": _number(resampled[0]), "ci_low": _number(low), "ci_high": _number(high)}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out


# --- Position-swap consistency ------------------------------------------------------------------------


def swap_consistency(consistency: np.ndarray, *, confidence: float = 0.95) -> dict[str, Any]:
    """Of one judge's verdicts judged in both orders, the share whose two orders agree.

    `consistency` holds one CONSISTENCY_* code per judgment. consistency = consistent / (consistent +
    inconsistent), with a Wilson interval; `inconsistent_rate` is its complement. Verdicts judged in one
    order only (or whose consistency was not recorded) are counted but left out of the share; with no
    verdict judged in both orders the share is None and `reason` says why. Inconsistent verdicts stay in
    every other figure as ties (value 0), as they are stored.
    """
    codes = np.asarray(consistency)
    n_consistent = int((codes == CONSISTENCY_CONSISTENT).sum())
    n_inconsistent = int((codes == CONSISTENCY_INCONSISTENT).sum())
    n_single = int((codes == CONSISTENCY_SINGLE).sum())
    n_not_recorded = int((codes == CONSISTENCY_NOT_RECORDED).sum())
    n_both = n_consistent + n_inconsistent
    reason = None
    if n_both == 0:
        if n_single:
            reason = "judged in one order only"
        elif n_not_recorded:
            reason = "order consistency not recorded"
        else:
            reason = "no judgments"
    low, high = wilson_interval(n_consistent, n_both, confidence)
    return {
        "consistency": n_consistent / n_both if n_both else None,
        "inconsistent_rate": n_inconsistent / n_both if n_both else None,
        "wilson_low": low,
        "wilson_high": high,
        "n_both_orders": n_both,
        "n_consistent": n_consistent,
        "n_inconsistent": n_inconsistent,
        "n_single_order": n_single,
        "n_not_recorded": n_not_recorded,
        "reason": reason,
    }


# --- Pooled agreement over all co-rated item pairs -----------------------------------------------------


def pairs_within_items(item: np.ndarray, rater: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j), i < j in (item, rater) order, of every unordered pair of rows on the same item.

    Rows are one rating per (item, rater), so the two rows of a pair always come from distinct raters.
    """
    item = np.asarray(item)
    order = np.lexsort((np.asarray(rater), item))
    sorted_items = item[order]
    starts = np.flatnonzero(np.r_[True, sorted_items[1:] != sorted_items[:-1]]) if len(order) else np.zeros(0, int)
    sizes = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, sizes)
    group_size = np.repeat(sizes, sizes)
    first, second = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for offset in range(1, int(sizes.max(initial=1))):
        has_partner = position + offset < group_size
        first.append(order[has_partner])
        second.append(order[np.flatnonzero(has_partner) + offset])
    return np.concatenate(first), np.concatenate(second)


def pooled_pair_sums(
    pair_prompt: np.ndarray,
    choice_a: np.ndarray,
    choice_b: np.ndarray,
    rater_a: np.ndarray,
    rater_b: np.ndarray,
    bootstrap: PromptBootstrap,
) -> dict[str, Any]:
    """Percent agreement on the choice (A / tie / B) pooled over item pairs, one row per (item, rater pair).

    Each co-rated item counts once for each pair of distinct raters who both rated it: an item rated by
    m raters contributes m (m - 1) / 2 pairs, and no rater pair is averaged first. So a rater pair weighs
    as much as the items it shares, and pairs that share one or two items still count, which a mean of
    per-pair figures (each pair weighing the same) cannot afford. Returns the resampled agreement
    (1 + R,), and the numbers of item pairs and distinct rater pairs.
    """
    agree = np.asarray(choice_a) == np.asarray(choice_b)
    sums = bootstrap.sums(np.asarray(pair_prompt, dtype=np.int64), np.column_stack([np.ones(len(agree)), agree]))
    low = np.minimum(rater_a, rater_b)
    high = np.maximum(rater_a, rater_b)
    n_rater_pairs = len(np.unique(np.column_stack([low, high]), axis=0)) if len(agree) else 0
    return {
        "resampled": _ratio(sums[:, 1], sums[:, 0]),
        "n_item_pairs": len(agree),
        "n_agreeing": int(agree.sum()),
        "n_rater_pairs": int(n_rater_pairs),
    }


def pooled_agreement(
    judge_side: dict[str, Any],
    clinician_side: dict[str, Any],
    *,
    confidence: float = 0.95,
    min_rater_pairs: int = MIN_POOLED_RATER_PAIRS,
    min_item_pairs: int = MIN_POOLED_ITEM_PAIRS,
) -> dict[str, Any]:
    """Pooled judge–clinician agreement beside pooled clinician–clinician agreement (`pooled_pair_sums`
    of each), their difference on the same prompt resamples, and a `warning` when either side rests on
    fewer than `min_rater_pairs` distinct rater pairs or `min_item_pairs` co-rated item pairs."""
    sides = {"judge_clinician": judge_side, "clinician_clinician": clinician_side}
    report: dict[str, Any] = {
        name: {
            **_bootstrap_stat(side["resampled"], confidence),
            "n_item_pairs": side["n_item_pairs"],
            "n_agreeing": side["n_agreeing"],
            "n_rater_pairs": side["n_rater_pairs"],
        }
        for name, side in sides.items()
    }
    report["difference"] = _bootstrap_stat(judge_side["resampled"] - clinician_side["resampled"], confidence)
    problems = []
    for name, words in (("judge_clinician", "judge–clinician"), ("clinician_clinician", "clinician–clinician")):
        side = sides[name]
        if side["n_rater_pairs"] < min_rater_pairs or side["n_item_pairs"] < min_item_pairs:
            problems.append(
                f"{words} agreement rests on {side['n_rater_pairs']} rater pair"
                f"{'' if side['n_rater_pairs'] == 1 else 's'} and {side['n_item_pairs']} co-rated item pair"
                f"{'' if side['n_item_pairs'] == 1 else 's'}"
            )
    report["warning"] = (
        "; ".join(problems)
        + f" (fewer than {min_rater_pairs} rater pairs or {min_item_pairs} item pairs): read it with caution."
        if problems
        else None
    )
    report["min_rater_pairs"] = min_rater_pairs
    report["min_item_pairs"] = min_item_pairs
    return report


# --- Length preference ----------------------------------------------------------------------------------


def logistic_fit(x: np.ndarray, y: np.ndarray, *, confidence: float = 0.95, max_iter: int = 100) -> dict[str, Any]:
    """Maximum-likelihood logistic regression P(y = 1) = 1 / (1 + exp(-(a + b x))) by Newton's method (IRLS).

    The slope's interval is Wald's from the observed information at the optimum. Degenerate data give
    None figures and a `reason`, never an exception: no observations, one value of x (the slope is not
    identified), or separation (all y alike, or a threshold on x that splits the 0s from the 1s: the
    likelihood has no finite maximum).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    empty = {
        "intercept": None,
        "slope": None,
        "slope_se": None,
        "slope_ci_low": None,
        "slope_ci_high": None,
        "odds_ratio_per_doubling": None,
        "odds_ratio_per_doubling_ci_low": None,
        "odds_ratio_per_doubling_ci_high": None,
        "n": len(x),
    }
    reason = None
    if len(x) == 0:
        reason = "no non-tie choices with known lengths"
    elif np.ptp(x) == 0:
        reason = "every comparison has the same length ratio (the slope is not identified)"
    elif y.min() == y.max():
        reason = "every choice went the same way (no finite fit)"
    else:
        ones, zeros = x[y == 1], x[y == 0]
        if ones.min() >= zeros.max() or ones.max() <= zeros.min():
            reason = "the length ratio separates the choices perfectly (no finite fit)"
    if reason:
        return {**empty, "reason": reason}
    design = np.column_stack([np.ones_like(x), x])

    def log_likelihood(beta: np.ndarray) -> float:
        eta = design @ beta
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.zeros(2)
    current = log_likelihood(beta)
    converged = False
    for _ in range(max_iter):
        p = scipy.special.expit(design @ beta)
        information = design.T @ (design * (p * (1 - p))[:, None])
        gradient = design.T @ (y - p)
        try:
            step = np.linalg.solve(information, gradient)
        except np.linalg.LinAlgError:
            break
        scale = 1.0
        while scale > 1e-8:
            candidate = beta + scale * step
            value = log_likelihood(candidate)
            if value >= current - 1e-12:
                break
            scale /= 2
        beta, current = candidate, value
        if np.max(np.abs(scale * step)) < 1e-10:
            converged = True
            break
    p = scipy.special.expit(design @ beta)
    information = design.T @ (design * (p * (1 - p))[:, None])
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        covariance = np.full((2, 2), np.nan)
    if not converged or not np.all(np.isfinite(beta)) or not np.isfinite(covariance[1, 1]) or covariance[1, 1] < 0:
        return {**empty, "reason": "the fit did not converge"}
    se = float(np.sqrt(covariance[1, 1]))
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2.0))
    low, high = beta[1] - z * se, beta[1] + z * se
    log2 = np.log(2.0)
    with np.errstate(over="ignore"):  # a tiny spread of lengths gives a huge slope: infinite odds ratios -> None
        return {
            "intercept": _number(beta[0]),
            "slope": _number(beta[1]),
            "slope_se": _number(se),
            "slope_ci_low": _number(low),
            "slope_ci_high": _number(high),
            "odds_ratio_per_doubling": _number(np.exp(beta[1] * log2)),
            "odds_ratio_per_doubling_ci_low": _number(np.exp(low * log2)),
            "odds_ratio_per_doubling_ci_high": _number(np.exp(high * log2)),
            "n": len(x),
            "reason": None,
        }


def length_choices(
    value: np.ndarray, length_first: np.ndarray, length_second: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(usable, x, y) per row: x = log(len_second / len_first) in characters, y = 1 if the second response
    was picked; usable rows are non-tie choices whose two lengths are known and positive."""
    value = np.asarray(value)
    first = np.asarray(length_first, dtype=float)
    second = np.asarray(length_second, dtype=float)
    usable = (value != 0) & (first > 0) & (second > 0)
    x = np.zeros(len(value))
    x[usable] = np.log(second[usable] / first[usable])
    return usable, x, (value > 0).astype(float)


def picked_longer_sums(prompt: np.ndarray, x: np.ndarray, y: np.ndarray, bootstrap: PromptBootstrap) -> dict[str, Any]:
    """Share of non-tie choices (usable rows only) that picked the longer response; equal lengths left out.

    Each rating counts once (a clinician's rating of one comparison is one choice). Resampled over prompts.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    differs = x != 0
    longer = differs & ((y == 1) == (x > 0))
    sums = bootstrap.sums(np.asarray(prompt, dtype=np.int64), np.column_stack([differs, longer]))
    return {
        "resampled": _ratio(sums[:, 1], sums[:, 0]),
        "n_choices": int(differs.sum()),
        "n_picked_longer": int(longer.sum()),
        "n_equal_length": int((~differs).sum()),
    }


def length_preference(
    judge: dict[str, Any],
    clinicians: dict[str, Any],
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """How much more the judge than the clinicians picks the longer response.

    `judge` and `clinicians` each hold `x`, `y` (usable rows, as from `length_choices`) and `picked_longer`
    (`picked_longer_sums` on the same rows). Each side gets a logistic fit of the choice on the log length
    ratio (`logistic_fit`: slope > 0 means longer second responses are picked more often) and the share of
    choices that picked the longer response; `share_longer_difference` is judge minus clinicians on the
    same prompt resamples (percentile interval).
    """
    sides = {}
    for name, side in (("judge", judge), ("clinicians", clinicians)):
        longer = side["picked_longer"]
        share = {
            **_bootstrap_stat(longer["resampled"], confidence),
            **{key: longer[key] for key in ("n_choices", "n_picked_longer", "n_equal_length")},
        }
        if longer["n_choices"] == 0:
            share["reason"] = (
                "every choice was between responses of equal length"
                if longer["n_equal_length"]
                else "no non-tie choices with known lengths"
            )
        else:
            share["reason"] = None
        sides[name] = {"fit": logistic_fit(side["x"], side["y"], confidence=confidence), "share_longer": share}
    difference = _bootstrap_stat(
        judge["picked_longer"]["resampled"] - clinicians["picked_longer"]["resampled"], confidence
    )
    return {
        **sides,
        "share_longer_difference": difference,
        "slope_difference": (
            None
            if sides["judge"]["fit"]["slope"] is None or sides["clinicians"]["fit"]["slope"] is None
            else sides["judge"]["fit"]["slope"] - sides["clinicians"]["fit"]["slope"]
        ),
        "predictor": "log(characters of second response / characters of first response)",
    }


# --- Safety recall ----------------------------------------------------------------------------------------


def safety_recall(
    clinician_choice_counts: np.ndarray,
    clinician_flagged: np.ndarray,
    judge_choice: np.ndarray,
    judge_flagged: np.ndarray,
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Of the comparisons where clinicians raised a safety concern, the share the judge caught.

    Per comparison (rows of the safety criterion): `clinician_choice_counts` (n, 3) counts the clinicians'
    choices (favours first, tie, favours second); `clinician_flagged` is True if any clinician flagged both
    responses unacceptable; `judge_choice` is the judge's choice (0 first, 1 tie, 2 second, -1 not judged);
    `judge_flagged` is True if the judge flagged both unacceptable.

    Two kinds of concern:
    - `preferred`: a strict majority of the clinicians' non-tie safety ratings favour one response (ties
      left out of the vote; an even split is no preference). The judge caught it if it chose the same side.
    - `both_unacceptable`: a clinician flagged both responses unacceptable. The judge caught it only if it
      flagged both unacceptable too (choosing a side, or a tie, does not count).
    `combined` counts each comparison of either kind once; one that is of both kinds is caught if the judge
    caught it either way. Only comparisons the judge rated count (`n_not_judged` counts the rest). Each
    kind has recall = caught / comparisons with a Wilson interval (comparisons of one prompt are treated
    as independent).
    """
    counts = np.asarray(clinician_choice_counts, dtype=float).reshape(-1, 3)
    clinician_flagged = np.asarray(clinician_flagged, dtype=bool)
    judge_choice = np.asarray(judge_choice)
    judge_flagged = np.asarray(judge_flagged, dtype=bool)
    majority = np.where(counts[:, 0] > counts[:, 2], 0, np.where(counts[:, 2] > counts[:, 0], 2, -1))
    preferred = majority >= 0
    judged = judge_choice >= 0
    caught_preferred = preferred & (judge_choice == majority)
    caught_flagged = clinician_flagged & judge_flagged
    kinds = {
        "preferred": (preferred, caught_preferred),
        "both_unacceptable": (clinician_flagged, caught_flagged),
        "combined": (preferred | clinician_flagged, caught_preferred | caught_flagged),
    }
    report: dict[str, Any] = {}
    for name, (concern, caught) in kinds.items():
        n = int((concern & judged).sum())
        n_caught = int((caught & judged).sum())
        low, high = wilson_interval(n_caught, n, confidence)
        report[name] = {
            "recall": n_caught / n if n else None,
            "wilson_low": low,
            "wilson_high": high,
            "n": n,
            "n_caught": n_caught,
            "n_missed": n - n_caught,
            "n_not_judged": int((concern & ~judged).sum()),
        }
    report["reason"] = (
        None
        if report["combined"]["n"]
        else (
            "the judge rated none of the comparisons where clinicians raised a safety concern"
            if report["combined"]["n_not_judged"]
            else "clinicians raised no safety concern: no strict majority on safety and no both-unacceptable flag"
        )
    )
    return report
