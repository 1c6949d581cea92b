"""Agreement coefficients from counts.

Every coefficient here is a function of sums (of value counts, coincidences or pair statistics), so the
same formulas serve the point estimate and every bootstrap resample: the `*_from_sums` functions accept
arrays with any leading shape (e.g. one row per resample) and return NaN where a coefficient is undefined.
The scalar functions (`krippendorff_alpha`, `fleiss_kappa`, ...) take an items-by-categories table of
value counts, the layout of the krippendorff package's `value_counts`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

AlphaLevel = Literal["nominal", "ordinal", "interval"]
ALPHA_LEVELS: tuple[AlphaLevel, ...] = ("nominal", "ordinal", "interval")


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division that yields NaN, silently, where the denominator is zero."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


# --- Krippendorff's alpha --------------------------------------------------------------------------


def item_coincidences(value_counts: np.ndarray) -> np.ndarray:
    """Each item's contribution to the coincidence matrix: (c c^T - diag(c)) / (m - 1), shape (N, V, V).

    Items with fewer than two values contribute nothing (they are not pairable).
    """
    counts = np.asarray(value_counts, dtype=float)
    n_values = counts.sum(axis=1)
    outer = counts[:, :, None] * counts[:, None, :]
    idx = np.arange(counts.shape[1])
    outer[:, idx, idx] -= counts
    scale = _divide(np.ones_like(n_values), n_values - 1)
    scale[n_values < 2] = 0.0
    return outer * scale[:, None, None]


def coincidence_matrix(value_counts: np.ndarray) -> np.ndarray:
    """Krippendorff's coincidence matrix o (V x V) from items-by-values counts."""
    return item_coincidences(value_counts).sum(axis=0)


def alpha_distances(values: np.ndarray, level: AlphaLevel, value_totals: np.ndarray) -> np.ndarray:
    """Squared distance metric delta^2 between values, shape (..., V, V) (ordinal depends on the totals n_v)."""
    values = np.asarray(values, dtype=float)
    n_v = np.asarray(value_totals, dtype=float)
    size = len(values)
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(size), (*n_v.shape[:-1], size, size))
    if level == "interval":
        return np.broadcast_to((values[:, None] - values[None, :]) ** 2, (*n_v.shape[:-1], size, size))
    if level == "ordinal":
        # (sum of n_g for g between a and b, inclusive, minus (n_a + n_b) / 2) squared
        cumulative = np.cumsum(n_v, axis=-1)
        low = np.minimum.outer(np.arange(size), np.arange(size))
        high = np.maximum.outer(np.arange(size), np.arange(size))
        between = cumulative[..., high] - cumulative[..., low] + n_v[..., low]
        return (between - (n_v[..., low] + n_v[..., high]) / 2.0) ** 2
    raise ValueError(f"unknown level of measurement {level!r}")


def alpha_from_coincidences(coincidences: np.ndarray, values: np.ndarray, level: AlphaLevel) -> np.ndarray:
    """Krippendorff's alpha = 1 - D_o / D_e from coincidence matrices of shape (..., V, V).

    D_o = sum o_ab d_ab / n and D_e = sum n_a n_b d_ab / (n (n - 1)), so
    alpha = 1 - (n - 1) sum o d / sum n_a n_b d (the package's formula, term for term).
    """
    o = np.asarray(coincidences, dtype=float)
    n_v = o.sum(axis=-1)
    n_total = n_v.sum(axis=-1)
    d = alpha_distances(values, level, n_v)
    observed = (o * d).sum(axis=(-2, -1))
    expected = (n_v[..., :, None] * n_v[..., None, :] * d).sum(axis=(-2, -1))
    return 1.0 - (n_total - 1.0) * _divide(observed, expected)


