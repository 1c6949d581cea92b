"""Preference exports: validate and create the PreferenceExport row, then write its immutable snapshot.

`export_create` validates the format, criteria, aggregation policy, split and filters (field errors
name the bad field), stores the row and runs the export inline when the study is small, else queues
the `preference_export_run` task after commit. `export_run` is the task's body: it streams the
study's comparisons from PostgreSQL (selectors_exports) into the pure core (annotations/exporting),
writing ARTIFACTS_ROOT/exports/<public_id>/ and then <public_id>.zip beside it, with progress on the
row. A snapshot is never rewritten: a finished export is left alone, and a run that finds its
directory already complete adopts it instead of writing again.

Reproducibility: the same data, policy, split, filters and code give byte-identical files and zip.
The manifest's `created_at` is therefore the time of the newest rating or judgment read (the data's
"as of" time), not the wall clock; when the export was made is on the row and in the audit log.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import subprocess
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotations.exporting import (
    AggregationPolicy,
    CriterionSpec,
    ExportResult,
    ExportSpec,
    PolicyError,
    SplitConfig,
    SplitConfigError,
    StudyInfo,
    verify_export,
    write_export,
    write_zip,
)
from annotations.exporting.export import MANIFEST_NAME
from annotations.exporting.rows import FILE_FORMATS, FORMATS
from annotations.exporting.writers import sha256_of_file
from annotations.models import Comparison, JobStatus, PreferenceExport, Prompt, Rater, Rating, Study, System
from annotations.selectors_exports import ExportQuery, export_reader
from annotations.selectors_reports import REPORTED_PURPOSES, ReportFilters
from annotations.services.audit import audit_record
from annotations.services.rating import gold_accuracy
from annotations.services.rubric_edit import (
    cited_versions,
    study_criterion_ids_ever,
    study_criterion_versions_ever,
)
from annotations.services.studies import study_criteria

logger = logging.getLogger(__name__)

# Bootstrap resamples for the agreement intervals recorded in the manifest (a fixed seed keeps them stable).
AGREEMENT_RESAMPLES = 200
# Namespace of the PostgreSQL advisory lock that makes one run at a time hold an export.
_LOCK_NAMESPACE = zlib.crc32(b"annotations.preference_export") & 0x7FFFFFFF
FILTER_KEYS = ("systems", "submitted_before", "exclude_gold_items")


def inline_max_ratings() -> int:
    return settings.EXPORT_INLINE_MAX_RATINGS


@functools.cache
def code_version() -> str:
    """The code that wrote an export: settings.CODE_VERSION, else the git commit; with pyarrow's version,
    which fixes Parquet's bytes."""
    import pyarrow

    version = settings.CODE_VERSION
    if not version:
        try:
            result = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5
            )
            version = result.stdout.strip()[:12] if result.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            version = ""
    return f"evalplatform {version or 'unknown'}; pyarrow {pyarrow.__version__}"


def export_directory(export: PreferenceExport) -> Path:
    return Path(export.path)


def export_zip_path(export: PreferenceExport) -> Path:
    directory = export_directory(export)
    return directory.with_name(f"{directory.name}.zip")


# ---- validation --------------------------------------------------------------------------------------


