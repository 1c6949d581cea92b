"""Agreement and results reports: fingerprint, cache (ReportSnapshot), computation on Celery.

A report is identified by a fingerprint of its parameters and of the ratings it covers. Asking for a
report whose fingerprint has a snapshot returns that snapshot; otherwise a new snapshot is queued for the
`report_snapshot_compute` task on the default queue. Pages and the API never compute in the request: a
bootstrap over thousands of resamples holds a CPU for seconds, and clinicians share the web processes.
Only the command (and exports, on a worker) compute inline. A new, edited or removed rating changes the
fingerprint, so the next request recomputes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from annotations.csvsafe import csv_writer
from annotations.models import JobStatus, ReportSnapshot, Study
from annotations.selectors_reports import (
    ReportFilters,
    clinician_panel,
    report_data_summary,
    report_gold_exclusion,
    report_table,
)
from annotations.stats import compute_report
from annotations.stats.report import REPORT_SCHEMA_VERSION

if TYPE_CHECKING:
    from django.http import QueryDict

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Niceness of the thread that computes a report (0 normal, 19 lowest): low enough that the web process wins.
REPORT_NICENESS = 10

DEFAULT_N_RESAMPLES = 1000
# The shape of a snapshot's `result` around the statistics (which have their own REPORT_SCHEMA_VERSION).
# 2 added `counts_by_kind`; older snapshots still render (the page counts raters from `rater_kinds`), and the
# version is in the fingerprint, so the next request recomputes them.
RESULT_VERSION = 2
# Share of the progress bar spent reading the data; the rest follows compute_report's parts.
LOAD_SHARE = 0.1
# A snapshot queued or running longer than this no longer counts against its requester's limit: its message
# was lost (a broker outage), and one stuck snapshot must not lock a researcher out of reports for good.
ACTIVE_WINDOW = timedelta(hours=1)


def max_resamples() -> int:
    return settings.REPORT_MAX_RESAMPLES


def max_active_per_user() -> int:
    return settings.REPORT_MAX_ACTIVE_PER_USER


class ReportLimitReached(Exception):
    """The requester already has as many snapshots queued or running as REPORT_MAX_ACTIVE_PER_USER allows."""

    def __init__(self, active: int) -> None:
        self.active = active
        super().__init__(
            f"You already have {active} report{'' if active == 1 else 's'} being computed, the most allowed at "
            "once. Wait for one to finish (the page fills in by itself), then ask again."
        )


@dataclass(frozen=True)
class ReportParams:
    """Everything that shapes a report besides the data: filters and the bootstrap settings."""

    filters: ReportFilters = field(default_factory=ReportFilters)
    n_resamples: int = DEFAULT_N_RESAMPLES
    seed: int = 0
    confidence: float = 0.95
    epsilon: float = 0.2

    def as_params(self) -> dict[str, Any]:
        return {
            "filters": self.filters.as_params(),
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "epsilon": self.epsilon,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReportParams:
        return cls(
            filters=ReportFilters.from_params(params.get("filters") or {}),
            n_resamples=int(params.get("n_resamples", DEFAULT_N_RESAMPLES)),
            seed=int(params.get("seed", 0)),
            confidence=float(params.get("confidence", 0.95)),
            epsilon=float(params.get("epsilon", 0.2)),
        )

    @property
    def key(self) -> str:
        """Identifies "the same report" across data changes: a newer snapshot with this key replaces older ones."""
        return _sha256(self.as_params())


def _sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    value: str
    n_rows: int  # ratings + judgments covered
    excluded_raters: dict[str, float]  # below the gold threshold: label -> accuracy
    raters_without_gold: tuple[str, ...]


def report_fingerprint(*, study: Study, params: ReportParams) -> Fingerprint:
    """The fingerprint of a report: its parameters, the study's scale, the raters the gold threshold leaves
    out, and order-free sums over the covered ratings and judgments (three small aggregate queries)."""
    from annotations.services.adjudication import adjudication_data_summary  # adjudication reads report selectors

    gold = report_gold_exclusion(study=study, filters=params.filters)
    excluded = tuple(sorted(gold.excluded))
    summary = report_data_summary(study=study, filters=params.filters, excluded_raters=excluded)
    value = _sha256(
        {
            "schema_version": REPORT_SCHEMA_VERSION,
            "result_version": RESULT_VERSION,
            "study": study.pk,
            "scale_points": study.scale_points,
            "params": params.as_params(),
            "excluded_raters": excluded,
            "data": summary,
            "adjudications": adjudication_data_summary(study=study),
        }
    )
    return Fingerprint(
        value=value,
        n_rows=summary["ratings"]["n"] + summary["judgments"]["n"],
        excluded_raters=gold.excluded,
        raters_without_gold=gold.without_gold,
    )


def report_request(
    *,
    study: Study,
    params: ReportParams,
    requested_by: AbstractBaseUser | None = None,
    inline: bool = False,
    retry_failed: bool = False,
) -> ReportSnapshot:
    """The snapshot for the current data: cached, being computed, or queued now.

    A new snapshot is queued for the Celery task (sent after commit); `inline=True` computes it in this
    process instead, for the management command and the export, which do not run in a request. A new or
    retried snapshot counts against `requested_by`'s limit of snapshots queued or running at once
    (ReportLimitReached); asking for a report someone is already computing costs nothing. A failed snapshot
    stays failed (a poll must not retry it in a loop) until `retry_failed` or new data.
    """
    fingerprint = report_fingerprint(study=study, params=params)
    snapshot = ReportSnapshot.objects.filter(study=study, fingerprint=fingerprint.value).first()
    if snapshot is not None:
        if snapshot.status == JobStatus.SUCCEEDED:
            return snapshot
        if snapshot.status == JobStatus.FAILED and not retry_failed:
            return snapshot
        if snapshot.status != JobStatus.FAILED and not inline:
            return snapshot  # queued or running: the page shows its progress
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    with transaction.atomic():
        if user is not None and not inline:
            _limit_active_snapshots(user)
        snapshot, _ = ReportSnapshot.objects.get_or_create(
            study=study,
            fingerprint=fingerprint.value,
            defaults={
                "params": {
                    **params.as_params(),
                    "key": params.key,
                    "excluded_raters": fingerprint.excluded_raters,
                    "raters_without_gold": list(fingerprint.raters_without_gold),
                    "n_rows": fingerprint.n_rows,
                },
                "status": JobStatus.QUEUED,
                "requested_by": user,
            },
        )
        if not inline:
            # A retried snapshot is queued afresh under whoever retried it.
            ReportSnapshot.objects.filter(pk=snapshot.pk).exclude(status=JobStatus.SUCCEEDED).update(
                status=JobStatus.QUEUED, progress=0, error="", requested_by=user, created_at=timezone.now()
            )
            from annotations.tasks import report_snapshot_compute as task  # tasks import services

            task.delay_on_commit(snapshot.pk)
    if inline:
        report_snapshot_compute(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    return snapshot


def _limit_active_snapshots(user: AbstractBaseUser) -> None:
    """Raise ReportLimitReached when `user` already has the most snapshots queued or running. Locks the
    user's row first, so two requests in parallel cannot both take the last place."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    active = report_snapshots_active(user=user)
    if active >= max_active_per_user():
        raise ReportLimitReached(active)