def collapse_to_choice(matrix: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum the rows and columns of a (..., V, V) matrix over values into choices (-1, 0, 1): (..., 3, 3)."""
    choice_of_value = np.sign(np.asarray(values)).astype(int) + 1
    collapse = np.zeros((len(values), 3))
    collapse[np.arange(len(values)), choice_of_value] = 1.0
    return np.einsum("va,...vw,wb->...ab", collapse, matrix, collapse)


def krippendorff_alpha(value_counts: np.ndarray, values: np.ndarray, level: AlphaLevel) -> float:
    """Krippendorff's alpha from items-by-values counts (columns in the order of `values`)."""
    return float(alpha_from_coincidences(coincidence_matrix(value_counts), values, level))


# --- Percent agreement, Fleiss' kappa, Gwet's AC1 / AC2 ----------------------------------------------


def item_pair_agreement(choice_counts: np.ndarray) -> np.ndarray:
    """Per item: [pairs, agreeing pairs, pairs without a tie, agreeing pairs without a tie], shape (N, 4).

    `choice_counts` has columns (favours first, tie, favours second). A pair counts "without ties" only if
    neither rating is a tie.
    """
    counts = np.asarray(choice_counts, dtype=float)
    n_values = counts.sum(axis=1)
    decisive = counts[:, 0] + counts[:, 2]
    return np.stack(
        [
            n_values * (n_values - 1) / 2,
            (counts * (counts - 1) / 2).sum(axis=1),
            decisive * (decisive - 1) / 2,
            (counts[:, 0] * (counts[:, 0] - 1) + counts[:, 2] * (counts[:, 2] - 1)) / 2,
        ],
        axis=1,
    )


def fleiss_item_terms(value_counts: np.ndarray) -> np.ndarray:
    """Per item: [P_i, n_i1 .. n_iq], the sums Fleiss' kappa needs; all items must have the same raters."""
    counts = np.asarray(value_counts, dtype=float)
    raters = counts.sum(axis=1)
    agreement = _divide((counts**2).sum(axis=1) - raters, raters * (raters - 1))
    return np.column_stack([agreement, counts])


def fleiss_kappa_from_sums(sum_agreement: np.ndarray, n_items: np.ndarray, category_totals: np.ndarray) -> np.ndarray:
    """Fleiss' kappa = (P_bar - P_e) / (1 - P_e), P_e = sum p_j^2, p_j = category share of all ratings."""
    p_bar = _divide(sum_agreement, n_items)
    totals = np.asarray(category_totals, dtype=float)
    shares = _divide(totals, totals.sum(axis=-1, keepdims=True))
    p_chance = (shares**2).sum(axis=-1)
    return _divide(p_bar - p_chance, 1.0 - p_chance)


def fleiss_kappa(value_counts: np.ndarray) -> float:
    """Fleiss' kappa from items-by-categories counts (every item rated by the same number of raters)."""
    counts = np.asarray(value_counts, dtype=float)
    raters = counts.sum(axis=1)
    if len(raters) == 0 or (raters != raters[0]).any() or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs every item rated by the same number (>= 2) of raters")
    terms = fleiss_item_terms(counts)
    return float(fleiss_kappa_from_sums(terms[:, 0].sum(), len(counts), terms[:, 1:].sum(axis=0)))


def identity_weights(n_categories: int) -> np.ndarray:
    return np.eye(n_categories)


def ordinal_weights(n_categories: int) -> np.ndarray:
    """Gwet's ordinal weights: 1 - C(|k-l|+1, 2) / max, as in irrCAC's ordinal.weights."""
    distance = np.abs(np.subtract.outer(np.arange(n_categories), np.arange(n_categories))) + 1
    pairs = distance * (distance - 1) / 2.0
    return 1.0 - pairs / pairs.max()


def gwet_item_terms(value_counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per item: [pa_i if r_i >= 2 else 0, 1 if r_i >= 2, r_ik / r_i for each k (0 if r_i = 0), 1 if r_i >= 1].

    pa_i = sum_k r_ik (r*_ik - 1) / (r_i (r_i - 1)) with r*_ik = sum_l w_kl r_il (Gwet 2014, multiple raters
    with missing ratings).
    """
    counts = np.asarray(value_counts, dtype=float)
    raters = counts.sum(axis=1)
    weighted = counts @ np.asarray(weights, dtype=float).T
    pairable = raters >= 2
    agreement = np.where(pairable, _divide((counts * (weighted - 1)).sum(axis=1), raters * (raters - 1)), 0.0)
    shares = np.where(raters[:, None] >= 1, _divide(counts, raters[:, None]), 0.0)
    return np.column_stack([agreement, pairable, shares, raters >= 1])


def gwet_ac_from_sums(
    sum_agreement: np.ndarray,
    n_pairable_items: np.ndarray,
    sum_shares: np.ndarray,
    n_rated_items: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """Gwet's AC1 (identity weights) or AC2 (other weights): (p_a - p_e) / (1 - p_e).

    p_e = sum(w) / (q (q - 1)) * sum_k pi_k (1 - pi_k), pi_k the mean share of category k per item.
    """
    q = np.asarray(weights).shape[0]
    p_agree = _divide(sum_agreement, n_pairable_items)
    pi = _divide(np.asarray(sum_shares, dtype=float), np.asarray(n_rated_items, dtype=float)[..., None])
    p_chance = np.sum(weights) / (q * (q - 1)) * (pi * (1 - pi)).sum(axis=-1)
    return _divide(p_agree - p_chance, 1.0 - p_chance)


def gwet_ac(value_counts: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Gwet's AC1 (weights None: identity) or AC2 from items-by-categories counts."""
    counts = np.asarray(value_counts, dtype=float)
    weights = identity_weights(counts.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    terms = gwet_item_terms(counts, weights).sum(axis=0)
    q = counts.shape[1]
    return float(gwet_ac_from_sums(terms[0], terms[1], terms[2 : 2 + q], terms[2 + q], weights))


def percent_agreement(choice_counts: np.ndarray) -> tuple[float, float]:
    """(with ties, without ties) pooled over all pairs of ratings of the same item."""
    pairs = item_pair_agreement(choice_counts).sum(axis=0)
    return float(_divide(pairs[1], pairs[0])), float(_divide(pairs[3], pairs[2]))


# --- Cohen's kappa between two raters ---------------------------------------------------------------

# Per rating pair (rater a, rater b) on one item, the sums that both kappas and percent agreement need.
PAIR_FEATURES = (
    "n",
    "choice_agree",
    "a_first",
    "a_second",
    "b_first",
    "b_second",
    "squared_difference",
    "a_sum",
    "a_sum_squares",
    "b_sum",
    "b_sum_squares",
    "decisive_n",
    "decisive_agree",
)


def pair_features(value_a: np.ndarray, value_b: np.ndarray) -> np.ndarray:
    """Features (PAIR_FEATURES) of aligned ratings by two raters, one row per item, shape (N, 13)."""
    a = np.asarray(value_a, dtype=float)
    b = np.asarray(value_b, dtype=float)
    choice_a, choice_b = np.sign(a), np.sign(b)
    decisive = (choice_a != 0) & (choice_b != 0)
    return np.column_stack(
        [
            np.ones_like(a),
            choice_a == choice_b,
            choice_a < 0,
            choice_a > 0,
            choice_b < 0,
            choice_b > 0,
            (a - b) ** 2,
            a,
            a**2,
            b,
            b**2,
            decisive,
            decisive & (choice_a == choice_b),
        ]
    ).astype(float)


def kappas_from_pair_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Cohen's kappa on the choice, quadratic-weighted kappa on the value and percent agreements.

    `sums` has PAIR_FEATURES on its last axis. Quadratic kappa = 1 - sum (a-b)^2 / E[(a-b)^2 | independence],
    the expectation being (n sum a^2 + n sum b^2 - 2 sum a sum b) / n^2 from the two raters' marginals.
    """
    s = {name: sums[..., index] for index, name in enumerate(PAIR_FEATURES)}
    n = s["n"]
    a_tie = n - s["a_first"] - s["a_second"]
    b_tie = n - s["b_first"] - s["b_second"]
    chance_agree = _divide(s["a_first"] * s["b_first"] + a_tie * b_tie + s["a_second"] * s["b_second"], n**2)
    observed_agree = _divide(s["choice_agree"], n)
    expected_squared = _divide(n * s["a_sum_squares"] + n * s["b_sum_squares"] - 2 * s["a_sum"] * s["b_sum"], n**2)
    kappa = _divide(observed_agree - chance_agree, 1.0 - chance_agree)
    quadratic = 1.0 - _divide(_divide(s["squared_difference"], n), expected_squared)
    undefined = n < 2
    for array in (kappa, quadratic):
        array[undefined] = np.nan
    return {
        "kappa": kappa,
        "kappa_quadratic": quadratic,
        "percent_agreement": observed_agree,
        "percent_agreement_without_ties": _divide(s["decisive_agree"], s["decisive_n"]),
    }


def cohen_kappa(value_a: np.ndarray, value_b: np.ndarray) -> tuple[float, float]:
    """(kappa on the choice sign(value), quadratic-weighted kappa on the value) for aligned ratings."""
    result = kappas_from_pair_sums(pair_features(value_a, value_b).sum(axis=0, keepdims=True))
    return float(result["kappa"][0]), float(result["kappa_quadratic"][0])