def _clean_filters(study: Study, filters: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Normalised filters (the same request always stores the same dict) and the problems found."""
    filters = dict(filters or {})
    problems = [
        f"unknown filter {name!r} (known: {', '.join(FILTER_KEYS)})" for name in sorted(set(filters) - set(FILTER_KEYS))
    ]
    systems = filters.get("systems") or []
    if isinstance(systems, str):
        systems = [s.strip() for s in systems.split(",") if s.strip()]
    if not isinstance(systems, list | tuple) or not all(isinstance(s, str) for s in systems):
        problems.append("systems must be a list of system names")
        systems = []
    known = set(System.objects.filter(study=study, name__in=systems).values_list("name", flat=True))
    problems += [f"no system {name!r} in this study" for name in sorted(set(systems) - known)]
    before = filters.get("submitted_before")
    before_text = None
    if before not in (None, ""):
        moment = parse_datetime(str(before)) if isinstance(before, str) else None
        if moment is None:
            problems.append("submitted_before must be an ISO date and time, e.g. 2025-01-31T00:00:00+00:00")
        else:
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment, datetime.UTC)
            before_text = moment.astimezone(datetime.UTC).isoformat()
    exclude_gold = filters.get("exclude_gold_items", False)
    if not isinstance(exclude_gold, bool):
        problems.append("exclude_gold_items must be true or false")
        exclude_gold = False
    cleaned = {"systems": sorted(set(systems)), "submitted_before": before_text, "exclude_gold_items": exclude_gold}
    return cleaned, problems


def export_validate(
    *,
    study: Study,
    format: str,
    file_format: str,
    criterion_keys: list[str] | None,
    policy: Mapping[str, Any] | None,
    split: Mapping[str, Any] | None,
    filters: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The normalised settings of an export, or ValidationError with one message list per field."""
    errors: dict[str, list[str]] = {}
    if format not in FORMATS:
        errors["format"] = [f"Unknown format {format!r}; expected one of {', '.join(FORMATS)}."]
    if file_format not in FILE_FORMATS:
        errors["file_format"] = [f"Unknown file format {file_format!r}; expected one of {', '.join(FILE_FORMATS)}."]
    available = [c.key for c in study_criteria(study)]
    keys = [k for k in (criterion_keys or []) if k] or available
    unknown = [k for k in keys if k not in available]
    if unknown:
        errors["criterion_keys"] = [f"Not a criterion of this study: {', '.join(unknown)}."]
    elif len(set(keys)) != len(keys):
        errors["criterion_keys"] = ["A criterion is listed twice."]
    try:
        cleaned_policy = AggregationPolicy.from_dict(policy or {}).to_dict()
    except (PolicyError, TypeError) as error:
        errors["policy"] = [str(error)]
        cleaned_policy = {}
    try:
        split_config = SplitConfig.from_dict(split or {})
        cleaned_split = {k: v for k, v in split_config.to_dict().items() if k != "unit"}
    except (SplitConfigError, TypeError, AttributeError) as error:
        errors["split"] = [str(error)]
        cleaned_split = {}
    cleaned_filters, problems = _clean_filters(study, filters)
    if problems:
        errors["filters"] = problems
    if errors:
        raise ValidationError(errors)
    return {
        "format": format,
        "file_format": file_format,
        "criterion_keys": keys,
        "policy": cleaned_policy,
        "split": cleaned_split,
        "filters": cleaned_filters,
    }


# ---- create ------------------------------------------------------------------------------------------


def export_create(
    *,
    study: Study,
    actor: AbstractBaseUser | None,
    format: str,
    file_format: str = "jsonl",
    criterion_keys: list[str] | None = None,
    policy: Mapping[str, Any] | None = None,
    split: Mapping[str, Any] | None = None,
    filters: Mapping[str, Any] | None = None,
    inline: bool | None = None,
) -> PreferenceExport:
    """Validate and record an export, then run it: here when `inline` (None: when the study holds at most
    `inline_max_ratings()` ratings on the chosen criteria), else in the worker after commit.

    Raises ValidationError with field errors (format, file_format, criterion_keys, policy, split, filters).
    """
    values = export_validate(
        study=study,
        format=format,
        file_format=file_format,
        criterion_keys=criterion_keys,
        policy=policy,
        split=split,
        filters=filters,
    )
    export = PreferenceExport(
        study=study, created_by=actor if actor is not None and actor.is_authenticated else None, **values
    )
    export.path = str(Path(settings.ARTIFACTS_ROOT) / "exports" / str(export.public_id))
    if inline is None:
        ratings = Rating.objects.filter(
            assignment__study=study,
            assignment__purpose__in=REPORTED_PURPOSES,
            criterion__key__in=values["criterion_keys"],
        ).count()
        inline = ratings <= inline_max_ratings()
    with transaction.atomic():
        export.save()
        audit_record(
            actor=actor,
            action="export.create",
            study=study,
            obj=export,
            data={"public_id": str(export.public_id), **values, "inline": inline},
        )
        if not inline:
            from annotations.tasks import preference_export_run  # tasks import services

            preference_export_run.delay_on_commit(export.pk)
    if inline:
        export_run(export_id=export.pk)
        export.refresh_from_db()
    return export


# ---- run ---------------------------------------------------------------------------------------------


def export_run(*, export_id: int) -> str:
    """Write one export's snapshot (the task's body; also run inline). Idempotent: a finished or failed
    export is left alone, a second run at the same time backs off, and a run after a crash either adopts
    a complete directory or starts clean (the core removes a half-written one)."""
    export = PreferenceExport.objects.select_related("study").filter(pk=export_id).first()
    if export is None:
        return "missing"
    if export.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        return export.status
    with _RunLock(export.pk) as held:
        if not held:
            return "busy"
        claimed = PreferenceExport.objects.filter(
            pk=export.pk, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
        ).update(status=JobStatus.RUNNING, progress=0, error="")
        if not claimed:
            return "finished elsewhere"
        try:
            manifest = _write_snapshot(export)
            zip_sha256 = _write_zip_once(export)
        except Exception as error:  # stored on the row so the page and the API can say what went wrong
            logger.exception("preference export %s failed", export.pk)
            with transaction.atomic():
                PreferenceExport.objects.filter(pk=export.pk).update(
                    status=JobStatus.FAILED, error=str(error)[:4000], finished_at=timezone.now()
                )
                audit_record(
                    actor=None, action="export.fail", study=export.study, obj=export, data={"error": str(error)[:500]}
                )
            return "failed"
        with transaction.atomic():
            PreferenceExport.objects.filter(pk=export.pk).update(
                status=JobStatus.SUCCEEDED,
                progress=1.0,
                manifest=manifest,
                zip_sha256=zip_sha256,
                finished_at=timezone.now(),
            )
            audit_record(
                actor=None,
                action="export.finish",
                study=export.study,
                obj=export,
                data={
                    "public_id": str(export.public_id),
                    "zip_sha256": zip_sha256,
                    "comparisons": manifest["comparisons"]["total"],
                    "rows": manifest["rows"],
                },
            )
    return "succeeded"


class _RunLock:
    """A PostgreSQL session advisory lock on the export: held by the running process and released by the
    server if that process dies, so a redelivered task after a worker's death may take over. Elsewhere
    (SQLite for `make run`) the conditional status update is the only guard."""

    def __init__(self, export_id: int) -> None:
        self.export_id = export_id
        self.locked = False

    def __enter__(self) -> bool:
        if connection.vendor != "postgresql":
            return True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, self.export_id])
            self.locked = bool(cursor.fetchone()[0])
        return self.locked

    def __exit__(self, *exc_info: object) -> None:
        if self.locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, self.export_id])


