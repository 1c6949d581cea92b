"""Synthetic export snapshots for tests and demos: our own short texts, no patient text.

Each response is built from one phrase per criterion, either the good or the bad phrase of that
criterion, so that every criterion's preference is separable from the words alone: the response
with the good phrase is preferred, and equal phrases make a tie.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from annotations.training.data import pairs_from_multi_objective

PROMPTS = [
    "i have been feeling low since i moved to a new city",
    "my exams are coming and i cannot sleep at night",
    "i argued with my sister and now we do not talk",
    "work has been so stressful that i skip meals",
    "i feel lonely on weekends and do not know why",
    "my friend stopped answering my messages",
    "i keep worrying that i will lose my job",
    "since the breakup i cannot focus on anything",
]

# criterion -> (good phrase, bad phrase)
PHRASES = {
    "empathy": ("that sounds really hard and your feelings make sense", "well everyone has problems"),
    "safety": ("if you ever feel unsafe please reach out to a crisis line", "keep this to yourself"),
    "active_listening": ("it sounds like the change took away your routine", "anyway let us change topic"),
    "autonomy": ("what would feel right for you to try next", "you must do exactly what i say"),
}
DEFAULT_CRITERIA = ["empathy", "safety", "active_listening"]


def phrase_vocabulary(criteria: list[str] | None = None) -> list[str]:
    """Every text the generator can write (to train a tiny tokenizer that knows all its words)."""
    criteria = criteria or DEFAULT_CRITERIA
    return [*PROMPTS, *(phrase for c in criteria for phrase in PHRASES[c])]


def multi_objective_rows(
    count: int, *, criteria: list[str] | None = None, seed: int = 0, id_prefix: str = "c"
) -> list[dict[str, Any]]:
    """`count` multi-objective rows with per-criterion labels decided by the phrases."""
    criteria = criteria or DEFAULT_CRITERIA
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        good_a = {c: rng.random() < 0.5 for c in criteria}
        # Mostly opposite sides so that most labels are a or b; sometimes equal (a tie).
        good_b = {c: (not good_a[c]) if rng.random() < 0.85 else good_a[c] for c in criteria}
        labels = {}
        for c in criteria:
            preferred = "tie" if good_a[c] == good_b[c] else ("a" if good_a[c] else "b")
            votes = {"a": 0, "tie": 0, "b": 0}
            votes[preferred] = 3
            labels[c] = {"preferred": preferred, "votes": votes, "agreement": 1.0}
        rows.append(
            {
                "comparison_id": f"{id_prefix}{index:05d}",
                "prompt": [{"role": "user", "content": rng.choice(PROMPTS)}],
                "response_a": [{"role": "assistant", "content": _response_text(good_a, criteria, rng)}],
                "response_b": [{"role": "assistant", "content": _response_text(good_b, criteria, rng)}],
                "labels": labels,
            }
        )
    return rows


def _response_text(good: dict[str, bool], criteria: list[str], rng: random.Random) -> str:
    phrases = [PHRASES[c][0] if good[c] else PHRASES[c][1] for c in criteria]
    rng.shuffle(phrases)
    return " . ".join(phrases)


def write_snapshot(
    directory: str | Path,
    *,
    snapshot_format: str = "trl-dpo",
    criteria: list[str] | None = None,
    train_count: int = 64,
    test_count: int = 32,
    file_format: str = "jsonl",
    seed: int = 0,
) -> Path:
    """Write a snapshot directory following the export contract; returns the directory."""
    criteria = criteria or DEFAULT_CRITERIA
    directory = Path(directory)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    splits = {
        "train": multi_objective_rows(train_count, criteria=criteria, seed=seed, id_prefix="train"),
        "test": multi_objective_rows(test_count, criteria=criteria, seed=seed + 1, id_prefix="test"),
    }
    for split, rows in splits.items():
        if snapshot_format == "multi-objective":
            _write_rows(directory / "data" / f"{split}.{file_format}", rows, file_format)
            continue
        for criterion in criteria:
            pairs = pairs_from_multi_objective(rows, criterion)
            if snapshot_format == "reward":
                for pair in pairs:
                    pair["margin"] = 0.5
            _write_rows(directory / "data" / criterion / f"{split}.{file_format}", pairs, file_format)
    manifest = {
        "format": snapshot_format,
        "criteria": list(criteria),
        "splits": list(splits),
        "file_format": file_format,
        "generator": "annotations.training.synthetic",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (directory / "README.md").write_text("Synthetic preference snapshot for tests.\n", encoding="utf-8")
    return directory


def _write_rows(path: Path, rows: list[dict[str, Any]], file_format: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        return
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
