"""Generated ratings with a realistic structure, for benchmarks, demos and tests (no real data anywhere).

Comparisons share prompts; each criterion has a latent quality per system and a per-prompt effect; raters
see a random side order, answer noisily around the latent preference and some lean towards the left.
"""

from __future__ import annotations

import numpy as np

from annotations.stats.table import LEFT_WAS_FIRST, RatingTable, scale_values


def synthetic_ratings(
    *,
    n_comparisons: int,
    n_prompts: int,
    n_criteria: int = 6,
    n_systems: int = 5,
    n_clinicians: int = 20,
    raters_per_comparison: int = 3,
    scale_points: int = 3,
    judge: str | None = "noisy",
    clinician_noise: float = 0.6,
    judge_noise: float = 0.4,
    seed: int = 0,
) -> RatingTable:
    """A RatingTable; `judge` is None (no judge), "noisy" (a rater with `judge_noise`) or "random"."""
    if raters_per_comparison > n_clinicians:
        raise ValueError("raters_per_comparison cannot exceed n_clinicians")
    rng = np.random.default_rng(seed)
    half = scale_points // 2
    values = scale_values(scale_points)

    prompt = np.arange(n_comparisons) % n_prompts
    system_first = rng.integers(0, n_systems, n_comparisons)
    system_second = (system_first + rng.integers(1, n_systems, n_comparisons)) % n_systems
    quality = rng.normal(0.0, 0.6, size=(n_criteria, n_systems))
    prompt_effect = rng.normal(0.0, 0.3, size=(n_criteria, n_prompts))
    # Positive latent preference favours the second response, as positive values do.
    latent = (
        quality[:, system_second]
        - quality[:, system_first]
        + prompt_effect[:, prompt]
        + rng.normal(0.0, 0.3, size=(n_criteria, n_comparisons))
    )
    rater_lean_left = rng.normal(0.0, 0.15, size=n_clinicians + 1)

    chosen = np.argsort(rng.random((n_comparisons, n_clinicians)), axis=1)[:, :raters_per_comparison]
    item = np.repeat(np.arange(n_comparisons), raters_per_comparison)
    rater = chosen.ravel()
    noise = np.full(len(item), clinician_noise)
    if judge is not None:
        item = np.concatenate([item, np.arange(n_comparisons)])
        rater = np.concatenate([rater, np.full(n_comparisons, n_clinicians)])
        noise = np.concatenate([noise, np.full(n_comparisons, judge_noise)])
    left_is_first = rng.integers(0, 2, len(item)).astype(np.int8)
    # Leaning left means favouring whichever response was shown on the left.
    left_sign = np.where(left_is_first == LEFT_WAS_FIRST, -1.0, 1.0)

    columns: dict[str, list[np.ndarray]] = {name: [] for name in ("criterion", "item", "rater", "value", "left")}
    for criterion in range(n_criteria):
        observed = latent[criterion, item] + rng.normal(0.0, 1.0, len(item)) * noise
        observed += rater_lean_left[rater] * left_sign
        value = np.clip(np.rint(observed * half * 1.2), -half, half).astype(np.int64)
        if judge == "random":
            judge_rows = rater == n_clinicians
            value[judge_rows] = rng.choice(values, judge_rows.sum())
        columns["criterion"].append(np.full(len(item), criterion))
        columns["item"].append(item)
        columns["rater"].append(rater)
        columns["value"].append(value)
        columns["left"].append(left_is_first)
    item_all = np.concatenate(columns["item"])
    rater_labels = tuple(f"clinician-{i:02d}" for i in range(n_clinicians))
    if judge is not None:
        rater_labels += ("judge",)
    return RatingTable(
        criterion=np.concatenate(columns["criterion"]),
        item=item_all,
        prompt=prompt[item_all],
        rater=np.concatenate(columns["rater"]),
        value=np.concatenate(columns["value"]),
        left_is_first=np.concatenate(columns["left"]),
        system_first=system_first[item_all],
        system_second=system_second[item_all],
        criterion_labels=tuple(f"criterion-{i}" for i in range(n_criteria)),
        rater_labels=rater_labels,
        rater_is_judge=tuple(label == "judge" for label in rater_labels),
        system_labels=tuple(f"system-{i}" for i in range(n_systems)),
    )