def export_spec(
    *,
    export: PreferenceExport,
    agreement: Mapping[str, Any],
    created_at: str | None,
    excluded_response_comparisons: int = 0,
) -> ExportSpec:
    """The pure core's ExportSpec for an export row (criteria with the study's rubric versions)."""
    study = export.study
    by_key = {c.key: c for c in study_criteria(study)}
    versions = study_criterion_versions_ever(study=study, keys=list(export.criterion_keys))
    return ExportSpec(
        format=export.format,
        file_format=export.file_format,
        # A key rated under several rubric versions cites them all ("1,2"); one version stays an integer.
        criteria=tuple(
            CriterionSpec(key, cited_versions(versions.get(key)) or by_key[key].version)
            for key in export.criterion_keys
        ),
        scale_points=study.scale_points,
        policy=AggregationPolicy.from_dict(export.policy),
        split=SplitConfig.from_dict(export.split),
        study=StudyInfo(slug=study.slug, title=study.title),
        code_version=code_version(),
        filters=export.filters,
        agreement=agreement,
        rater_gold_accuracy=rater_gold_accuracy(study=study),
        created_at=created_at,
        excluded_response_comparisons=excluded_response_comparisons,
    )


def export_query(export: PreferenceExport) -> ExportQuery:
    by_key = {c.key: c for c in study_criteria(export.study)}
    filters = export.filters or {}
    before = filters.get("submitted_before")
    return ExportQuery(
        study_id=export.study_id,
        # Every version of each key the study used: ratings given before a rubric edit stay in the export.
        criterion_ids=tuple(
            pk
            for pks in study_criterion_ids_ever(study=export.study, keys=list(export.criterion_keys)).values()
            for pk in pks
        )
        or tuple(by_key[key].pk for key in export.criterion_keys),
        include_judges=bool(export.policy.get("include_judges", False)),
        systems=tuple(filters.get("systems") or ()),
        submitted_before=parse_datetime(before) if before else None,
        exclude_gold_items=bool(filters.get("exclude_gold_items", False)),
        use_adjudications=export.policy.get("decision") == "adjudicated",
    )


