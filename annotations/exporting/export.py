"""Stream comparison records into an export directory: data files, dataset card, manifest.

Memory stays flat in the number of comparisons: each record is aggregated, formatted and written
before the next is read; what is kept is counters, one open writer per output file (Parquet
writers buffer one row group), and sets of rater labels and system names.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotations.exporting.aggregate import (
    EXCLUDED_BELOW_GOLD,
    EXCLUDED_JUDGE,
    EXCLUDED_WITHOUT_GOLD,
    STATUSES,
    aggregate_comparison,
    max_strength_for_scale,
    rater_exclusion,
)
from annotations.exporting.card import render_dataset_card
from annotations.exporting.policy import AggregationPolicy
from annotations.exporting.records import ComparisonRecord, ExportInputError, validate_record
from annotations.exporting.rows import (
    FILE_FORMATS,
    FORMATS,
    multi_objective_row,
    multi_objective_schema,
    pair_row,
    pair_schema,
    prompt_messages,
    tie_row,
    tie_schema,
)
from annotations.exporting.splits import PromptSplitter, SplitConfig
from annotations.exporting.writers import (
    DEFAULT_ROW_GROUP_ROWS,
    JsonlRowWriter,
    ParquetRowWriter,
    RowWriter,
    sha256_of_file,
    write_json_file,
)

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
CARD_NAME = "README.md"
# Criterion keys become directory names.
_CRITERION_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class CriterionSpec:
    key: str
    rubric_version: str | int


@dataclass(frozen=True)
class StudyInfo:
    slug: str
    title: str


@dataclass(frozen=True)
class ExportSpec:
    """Everything about an export except the records themselves. All of it lands in the manifest.

    rater_gold_accuracy: rater label -> gold accuracy in [0, 1], or None when unknown.
    agreement, filters: passed through to the manifest as given (must be JSON-serialisable).
    created_at: the caller's timestamp string (kept out of the data so reruns are identical).
    """

    format: str
    file_format: str
    criteria: tuple[CriterionSpec, ...]
    scale_points: int
    policy: AggregationPolicy
    split: SplitConfig
    study: StudyInfo
    code_version: str
    filters: Mapping[str, Any] = field(default_factory=dict)
    agreement: Mapping[str, Any] = field(default_factory=dict)
    rater_gold_accuracy: Mapping[str, float | None] = field(default_factory=dict)
    created_at: str | None = None
    # Comparisons the caller left out because a response in them was excluded from exports (safety queue).
    excluded_response_comparisons: int = 0

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ExportInputError(f"format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if self.file_format not in FILE_FORMATS:
            raise ExportInputError(f"file_format must be one of {', '.join(FILE_FORMATS)}; got {self.file_format!r}")
        max_strength_for_scale(self.scale_points)
        # A list would make the spec compare and hash differently from the same spec with a tuple.
        object.__setattr__(self, "criteria", tuple(self.criteria))
        if not self.criteria:
            raise ExportInputError("criteria must not be empty")
        for i, criterion in enumerate(self.criteria):
            if not isinstance(criterion, CriterionSpec):
                raise ExportInputError(f"criteria[{i}] must be a CriterionSpec; got {type(criterion).__name__}")
            if isinstance(criterion.rubric_version, bool) or not isinstance(criterion.rubric_version, str | int):
                raise ExportInputError(f"criteria[{i}].rubric_version must be a string or an integer")
        if not isinstance(self.study, StudyInfo):
            raise ExportInputError("study must be a StudyInfo")
        keys = [c.key for c in self.criteria]
        for key in keys:
            if not isinstance(key, str) or not _CRITERION_KEY.match(key):
                raise ExportInputError(
                    f"criteria: key {key!r} must match {_CRITERION_KEY.pattern} (it names a directory)"
                )
        if len(set(keys)) != len(keys):
            raise ExportInputError(f"criteria: duplicate keys in {keys}")
        if not isinstance(self.policy, AggregationPolicy):
            raise ExportInputError("policy must be an AggregationPolicy")
        if not isinstance(self.split, SplitConfig):
            raise ExportInputError("split must be a SplitConfig")
        for name in ("filters", "agreement"):
            try:
                json.dumps(getattr(self, name), sort_keys=True)
            except (TypeError, ValueError) as error:
                raise ExportInputError(f"{name} must be JSON-serialisable with string keys: {error}") from error
        count = self.excluded_response_comparisons
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ExportInputError(f"excluded_response_comparisons must be an integer >= 0; got {count!r}")
        for label, accuracy in self.rater_gold_accuracy.items():
            if accuracy is not None and not (isinstance(accuracy, int | float) and 0.0 <= accuracy <= 1.0):
                raise ExportInputError(
                    f"rater_gold_accuracy[{label!r}] must be null or a number in [0, 1]; got {accuracy!r}"
                )

    @property
    def criterion_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.criteria)

    @property
    def writes_tie_files(self) -> bool:
        return self.format != "multi-objective" and self.policy.ties == "separate_file"


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    manifest: dict[str, Any]


def data_path(spec: ExportSpec, split: str, criterion: str | None = None) -> str:
    """Relative path of a data file: data/<criterion>/<split>.<ext>, or data/<split>.<ext> for multi-objective."""
    if spec.format == "multi-objective":
        return f"data/{split}.{spec.file_format}"
    return f"data/{criterion}/{split}.{spec.file_format}"


def ties_path(spec: ExportSpec, split: str, criterion: str) -> str:
    return f"ties/{criterion}/{split}.{spec.file_format}"


def write_export(
    records: Iterable[ComparisonRecord],
    spec: ExportSpec,
    output_dir: str | os.PathLike[str],
    *,
    prompt_strata: Mapping[str, str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
) -> ExportResult:
    """Write the export to output_dir (which must not exist) and return its manifest.

    records: streamed in a stable order (the caller's comparison key); the order fixes the bytes.
    prompt_strata: prompt id -> stratum, required when spec.split.stratify_by is set.
    on_progress: called with the number of comparisons read so far; raise from it to cancel.
    Files are written to a hidden sibling directory and renamed into place at the end, so a
    failure or cancel never leaves a half-written export at output_dir.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"export directory already exists: {output_dir}")
    if spec.split.stratify_by is not None:
        if prompt_strata is None:
            raise ExportInputError(
                f"split.stratify_by is {spec.split.stratify_by!r}: pass prompt_strata (prompt id -> stratum)"
            )
        splitter = PromptSplitter.stratified(spec.split, prompt_strata)
    else:
        splitter = PromptSplitter(spec.split)

    partial_dir = output_dir.parent / f".{output_dir.name}.partial"
    if partial_dir.exists():
        shutil.rmtree(partial_dir)  # left over from a crashed attempt at the same export
    partial_dir.mkdir(parents=True)
    try:
        manifest = _write_into(
            partial_dir,
            records,
            spec,
            splitter,
            on_progress=on_progress,
            progress_every=progress_every,
            row_group_rows=row_group_rows,
        )
        os.rename(partial_dir, output_dir)
    except BaseException:
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise
    return ExportResult(directory=output_dir, manifest=manifest)


