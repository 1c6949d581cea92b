"""Cluster bootstrap over prompts by reweighting per-prompt sums.

A resample draws prompts with replacement; a prompt drawn k times contributes k times its sums. Every
statistic in this package is a function of sums over items, so each statistic's per-prompt sums are
computed once and every resample is a weighted sum: one matrix product for all resamples. Row 0 of the
weights is all ones (the original data), so the point estimate and the resamples share one code path.
"""

from __future__ import annotations

import numpy as np

# Per-prompt sums held densely up to this many entries (8 bytes each): 128 MiB.
DENSE_ENTRIES_LIMIT = 16_000_000


class PromptBootstrap:
    """Resampling weights (1 + n_resamples, n_prompts); row 0 is the full data."""

    def __init__(self, n_prompts: int, n_resamples: int, seed: int) -> None:
        if n_resamples < 0:
            raise ValueError("n_resamples must be >= 0")
        self.n_prompts = n_prompts
        self.n_resamples = n_resamples
        rng = np.random.default_rng(seed)
        weights = np.zeros((n_resamples + 1, n_prompts))
        weights[0] = 1.0
        if n_prompts and n_resamples:
            draws = rng.integers(0, n_prompts, size=(n_resamples, n_prompts))
            offsets = (np.arange(n_resamples)[:, None] * n_prompts + draws).ravel()
            counts = np.bincount(offsets, minlength=n_resamples * n_prompts)
            weights[1:] = counts.reshape(n_resamples, n_prompts)
        self.weights = weights
        # Transposed copy: the sparse-times-dense product below reads it row by row.
        self._weights_by_prompt = np.ascontiguousarray(weights.T)

    def sums(self, prompt: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Weighted sums of per-row features, shape (1 + n_resamples, K); `prompt` indexes 0..n_prompts-1."""
        features = np.asarray(features, dtype=float)
        if features.ndim == 1:
            features = features[:, None]
        per_prompt = np.empty((self.n_prompts, features.shape[1]))
        for column in range(features.shape[1]):
            per_prompt[:, column] = np.bincount(prompt, weights=features[:, column], minlength=self.n_prompts)
        return self.weights @ per_prompt

    def keyed_sums(self, prompt: np.ndarray, key: np.ndarray, features: np.ndarray, n_keys: int) -> np.ndarray:
        """Weighted sums of per-row features grouped by key, shape (1 + n_resamples, n_keys, F).

        Rows are summed per (prompt, key) and multiplied by the weights in one dense product while the
        per-prompt matrix stays under DENSE_ENTRIES_LIMIT; beyond it (many raters, hence many rater
        pairs), each key's sums are one product with the weights of only the prompts it touches. (A
        scipy sparse-times-dense product does the same arithmetic several times slower.)
        """
        features = np.asarray(features, dtype=float)
        n_features = features.shape[1]
        prompt = np.asarray(prompt, dtype=np.int64)
        key = np.asarray(key, dtype=np.int64)
        if self.n_prompts * n_keys * n_features <= DENSE_ENTRIES_LIMIT:
            # Small enough to hold per prompt: one BLAS product is the fastest way.
            flat = (prompt * n_keys + key)[:, None] * n_features + np.arange(n_features)[None, :]
            per_prompt = np.bincount(
                flat.ravel(), weights=features.ravel(), minlength=self.n_prompts * n_keys * n_features
            ).reshape(self.n_prompts, n_keys * n_features)
            return (self.weights @ per_prompt).reshape(self.n_resamples + 1, n_keys, n_features)
        groups, group_of_row = np.unique(
            np.asarray(key, dtype=np.int64) * self.n_prompts + np.asarray(prompt, dtype=np.int64),
            return_inverse=True,
        )
        group_key, group_prompt = np.divmod(groups, self.n_prompts)
        group_sums = np.empty((len(groups), n_features))
        for column in range(n_features):
            group_sums[:, column] = np.bincount(group_of_row, weights=features[:, column], minlength=len(groups))
        bounds = np.searchsorted(group_key, np.arange(n_keys + 1))
        result = np.zeros((self.n_resamples + 1, n_keys, n_features))
        for k in range(n_keys):
            start, end = bounds[k], bounds[k + 1]
            if start < end:
                result[:, k, :] = self._weights_by_prompt[group_prompt[start:end]].T @ group_sums[start:end]
        return result


def percentile_interval(resampled: np.ndarray, confidence: float) -> tuple[float, float] | tuple[None, None]:
    """Percentile interval over resamples (axis 0), ignoring resamples where the statistic is undefined."""
    finite = np.asarray(resampled, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)