def rater_gold_accuracy(*, study: Study) -> dict[str, float | None]:
    """Rater key (kind:label, as the export's votes name raters) -> gold accuracy, None without gold checks."""
    accuracy = gold_accuracy(study=study)
    raters = (
        Rater.objects.filter(assignments__study=study)
        .exclude(kind=Rater.Kind.JUDGE)
        .values_list("kind", "label")
        .distinct()
    )
    return {f"{kind}:{label}": (accuracy[label].accuracy if label in accuracy else None) for kind, label in raters}


def export_agreement(*, study: Study, criterion_keys: list[str], policy: Mapping[str, Any]) -> dict[str, Any]:
    """Per-criterion agreement among clinicians at export time, from the report service (a cached
    ReportSnapshot when the data have not changed): Krippendorff's alpha and percent agreement with
    bootstrap intervals (fixed seed, so a rerun on the same data gives the same figures)."""
    from annotations.services.reports import ReportParams, report_request

    params = ReportParams(
        filters=ReportFilters(criteria=tuple(criterion_keys), min_gold_accuracy=policy.get("min_gold_accuracy")),
        n_resamples=AGREEMENT_RESAMPLES,
        seed=0,
    )
    method = {
        "source": "annotations.services.reports (clinicians and external raters; judges not included)",
        "n_resamples": params.n_resamples,
        "seed": params.seed,
        "confidence": params.confidence,
        "min_gold_accuracy": params.filters.min_gold_accuracy,
    }
    snapshot = report_request(study=study, params=params, inline=True, retry_failed=True)
    if snapshot.status != JobStatus.SUCCEEDED:
        return {"method": method, "error": snapshot.error or snapshot.status, "by_criterion": {}}
    criteria = (snapshot.result or {}).get("report", {}).get("criteria", {})
    by_criterion = {}
    for key in criterion_keys:
        reliability = criteria.get(key, {}).get("reliability")
        if reliability is None:
            by_criterion[key] = None
            continue
        by_criterion[key] = {
            "n_items": reliability["n_items"],
            "n_raters": reliability["n_raters"],
            "n_ratings": reliability["n_ratings"],
            "alpha_nominal": reliability["alpha"].get("nominal"),
            "alpha_ordinal": reliability["alpha"].get("ordinal"),
            "percent_agreement": reliability["percent_agreement"],
        }
    return {"method": method, "by_criterion": by_criterion}