class _Outputs:
    """One lazily-opened writer per output file; every expected file is created, even when empty."""

    def __init__(self, root: Path, spec: ExportSpec, row_group_rows: int) -> None:
        self._root = root
        self._spec = spec
        self._row_group_rows = row_group_rows
        self._writers: dict[str, RowWriter] = {}
        splits = spec.split.split_names
        if spec.format == "multi-objective":
            schema = multi_objective_schema(spec.criterion_keys)
            self._schemas = {data_path(spec, s): schema for s in splits}
        else:
            schema = pair_schema(with_margin=spec.format == "reward")
            self._schemas = {data_path(spec, s, c): schema for c in spec.criterion_keys for s in splits}
            if spec.writes_tie_files:
                self._schemas.update({ties_path(spec, s, c): tie_schema() for c in spec.criterion_keys for s in splits})

    def write(self, relative_path: str, row: dict[str, Any]) -> None:
        writer = self._writers.get(relative_path)
        if writer is None:
            writer = self._open(relative_path)
        writer.write(row)

    def _open(self, relative_path: str) -> RowWriter:
        path = self._root / relative_path
        writer: RowWriter
        if self._spec.file_format == "parquet":
            writer = ParquetRowWriter(path, self._schemas[relative_path], row_group_rows=self._row_group_rows)
        else:
            writer = JsonlRowWriter(path)
        self._writers[relative_path] = writer
        return writer

    def abort(self) -> None:
        """Close every open file after a failure; the caller deletes the directory."""
        for writer in self._writers.values():
            # The original error is the one worth raising, not a second one from closing.
            with contextlib.suppress(Exception):
                writer.close()

    def close(self) -> tuple[dict[str, str], dict[str, int]]:
        for relative_path in self._schemas:
            if relative_path not in self._writers:
                self._open(relative_path)
        hashes = {p: self._writers[p].close() for p in sorted(self._writers)}
        rows = {p: self._writers[p].rows for p in sorted(self._writers)}
        return hashes, rows


