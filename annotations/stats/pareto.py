"""Pareto fronts and weight grids for weight sweeps: plain numbers in, plain numbers out (no Django).

A weight sweep trains one model per weight vector over the study's criteria; each model is then scored per
criterion on held-out clinician pairs. The front is the set of models no other model beats on every chosen
criterion at once: the trade-offs worth choosing between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# A grid finer than this many vectors would launch more training jobs than anyone means to by one click.
MAX_GRID_VECTORS = 64


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when `a` is at least as good as `b` on every objective and better on one (maximisation)."""
    if len(a) != len(b):
        raise ValueError("points must have the same number of objectives")
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def pareto_front(points: Sequence[Sequence[float | None]]) -> list[bool]:
    """For each point, whether it lies on the Pareto front of `points` (maximising every objective).

    A point with a missing (None) or non-finite objective cannot be compared, so it is never on the front
    and dominates nothing. Equal points do not dominate each other: tied models are all on the front (or all
    off it), so the front never depends on the order the models were listed in.
    """
    usable = [all(value is not None and math.isfinite(value) for value in point) and len(point) > 0 for point in points]
    flags = []
    for index, point in enumerate(points):
        if not usable[index]:
            flags.append(False)
            continue
        flags.append(
            not any(
                usable[other] and dominates(points[other], point)  # type: ignore[arg-type]
                for other in range(len(points))
                if other != index
            )
        )
    return flags


def simplex_grid(criteria: Sequence[str], step: float) -> list[dict[str, float]]:
    """Every weight vector over `criteria` whose weights are multiples of `step` and sum to 1.

    Ordered from the first criterion's corner to the last's (e.g. empathy, safety, step 0.25:
    (1, 0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0, 1)). `step` must divide 1 (0.5, 0.25, 0.2, 0.1 ...).
    Raises ValueError with a message fit for a form."""
    names = list(criteria)
    if len(names) < 2:
        raise ValueError("choose at least two criteria to sweep over")
    if len(set(names)) != len(names):
        raise ValueError("each criterion may appear once")
    if not (isinstance(step, int | float) and math.isfinite(step) and 0 < step <= 1):
        raise ValueError("the step must be a number in (0, 1], e.g. 0.25")
    parts = round(1 / step)
    if parts < 1 or abs(parts * step - 1) > 1e-6:
        raise ValueError("the step must divide 1 exactly, e.g. 0.5, 0.25, 0.2 or 0.1")
    count = math.comb(parts + len(names) - 1, len(names) - 1)
    if count > MAX_GRID_VECTORS:
        raise ValueError(
            f"that grid has {count} weight vectors (at most {MAX_GRID_VECTORS}); use a larger step or fewer criteria"
        )
    vectors = []
    for counts in _compositions(parts, len(names)):
        vectors.append({name: round(c / parts, 10) for name, c in zip(names, counts, strict=True)})
    return vectors


def _compositions(total: int, slots: int) -> list[tuple[int, ...]]:
    """All ways to write `total` as `slots` non-negative integers, first slot largest first."""
    if slots == 1:
        return [(total,)]
    out = []
    for first in range(total, -1, -1):
        out.extend((first, *rest) for rest in _compositions(total - first, slots - 1))
    return out