def export_write_files(
    *,
    export: PreferenceExport,
    output_dir: Path,
    agreement: Mapping[str, Any],
    on_progress: Callable[[float], None] | None = None,
    chunk_rows: int | None = None,
) -> ExportResult:
    """Stream the export's records from the database into the pure core, writing output_dir.

    on_progress gets the share of comparisons written, from 0 to 1 (about 100 calls per export)."""
    query = export_query(export)
    with export_reader(query) as reader:
        total = reader.comparisons_count()
        as_of = reader.data_as_of()
        spec = export_spec(
            export=export,
            agreement=agreement,
            created_at=as_of.astimezone(datetime.UTC).isoformat() if as_of else None,
            excluded_response_comparisons=reader.excluded_response_comparisons_count(),
        )
        strata = reader.prompt_strata(spec.split.stratify_by) if spec.split.stratify_by else None
        records = reader.records(**({"chunk_rows": chunk_rows} if chunk_rows else {}))
        return write_export(
            records,
            spec,
            output_dir,
            prompt_strata=strata,
            on_progress=(lambda done: on_progress(done / total)) if on_progress and total else None,
            progress_every=max(100, total // 100),
        )


def _write_snapshot(export: PreferenceExport) -> dict[str, Any]:
    directory = export_directory(export)
    if directory.exists():
        # A crash after the core renamed the finished directory into place: keep it if it is intact.
        problems = verify_export(directory)
        if problems:
            raise RuntimeError(f"{directory} exists and does not match its manifest: {problems[:3]}")
        return json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    directory.parent.mkdir(parents=True, exist_ok=True)
    agreement = export_agreement(study=export.study, criterion_keys=export.criterion_keys, policy=export.policy)
    with _ProgressWriter(export.pk) as progress:
        result = export_write_files(export=export, output_dir=directory, agreement=agreement, on_progress=progress)
    return result.manifest


def _write_zip_once(export: PreferenceExport) -> str:
    """Zip the snapshot beside it; an existing zip (from a crashed run) is kept, never rewritten."""
    zip_path = export_zip_path(export)
    if zip_path.exists():
        return sha256_of_file(zip_path)
    partial = zip_path.with_name(f".{zip_path.name}.partial")
    try:
        write_zip(export_directory(export), partial)
        os.replace(partial, zip_path)
    finally:
        partial.unlink(missing_ok=True)
    return sha256_of_file(zip_path)


class _ProgressWriter:
    """Writes the progress share to the row through a second connection: the export's reads run in one
    transaction on the main connection, where an update would stay invisible until the end."""

    def __init__(self, export_id: int) -> None:
        self.export_id = export_id
        self.side = None

    def __enter__(self) -> _ProgressWriter:
        if connection.vendor == "postgresql":
            self.side = connections.create_connection("default")
        return self

    def __call__(self, share: float) -> None:
        if self.side is None:
            return
        with self.side.cursor() as cursor:
            cursor.execute(
                f"UPDATE {PreferenceExport._meta.db_table} SET progress = %s WHERE id = %s AND status = %s",  # noqa: S608
                [round(min(share, 0.99), 4), self.export_id, JobStatus.RUNNING],
            )

    def __exit__(self, *exc_info: object) -> None:
        if self.side is not None:
            self.side.close()


# ---- reads for pages and the API ---------------------------------------------------------------------


def exports_for_study(*, study: Study):
    return PreferenceExport.objects.filter(study=study).select_related("created_by").order_by("-created_at")


def export_for_study(*, study: Study, public_id: Any) -> PreferenceExport | None:
    return PreferenceExport.objects.filter(study=study, public_id=public_id).select_related("study").first()


def export_summary(export: PreferenceExport) -> dict[str, Any]:
    """The one JSON shape of an export for the API (and the page's data)."""
    manifest = export.manifest or {}
    return {
        "id": str(export.public_id),
        "status": export.status,
        "progress": export.progress,
        "format": export.format,
        "file_format": export.file_format,
        "criteria": export.criterion_keys,
        "policy": export.policy,
        "split": export.split,
        "filters": export.filters,
        "error": export.error,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "zip_sha256": export.zip_sha256 or None,
        "manifest": manifest or None,
    }


def export_prompt_ids(*, export: PreferenceExport, split: str, include_unrated: bool = False) -> set[int]:
    """Prompts that an export puts in `split`: those named (by comparison id) in the split's files under
    data/ and ties/. With `include_unrated`, for a plain hashed split also every other prompt of the study
    whose seeded hash falls in `split` (a prompt with no decisive votes is in no file, but the split still
    owns it). A prompt never lies in two splits of one export."""
    root = Path(export.path)
    manifest = export.manifest or json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    comparison_ids: set[int] = set()
    for folder in ("data", "ties"):
        for path in sorted((root / folder).rglob(f"{split}.*")) if (root / folder).is_dir() else []:
            comparison_ids |= {int(value) for value in _file_comparison_ids(path) if str(value).isdigit()}
    prompt_ids = set(
        Comparison.objects.filter(study_id=export.study_id, pk__in=comparison_ids).values_list("prompt_id", flat=True)
    )
    split_config = manifest.get("split") or {}
    if include_unrated and split_config and not split_config.get("stratify_by"):
        from annotations.exporting.splits import PromptSplitter, SplitConfig

        splitter = PromptSplitter(SplitConfig.from_dict(split_config))
        for pk, external_id in Prompt.objects.filter(study_id=export.study_id).values_list("pk", "external_id"):
            if splitter.split_of(external_id) == split:
                prompt_ids.add(pk)
    return prompt_ids


def _file_comparison_ids(path: Path) -> list[Any]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=["comparison_id"]).column("comparison_id").to_pylist()
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line).get("comparison_id") for line in lines if line.strip()]
