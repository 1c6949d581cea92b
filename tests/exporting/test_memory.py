"""Exporting streams: memory does not grow with the number of comparisons."""

import tracemalloc

import pytest

from annotations.exporting import AggregationPolicy, CriterionSpec, ExportSpec, SplitConfig, StudyInfo, write_export
from annotations.exporting.synthetic import generate_comparisons


def peak_bytes(tmp_path, n: int, file_format: str) -> int:
    spec = ExportSpec(
        format="reward",
        file_format=file_format,
        criteria=(CriterionSpec("empathy", "v1"), CriterionSpec("safety", "v1")),
        scale_points=7,
        policy=AggregationPolicy(ties="separate_file"),
        split=SplitConfig(seed=0, test_fraction=0.2),
        study=StudyInfo("s", "S"),
        code_version="test",
    )
    tracemalloc.start()
    try:
        # Small row groups so the Parquet buffers fill up in both runs; JSONL has no buffer.
        write_export(generate_comparisons(n), spec, tmp_path / f"{file_format}-{n}", row_group_rows=50)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_peak_memory_stays_flat_as_the_number_of_comparisons_doubles(tmp_path, file_format):
    peak_bytes(tmp_path, 200, file_format)  # warm up: first-use imports and caches are not the export's
    small = peak_bytes(tmp_path, 1500, file_format)
    large = peak_bytes(tmp_path, 3000, file_format)
    assert large < 4_000_000
    # Doubling the comparisons may not grow the peak by more than noise.
    assert large < small * 1.2 + 100_000, (small, large)