def _write_into(
    root: Path,
    records: Iterable[ComparisonRecord],
    spec: ExportSpec,
    splitter: PromptSplitter,
    *,
    on_progress: Callable[[int], None] | None,
    progress_every: int,
    row_group_rows: int,
) -> dict[str, Any]:
    criteria = spec.criterion_keys
    splits = spec.split.split_names
    max_strength = max_strength_for_scale(spec.scale_points)
    policy = spec.policy

    rows = {c: dict.fromkeys(splits, 0) for c in criteria}
    tie_rows = {c: dict.fromkeys(splits, 0) for c in criteria}
    outcomes = {c: dict.fromkeys(STATUSES, 0) for c in criteria}
    adjudicated = dict.fromkeys(criteria, 0)
    comparisons_by_split = dict.fromkeys(splits, 0)
    comparisons_both_unacceptable = 0
    systems: dict[str, int] = {}
    counted_raters: set[tuple[bool, str]] = set()
    excluded_raters: dict[str, set[tuple[bool, str]]] = {
        EXCLUDED_BELOW_GOLD: set(),
        EXCLUDED_WITHOUT_GOLD: set(),
        EXCLUDED_JUDGE: set(),
    }
    criteria_set = set(criteria)

    outputs = _Outputs(root, spec, row_group_rows)
    done = 0
    try:
        for record in records:
            validate_record(record, max_strength=max_strength)
            split = splitter.split_of(record.prompt_id)
            comparisons_by_split[split] += 1
            for system in {record.first.system, record.second.system}:
                systems[system] = systems.get(system, 0) + 1
            for vote in record.votes:
                if vote.criterion not in criteria_set:
                    continue
                reason = rater_exclusion(
                    vote.rater, is_judge=vote.is_judge, policy=policy, rater_gold_accuracy=spec.rater_gold_accuracy
                )
                (excluded_raters[reason] if reason else counted_raters).add((vote.is_judge, vote.rater))

            per_criterion = aggregate_comparison(
                record,
                criteria=criteria,
                policy=policy,
                scale_points=spec.scale_points,
                rater_gold_accuracy=spec.rater_gold_accuracy,
            )
            if any(o.status == "both_unacceptable" for o in per_criterion.values()):
                comparisons_both_unacceptable += 1
            prompt = prompt_messages(record)
            for key, outcome in per_criterion.items():
                outcomes[key][outcome.status] += 1
                if outcome.adjudicated:
                    adjudicated[key] += 1

            if spec.format == "multi-objective":
                if any(o.preferred is not None for o in per_criterion.values()):
                    outputs.write(data_path(spec, split), multi_objective_row(record, per_criterion, prompt=prompt))
                    for key, outcome in per_criterion.items():
                        if outcome.preferred in ("a", "b"):
                            rows[key][split] += 1
            else:
                for key, outcome in per_criterion.items():
                    if outcome.preferred in ("a", "b"):
                        row = pair_row(record, outcome, with_margin=spec.format == "reward", prompt=prompt)
                        outputs.write(data_path(spec, split, key), row)
                        rows[key][split] += 1
                    elif outcome.preferred == "tie" and spec.writes_tie_files:
                        outputs.write(ties_path(spec, split, key), tie_row(record, outcome, prompt=prompt))
                        tie_rows[key][split] += 1

            done += 1
            if on_progress is not None and done % progress_every == 0:
                on_progress(done)
        if on_progress is not None and done % progress_every != 0:
            on_progress(done)
    except BaseException:
        outputs.abort()
        raise

    files, file_rows = outputs.close()
    excluded_counts = {reason: len(labels) for reason, labels in sorted(excluded_raters.items())}
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "format": spec.format,
        "file_format": spec.file_format,
        "criteria": list(criteria),
        "rubric_versions": {c.key: c.rubric_version for c in spec.criteria},
        "scale_points": spec.scale_points,
        "splits": list(splits),
        "split": spec.split.to_dict(),
        "study": {"slug": spec.study.slug, "title": spec.study.title},
        "policy": policy.to_dict(),
        "filters": dict(spec.filters),
        "raters": {
            "clinicians": sum(1 for is_judge, _ in counted_raters if not is_judge),
            "judges": sum(1 for is_judge, _ in counted_raters if is_judge),
        },
        "raters_excluded": excluded_counts,
        "agreement": dict(spec.agreement),
        "comparisons": {
            "total": done,
            "both_unacceptable": comparisons_both_unacceptable,
            "excluded_responses": spec.excluded_response_comparisons,
            "by_split": comparisons_by_split,
        },
        "outcomes": outcomes,
        "adjudicated": adjudicated,
        "rows": rows,
        "tie_rows": tie_rows,
        "systems": dict(sorted(systems.items())),
        "file_rows": file_rows,
        **({"parquet_row_group_rows": row_group_rows} if spec.file_format == "parquet" else {}),
        "code_version": spec.code_version,
        "created_at": spec.created_at,
    }
    card = render_dataset_card(manifest)
    (root / CARD_NAME).write_bytes(card.encode("utf-8"))
    manifest["files"] = {**files, CARD_NAME: sha256_of_file(root / CARD_NAME)}
    manifest["files"] = dict(sorted(manifest["files"].items()))
    write_json_file(root / MANIFEST_NAME, manifest)
    return manifest
