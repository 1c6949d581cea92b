"""Benchmark of the agreement and results report (annotations.stats.compute_report).

    .venv/bin/python bench/agreement.py            # 6 criteria, 50,000 comparisons x 3 of 20 raters + judge
    .venv/bin/python bench/agreement.py --quick    # seconds: a smoke run the test suite calls

Prints the time of each part and the total (medians over --repeats), peak memory, and the ratio of the
alpha bootstrap (reweighted per-prompt coincidences) against calling krippendorff.alpha once per resample,
measured in the same run on a few resamples and scaled up to the full count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import krippendorff
import numpy as np

from annotations.stats import PromptBootstrap, compute_report, krippendorff_alpha_bootstrap, scale_values
from annotations.stats.synthetic import synthetic_ratings

PARTS = ("reliability", "ai_versus_clinicians", "results", "position_bias")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (seconds)")
    parser.add_argument("--comparisons", type=int, default=50_000)
    parser.add_argument("--prompts", type=int, default=5_000, help="comparisons share prompts")
    parser.add_argument("--criteria", type=int, default=6)
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--raters-per-comparison", type=int, default=3)
    parser.add_argument("--scale-points", type=int, default=5, choices=(3, 5, 7))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="report runs; medians are quoted")
    parser.add_argument("--naive-resamples", type=int, default=10, help="krippendorff.alpha calls to time")
    args = parser.parse_args()
    if args.quick:
        args.comparisons, args.prompts, args.resamples, args.repeats, args.naive_resamples = 2_000, 200, 100, 1, 5

    table = synthetic_ratings(
        n_comparisons=args.comparisons,
        n_prompts=args.prompts,
        n_criteria=args.criteria,
        n_clinicians=args.raters,
        raters_per_comparison=args.raters_per_comparison,
        scale_points=args.scale_points,
        seed=0,
    )
    print(
        f"data: {args.criteria} criteria x {args.comparisons:,} comparisons x {args.raters_per_comparison} of "
        f"{args.raters} raters + 1 judge = {table.n_rows:,} ratings, {args.prompts:,} prompts, "
        f"{args.scale_points}-point scale, {args.resamples} resamples"
    )

    totals, parts = [], {part: [] for part in PARTS}
    for _ in range(args.repeats):
        timings: dict[str, float] = {}
        start = time.perf_counter()
        report = compute_report(table, scale_points=args.scale_points, n_resamples=args.resamples, timings=timings)
        totals.append(time.perf_counter() - start)
        for part in PARTS:
            parts[part].append(timings.get(part, 0.0))
    json.dumps(report, allow_nan=False)  # the report must serialize as strict JSON
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    tracemalloc.start()
    compute_report(table, scale_points=args.scale_points, n_resamples=args.resamples)
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"full report: median {statistics.median(totals):.2f} s over {args.repeats} run(s)")
    for part in PARTS:
        print(f"  {part:<22} median {statistics.median(parts[part]):.2f} s")
    print(f"peak memory: {peak_traced / 2**20:.0f} MiB traced by tracemalloc, {peak_rss_mb:.0f} MiB max RSS")

    compare_alpha_bootstrap(table, args)


def compare_alpha_bootstrap(table, args) -> None:
    """Alpha intervals for one criterion: reweighted coincidences against krippendorff.alpha per resample."""
    values = scale_values(args.scale_points)
    rows = np.flatnonzero((table.criterion == 0) & ~np.asarray(table.rater_is_judge)[table.rater])
    items, item_index = np.unique(table.item[rows], return_inverse=True)
    prompt_labels, prompt_codes = np.unique(table.prompt, return_inverse=True)
    item_prompt = np.zeros(len(items), dtype=int)
    item_prompt[item_index] = prompt_codes[rows]
    value_counts = np.bincount(
        item_index * len(values) + (table.value[rows] - values.min()), minlength=len(items) * len(values)
    ).reshape(len(items), len(values))

    start = time.perf_counter()
    bootstrap = PromptBootstrap(len(prompt_labels), args.resamples, seed=0)
    fast = krippendorff_alpha_bootstrap(value_counts, item_prompt, values, "ordinal", bootstrap)
    fast_seconds = time.perf_counter() - start

    # The naive loop: rebuild each resample's raters x units matrix and call the package.
    reliability = np.full((len(table.rater_labels), len(items)), np.nan)
    reliability[table.rater[rows], item_index] = table.value[rows]
    items_by_prompt = np.argsort(item_prompt, kind="stable")
    starts = np.searchsorted(item_prompt[items_by_prompt], np.arange(len(prompt_labels)))
    ends = np.searchsorted(item_prompt[items_by_prompt], np.arange(len(prompt_labels)), side="right")
    n_naive = min(args.naive_resamples, args.resamples)
    max_difference = 0.0
    start = time.perf_counter()
    for resample in range(1, n_naive + 1):
        drawn = np.repeat(np.arange(len(prompt_labels)), bootstrap.weights[resample].astype(int))
        columns = np.concatenate([items_by_prompt[starts[p] : ends[p]] for p in drawn])
        naive = krippendorff.alpha(
            reliability_data=reliability[:, columns], value_domain=values, level_of_measurement="ordinal"
        )
        max_difference = max(max_difference, abs(naive - fast[resample]))
    naive_seconds = (time.perf_counter() - start) / n_naive * args.resamples
    print(
        f"alpha intervals (criterion 0, ordinal, {args.resamples} resamples): reweighted coincidences "
        f"{fast_seconds:.3f} s; krippendorff.alpha per resample {naive_seconds:.1f} s "
        f"(measured on {n_naive} resamples, scaled up to {args.resamples}); "
        f"ratio {naive_seconds / fast_seconds:.0f}x; max |difference| on measured resamples {max_difference:.1e}"
    )


if __name__ == "__main__":
    main()
