"""Win / tie / loss tables, Wilson intervals, the exact sign test and Bradley-Terry strengths."""

from __future__ import annotations

import numpy as np
import scipy.stats


def wilson_interval(successes: float, trials: float, confidence: float) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for a binomial proportion."""
    if trials <= 0:
        return None, None
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2.0))
    share = successes / trials
    denominator = 1.0 + z**2 / trials
    centre = (share + z**2 / (2 * trials)) / denominator
    half_width = z * np.sqrt(share * (1 - share) / trials + z**2 / (4 * trials**2)) / denominator
    return float(max(0.0, centre - half_width)), float(min(1.0, centre + half_width))


def sign_test(wins: int, losses: int) -> float | None:
    """Two-sided exact sign test of wins against losses, ties dropped (= exact McNemar on discordant pairs)."""
    if wins + losses == 0:
        return None
    return float(scipy.stats.binomtest(int(wins), int(wins + losses), 0.5).pvalue)


def shares_percent(wins: float, ties: float, losses: float) -> dict[str, float | None]:
    """Shares of all questions, in percent, as the research reports them (e.g. 85 / 6 / 9)."""
    total = wins + ties + losses
    if total == 0:
        return {"wins": None, "losses": None, "ties": None}
    return {
        "wins": 100.0 * wins / total,
        "losses": 100.0 * losses / total,
        "ties": 100.0 * ties / total,
    }


def bradley_terry_log_strengths(
    win_matrix: np.ndarray, max_iterations: int = 1000, tolerance: float = 1e-10
) -> np.ndarray:
    """Bradley-Terry log strengths (mean zero) by Hunter's MM algorithm, vectorized over leading axes.

    `win_matrix[..., i, j]` holds how often system i beat system j (ties already split half / half).
    A system that never won or never lost has no finite maximum-likelihood strength: NaN.
    """
    wins = np.asarray(win_matrix, dtype=float)
    n_systems = wins.shape[-1]
    games = wins + np.swapaxes(wins, -1, -2)
    total_wins = wins.sum(axis=-1)
    total_losses = wins.sum(axis=-2)
    strength = np.ones(wins.shape[:-1])
    for _ in range(max_iterations):
        pair_sums = strength[..., :, None] + strength[..., None, :]
        ratio = np.divide(games, pair_sums, out=np.zeros_like(games), where=pair_sums > 0)
        denominator = ratio.sum(axis=-1)
        updated = np.divide(total_wins, denominator, out=np.zeros_like(total_wins), where=denominator > 0)
        scale = updated.sum(axis=-1, keepdims=True)
        updated = np.divide(updated * n_systems, scale, out=np.ones_like(updated), where=scale > 0)
        converged = np.nanmax(np.abs(updated - strength)) < tolerance
        strength = updated
        if converged:
            break
    finite = (total_wins > 0) & (total_losses > 0)
    with np.errstate(divide="ignore"):
        log_strength = np.log(strength)
    log_strength = np.where(finite.all(axis=-1, keepdims=True), log_strength, np.nan)
    return log_strength - log_strength.mean(axis=-1, keepdims=True)