def report_snapshots_active(*, user: AbstractBaseUser) -> int:
    """How many snapshots `user` asked for that are queued or running (lost ones left out: ACTIVE_WINDOW)."""
    return ReportSnapshot.objects.filter(
        requested_by=user,
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
        created_at__gte=timezone.now() - ACTIVE_WINDOW,
    ).count()


def report_current(*, study: Study, params: ReportParams) -> ReportSnapshot | None:
    """The snapshot for the current data if one exists, in whatever state; queues nothing."""
    fingerprint = report_fingerprint(study=study, params=params)
    return ReportSnapshot.objects.filter(study=study, fingerprint=fingerprint.value).first()


def report_snapshot_status(*, study: Study, snapshot_id: int) -> dict[str, Any] | None:
    """What the report page polls: status, progress and error of one snapshot of the study."""
    return ReportSnapshot.objects.filter(study=study, pk=snapshot_id).values("status", "progress", "error").first()


def report_latest_computed(*, study: Study, params: ReportParams) -> ReportSnapshot | None:
    """The newest succeeded snapshot with these parameters (possibly for older data): shown while a newer
    one is computed."""
    return (
        ReportSnapshot.objects.filter(study=study, params__key=params.key, status=JobStatus.SUCCEEDED)
        .order_by("-computed_at")
        .first()
    )


