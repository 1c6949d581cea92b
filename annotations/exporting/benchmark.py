"""Throughput and memory of write_export on generated comparisons.

    python -m annotations.exporting.benchmark --comparisons 200000 --file-format jsonl parquet

Prints comparisons/s and rows/s per file format, with the time to only generate the records
measured in the same run (so the export's own cost is the difference), and with --tracemalloc
the Python heap peak (slows the run about 2x; Arrow's own buffers are outside it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections import deque
from pathlib import Path

import pyarrow as pa

from annotations.exporting.export import CriterionSpec, ExportSpec, StudyInfo, write_export
from annotations.exporting.policy import AggregationPolicy
from annotations.exporting.splits import SplitConfig
from annotations.exporting.synthetic import generate_comparisons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=200_000)
    parser.add_argument("--format", default="reward", choices=["trl-dpo", "reward", "multi-objective"])
    parser.add_argument("--file-format", nargs="+", default=["jsonl", "parquet"], choices=["jsonl", "parquet"])
    parser.add_argument("--criteria", type=int, default=2)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    criteria = tuple(CriterionSpec(f"criterion_{i}", "v1") for i in range(args.criteria))
    keys = [c.key for c in criteria]

    generate_s = 0.0
    if not args.tracemalloc:
        started = time.perf_counter()
        deque(generate_comparisons(args.comparisons, criteria=keys), maxlen=0)
        generate_s = time.perf_counter() - started
        print(f"generate only: {args.comparisons} comparisons in {generate_s:.2f}s")

    for file_format in args.file_format:
        spec = ExportSpec(
            format=args.format,
            file_format=file_format,
            criteria=criteria,
            scale_points=7,
            policy=AggregationPolicy(ties="separate_file"),
            split=SplitConfig(seed=0, test_fraction=0.1, validation_fraction=0.1),
            study=StudyInfo("bench", "Benchmark"),
            code_version="bench",
        )
        with tempfile.TemporaryDirectory() as scratch:
            if args.tracemalloc:
                # Warm up first: lazy imports on first use (pyarrow pulls in pandas) are not the export's.
                write_export(generate_comparisons(100, criteria=keys), spec, Path(scratch) / "warm-up")
                tracemalloc.start()
            started = time.perf_counter()
            result = write_export(generate_comparisons(args.comparisons, criteria=keys), spec, Path(scratch) / "out")
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
            if args.tracemalloc:
                tracemalloc.stop()
            rows = sum(result.manifest["file_rows"].values())
            size = sum(p.stat().st_size for p in result.directory.rglob("*") if p.is_file())
        if peak is not None:
            line = (
                f"{args.format}/{file_format}: {args.comparisons} comparisons, {rows} rows, {size / 1e6:.1f} MB in "
                f"{elapsed:.2f}s under tracemalloc; Python heap peak {peak / 1e6:.2f} MB"
            )
        else:
            export_s = elapsed - generate_s
            line = (
                f"{args.format}/{file_format}: {args.comparisons} comparisons, {rows} rows, {size / 1e6:.1f} MB in "
                f"{elapsed:.2f}s with generation; export alone {args.comparisons / export_s:,.0f} comparisons/s, "
                f"{rows / export_s:,.0f} rows/s"
            )
        print(line)
    # Arrow's buffers (Parquet row groups) live outside the Python heap; this is their peak for the whole run.
    print(f"Arrow memory pool peak: {pa.default_memory_pool().max_memory() / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
