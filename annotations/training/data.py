"""Reading an export snapshot (see docs/training.md for the contract) into preference pairs.

Every format gives the same pair shape for one criterion:
{"comparison_id", "prompt": [messages], "chosen": [message], "rejected": [message]} plus "margin"
when the row has one (reward format; a multi-objective label's strength margin). Multi-objective rows become pairs where the criterion's
preferred label is "a" or "b"; ties and unlabelled rows are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from annotations.training.spec import read_manifest


def snapshot_split_path(dataset_dir: Path, manifest: dict[str, Any], criterion: str, split: str) -> Path:
    extension = manifest.get("file_format", "jsonl")
    if manifest["format"] == "multi-objective":
        return dataset_dir / "data" / f"{split}.{extension}"
    return dataset_dir / "data" / criterion / f"{split}.{extension}"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one jsonl or parquet file; a missing file is an empty split."""
    if not path.is_file():
        return []
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
    return rows


def preference_pairs(dataset_dir: str | Path, criterion: str, split: str) -> list[dict[str, Any]]:
    """Chosen/rejected pairs for `criterion` in one split of the snapshot, in file order."""
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    rows = read_rows(snapshot_split_path(dataset_dir, manifest, criterion, split))
    if manifest["format"] != "multi-objective":
        pairs = []
        for row in rows:
            pair = {key: row[key] for key in ("comparison_id", "prompt", "chosen", "rejected")}
            if row.get("margin") is not None:
                pair["margin"] = float(row["margin"])
            pairs.append(pair)
        return pairs
    return pairs_from_multi_objective(rows, criterion)


def pairs_from_multi_objective(rows: list[dict[str, Any]], criterion: str) -> list[dict[str, Any]]:
    """Chosen/rejected pairs from multi-objective rows whose label for `criterion` is a or b (ties skipped)."""
    pairs = []
    for row in rows:
        label = (row.get("labels") or {}).get(criterion) or {}
        preferred = label.get("preferred")
        if preferred not in ("a", "b"):
            continue
        other = "b" if preferred == "a" else "a"
        pair = {
            "comparison_id": row["comparison_id"],
            "prompt": row["prompt"],
            "chosen": row[f"response_{preferred}"],
            "rejected": row[f"response_{other}"],
        }
        if label.get("margin") is not None:
            pair["margin"] = float(label["margin"])
        pairs.append(pair)
    return pairs