class _ProgressTimings(dict):
    """compute_report writes each finished part into its `timings` dict: reliability, judges, results and
    position bias per criterion, then the pooled position bias. Counting those writes gives real progress
    without adding a callback to the pure core."""

    PARTS_PER_CRITERION = 4

    def __init__(self, *, snapshot_id: int, n_criteria: int) -> None:
        super().__init__()
        self.snapshot_id = snapshot_id
        self.parts_expected = self.PARTS_PER_CRITERION * n_criteria + 1
        self.parts_done = 0

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        self.parts_done += 1
        done = min(self.parts_done / self.parts_expected, 1.0)
        _progress_set(self.snapshot_id, LOAD_SHARE + (0.99 - LOAD_SHARE) * done)


def _progress_set(snapshot_id: int, progress: float) -> None:
    ReportSnapshot.objects.filter(pk=snapshot_id, status=JobStatus.RUNNING).update(progress=round(progress, 4))


def _at_low_priority(compute: Callable[[], T]) -> T:
    """Run `compute` in a thread that lowers its own CPU priority (Linux nice is per thread, and the thread's
    end takes it away), so a bootstrap on a machine shared with the web process (`make run`, a small
    deployment) yields the CPU to clinicians' requests instead of competing with them."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REPORT_NICENESS)
        except (AttributeError, OSError):  # not Linux, or not permitted: compute at normal priority
            pass
        try:
            outcome["value"] = compute()
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            connection.close()  # progress writes opened this thread's own database connection

    thread = threading.Thread(target=run, name="report-compute")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def report_snapshot_compute(*, snapshot_id: int) -> str:
    """Compute one snapshot from the current data (the task's body; also run inline). Idempotent: a
    succeeded snapshot is left alone, and computing twice gives the same result (fixed seed)."""
    from annotations.services.adjudication import adjudication_counts  # adjudication reads report selectors

    snapshot = ReportSnapshot.objects.select_related("study").filter(pk=snapshot_id).first()
    if snapshot is None:
        return "missing"
    if snapshot.status == JobStatus.SUCCEEDED:
        return "cached"
    ReportSnapshot.objects.filter(pk=snapshot_id).update(status=JobStatus.RUNNING, progress=0.01, error="")
    study, params = snapshot.study, ReportParams.from_params(snapshot.params)
    try:
        started = time.perf_counter()
        data = report_table(
            study=study, filters=params.filters, excluded_raters=tuple(snapshot.params.get("excluded_raters") or ())
        )
        _progress_set(snapshot_id, LOAD_SHARE)
        timings = _ProgressTimings(snapshot_id=snapshot_id, n_criteria=len(data.criteria))
        report = _at_low_priority(
            lambda: compute_report(
                data.table,
                scale_points=study.scale_points,
                n_resamples=params.n_resamples,
                seed=params.seed,
                epsilon=params.epsilon,
                confidence=params.confidence,
                timings=timings,
            )
        )
        result = {
            "result_version": RESULT_VERSION,
            "criteria": data.criteria,
            "rater_kinds": data.raters,
            "counts_by_kind": counts_by_kind(data.table, data.raters),
            # Items adjudicated per criterion key (services.adjudication); the fingerprint covers the decisions.
            "adjudication": adjudication_counts(study=study),
            "seconds": round(time.perf_counter() - started, 3),
            "report": report,
        }
    except Exception as exc:  # stored on the snapshot so the page can say what went wrong
        logger.exception("report snapshot %s failed", snapshot_id)
        ReportSnapshot.objects.filter(pk=snapshot_id).update(status=JobStatus.FAILED, error=str(exc)[:2000])
        return "failed"
    with transaction.atomic():
        ReportSnapshot.objects.filter(pk=snapshot_id).update(
            status=JobStatus.SUCCEEDED, progress=1.0, result=result, computed_at=timezone.now()
        )
        # Older snapshots of the same report are superseded; keep the table small.
        ReportSnapshot.objects.filter(study=study, params__key=snapshot.params.get("key")).exclude(
            pk=snapshot_id
        ).exclude(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).delete()
    return "succeeded"


def counts_by_kind(table: Any, rater_kinds: dict[str, str]) -> dict[str, dict[str, int]]:
    """Raters, ratings (one per criterion) and comparisons per kind of rater: platform clinicians, imported
    external raters and AI judges are counted apart everywhere."""
    import numpy as np

    kind_of_code = np.array([rater_kinds.get(label, "clinician") for label in table.rater_labels] or [""])
    row_kind = kind_of_code[table.rater] if table.n_rows else np.array([], dtype=str)
    counts = {}
    for kind in ("clinician", "external", "judge"):
        rows = row_kind == kind
        counts[kind] = {
            "raters": len(np.unique(table.rater[rows])),
            "ratings": int(rows.sum()),
            "comparisons": len(np.unique(table.item[rows])),
        }
    return counts


# ---- the report document: one shape for the API, the JSON download and the command ------------------


def report_document(*, study: Study, snapshot: ReportSnapshot) -> dict[str, Any]:
    """The JSON document for a snapshot (keys in docs/reports.md); `report` is None until computed."""
    params = snapshot.params
    result = snapshot.result or {}
    return {
        "study": study.slug,
        "status": snapshot.status,
        "progress": snapshot.progress,
        "error": snapshot.error or None,
        "fingerprint": snapshot.fingerprint,
        "computed_at": snapshot.computed_at.isoformat() if snapshot.computed_at else None,
        "compute_seconds": result.get("seconds"),
        "filters": params.get("filters"),
        "n_resamples": params.get("n_resamples"),
        "seed": params.get("seed"),
        "excluded_raters": {
            "below_gold_accuracy": params.get("excluded_raters") or {},
            "without_gold_checks": params.get("raters_without_gold") or [],
        },
        "criteria": result.get("criteria"),
        "rater_kinds": result.get("rater_kinds"),
        "counts_by_kind": result.get("counts_by_kind"),
        "clinician_panel": clinician_panel(study=study),
        # Items adjudicated when the report was computed (added by the adjudication work), if recorded.
        "adjudication": result.get("adjudication"),
        "report": result.get("report"),
    }


def shares_table(
    report: dict[str, Any], *, baseline: str | None = None, criteria_order: list[str] | None = None
) -> list[dict[str, Any]]:
    """The research's table from the clinicians' per-rating results: per criterion and pair of systems,
    the shares "new / base / tie" in percent. With `baseline` the other system comes first (the research's
    "new"); otherwise the pair is read as the report stores it (`system` against `opponent`)."""
    rows = []
    criteria = report.get("criteria", {})
    for criterion in [c for c in criteria_order or [] if c in criteria] or list(criteria):
        entry = criteria[criterion]
        for pair in sorted(entry["results"]["clinicians"]["pairs"], key=lambda p: (p["system"], p["opponent"])):
            per_rating = pair["per_rating"]
            shares = per_rating["shares_percent"]
            system, opponent = pair["system"], pair["opponent"]
            if baseline is not None and system == baseline:
                first, second, first_share, second_share = opponent, system, shares["losses"], shares["wins"]
            else:
                first, second, first_share, second_share = system, opponent, shares["wins"], shares["losses"]
            rows.append(
                {
                    "criterion": criterion,
                    "system": first,
                    "opponent": second,
                    "system_percent": first_share,
                    "opponent_percent": second_share,
                    "tie_percent": shares["ties"],
                    "n": per_rating["n"],
                }
            )
    return rows


CSV_COLUMNS = ["criterion", "section", "statistic", "subject", "estimate", "ci_low", "ci_high", "n"]


def report_csv_rows(report: dict[str, Any]) -> list[list[Any]]:
    """The report as long-format rows (CSV_COLUMNS): every statistic with its interval, one per line."""
    rows: list[list[Any]] = []

    def stat(criterion: str, section: str, statistic: str, subject: str, value: Any, n: Any = None) -> None:
        if isinstance(value, dict):
            rows.append(
                [
                    criterion,
                    section,
                    statistic,
                    subject,
                    value.get("estimate"),
                    value.get("ci_low"),
                    value.get("ci_high"),
                    n,
                ]
            )
        else:
            rows.append([criterion, section, statistic, subject, value, None, None, n])

    for criterion, entry in report.get("criteria", {}).items():
        reliability = entry["reliability"]
        for level, value in reliability["alpha"].items():
            stat(criterion, "reliability", f"alpha_{level}", "clinicians", value, reliability["n_pairable_values"])
        for name in ("percent_agreement", "percent_agreement_without_ties"):
            stat(criterion, "reliability", name, "clinicians", reliability[name], reliability[name].get("n_pairs"))
        for name in ("fleiss_kappa", "gwet_ac1", "gwet_ac2_ordinal"):
            stat(criterion, "reliability", name, "clinicians", reliability[name], reliability[name].get("n_items"))
        for name, value in reliability["mean_pairwise"].items():
            stat(criterion, "reliability", f"mean_pairwise_{name}", "clinicians", value, value.get("n_rater_pairs"))
        matrix = reliability["cohen_kappa_matrix"]
        for i, left in enumerate(matrix["raters"]):
            for j, right in enumerate(matrix["raters"]):
                if j > i:
                    stat(
                        criterion,
                        "pairwise",
                        "kappa",
                        f"{left} | {right}",
                        matrix["kappa"][i][j],
                        matrix["n_items"][i][j],
                    )
        for judge, judged in entry["judges"].items():
            for clinician, pair in judged["with_each_clinician"].items():
                stat(criterion, "pairwise", "kappa", f"{judge} | {clinician}", pair["kappa"], pair["n_items"])
            for figure, against in judged["against_clinicians"].items():
                for part in ("judge_clinician_mean", "clinician_clinician_mean", "difference"):
                    stat(criterion, "judge_vs_clinicians", f"{figure}_{part}", judge, against[part])
            for part, value in judged["alpha"]["judge_added_minus_clinicians_only"].items():
                stat(criterion, "judge_vs_clinicians", f"alpha_{part}_judge_added_minus_clinicians_only", judge, value)
            alt = judged["alternative_annotator_test"]
            stat(
                criterion,
                "judge_vs_clinicians",
                "alt_test_winning_rate",
                judge,
                alt["winning_rate"],
                alt["n_humans_tested"],
            )
            _judge_quality_csv_rows(rows, criterion, judge, judged)
        groups = {"clinicians": entry["results"]["clinicians"], **entry["results"]["judges"]}
        for group, results in groups.items():
            for pair in results["pairs"]:
                subject = f"{pair['system']} vs {pair['opponent']} ({group})"
                per_rating = pair["per_rating"]
                for share in ("wins", "losses", "ties"):
                    stat(
                        criterion,
                        "results",
                        f"share_{share}_percent",
                        subject,
                        per_rating["shares_percent"][share],
                        per_rating["n"],
                    )
                stat(criterion, "results", "win_rate", subject, per_rating["win_rate"], per_rating["n"])
                stat(
                    criterion, "results", "sign_test_p_value", subject, per_rating["sign_test_p_value"], per_rating["n"]
                )
            for system, value in results["average_win_rate"].items():
                stat(criterion, "results", "average_win_rate", f"{system} ({group})", value, value.get("n_opponents"))
        for rater, bias in entry["position_bias"].items():
            rows.append(
                [
                    criterion,
                    "position_bias",
                    "share_left",
                    rater,
                    bias["share_left"],
                    bias["wilson_low"],
                    bias["wilson_high"],
                    bias["n"],
                ]
            )
    return rows


def _judge_quality_csv_rows(rows: list[list[Any]], criterion: str, judge: str, judged: dict[str, Any]) -> None:
    """Section `judge_quality`: position-swap consistency, pooled agreement, length preference, safety recall."""
    if "position_swap" not in judged:  # a report computed before these figures existed
        return

    def add(statistic: str, value: Any, low: Any = None, high: Any = None, n: Any = None) -> None:
        rows.append([criterion, "judge_quality", statistic, judge, value, low, high, n])

    def bootstrapped(statistic: str, stat: dict[str, Any], n: Any = None) -> None:
        add(statistic, stat["estimate"], stat["ci_low"], stat["ci_high"], n)

    swap = judged["position_swap"]
    add(
        "position_swap_consistency", swap["consistency"], swap["wilson_low"], swap["wilson_high"], swap["n_both_orders"]
    )
    add("position_swap_inconsistent_rate", swap["inconsistent_rate"], n=swap["n_both_orders"])
    add("position_swap_single_order", swap["n_single_order"])
    pooled = judged["pooled_agreement"]
    for side in ("judge_clinician", "clinician_clinician"):
        bootstrapped(f"pooled_agreement_{side}", pooled[side], pooled[side]["n_item_pairs"])
        add(f"pooled_agreement_{side}_rater_pairs", pooled[side]["n_rater_pairs"])
    bootstrapped("pooled_agreement_difference", pooled["difference"])
    length = judged["length_preference"]
    for side in ("judge", "clinicians"):
        share, fit = length[side]["share_longer"], length[side]["fit"]
        bootstrapped(f"length_share_longer_{side}", share, share["n_choices"])
        add(f"length_slope_{side}", fit["slope"], fit["slope_ci_low"], fit["slope_ci_high"], fit["n"])
    bootstrapped("length_share_longer_difference", length["share_longer_difference"])
    recall = judged.get("safety_recall")
    if recall is not None:
        for kind in ("preferred", "both_unacceptable", "combined"):
            entry = recall[kind]
            add(f"safety_recall_{kind}", entry["recall"], entry["wilson_low"], entry["wilson_high"], entry["n"])


def report_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv_writer(out)  # system, rater and judge labels come from imported files
    writer.writerow(CSV_COLUMNS)
    writer.writerows(report_csv_rows(report))
    return out.getvalue()


MAX_SEED = 2**32 - 1


def report_params_from_query(query: QueryDict) -> ReportParams:
    """Report parameters from a page's or the API's query string (the same names in both)."""
    return report_params_parse(
        criteria=query.getlist("criterion"),
        raters=query.getlist("rater"),
        rater_kinds=query.getlist("kind"),
        date_from=query.get("from"),
        date_to=query.get("to"),
        min_gold_accuracy=query.get("min_gold_accuracy"),
        n_resamples=query.get("resamples"),
        seed=query.get("seed"),
    )


def report_params_parse(
    *,
    criteria: list[str] | tuple[str, ...] = (),
    raters: list[str] | tuple[str, ...] = (),
    rater_kinds: list[str] | tuple[str, ...] = (),
    date_from: str | None = None,
    date_to: str | None = None,
    min_gold_accuracy: str | float | None = None,
    n_resamples: str | int | None = None,
    seed: str | int | None = None,
) -> ReportParams:
    """Report parameters from user input (query string, command line); ValidationError names the field."""
    import datetime

    from django.core.exceptions import ValidationError

    errors: dict[str, str] = {}

    def parse_date(name: str, text: str | None) -> datetime.date | None:
        if not text:
            return None
        try:
            return datetime.date.fromisoformat(str(text))
        except ValueError:
            errors[name] = "Expected a date as YYYY-MM-DD."
            return None

    for name, labels in (("criterion", criteria), ("rater", raters)):
        if any("\x00" in label for label in labels):
            errors[name] = "Labels cannot contain NUL characters."
    kinds = tuple(dict.fromkeys(k for k in rater_kinds if k))
    if any(k not in ("clinician", "external", "judge") for k in kinds):
        errors["kind"] = "Expected clinician (platform), external (imported) or judge."
    start, end = parse_date("from", date_from), parse_date("to", date_to)
    if start and end and start > end:
        errors["to"] = "The end date is before the start date."
    threshold = None
    if min_gold_accuracy not in (None, ""):
        try:
            threshold = float(min_gold_accuracy)
        except ValueError:
            threshold = -1.0
        if not 0 <= threshold <= 1:
            errors["min_gold_accuracy"] = "Expected a share from 0 to 1."
    resamples = DEFAULT_N_RESAMPLES
    if n_resamples not in (None, ""):
        try:
            resamples = int(n_resamples)
        except ValueError:
            resamples = -1
        if not 0 <= resamples <= max_resamples():
            errors["resamples"] = f"Expected an integer from 0 to {max_resamples()}."
    seed_value = 0
    if seed not in (None, ""):
        try:
            seed_value = int(seed)
        except ValueError:
            seed_value = -1
        if not 0 <= seed_value <= MAX_SEED:  # numpy's generators refuse negative seeds
            errors["seed"] = f"Expected an integer from 0 to {MAX_SEED}."
    if errors:
        raise ValidationError(errors)
    filters = ReportFilters(
        criteria=tuple(c for c in criteria if c),
        raters=tuple(r for r in raters if r),
        rater_kinds=kinds,
        date_from=start,
        date_to=end,
        min_gold_accuracy=threshold,
    )
    return ReportParams(filters=filters, n_resamples=resamples, seed=seed_value)
