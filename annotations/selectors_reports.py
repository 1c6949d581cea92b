"""Reads for the agreement and results report: the filtered ratings and judgments of a study as a RatingTable.

Ratings and judgments are read with one `values_list` query each, streamed with `iterator()`, and turned
into integer columns; labels (criteria, raters, systems) come from three small queries, never per row.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from django.db.models import Case, Count, F, IntegerField, Max, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Length

from annotations.models import Assignment, Comparison, Criterion, Judgment, Rater, Rating, Study, System
from annotations.selectors_spans import unsafe_span_exists
from annotations.services.studies import study_criteria
from annotations.stats import LEFT_UNKNOWN, LEFT_WAS_FIRST, LEFT_WAS_SECOND, RatingTable
from annotations.stats.table import CONSISTENCY_CODES, CONSISTENCY_NOT_RECORDED, LENGTH_UNKNOWN

ITERATOR_CHUNK = 5000
# Calibration answers are practice on known items, not data: they never enter a report.
REPORTED_PURPOSES = (Assignment.Purpose.RATING, Assignment.Purpose.GOLD, Assignment.Purpose.IMPORTED)


@dataclass(frozen=True)
class ReportFilters:
    """Which ratings a report covers. Empty tuples and None mean "no restriction"."""

    criteria: tuple[str, ...] = ()  # criterion keys
    raters: tuple[str, ...] = ()  # rater labels (clinicians, external raters and judges alike)
    date_from: datetime.date | None = None  # inclusive, on the day the rating or judgment was stored
    date_to: datetime.date | None = None  # inclusive
    min_gold_accuracy: float | None = None  # clinicians below this share on gold items are left out
    # Kinds of rater to include: "clinician" (platform), "external" (imported), "judge". Empty: all three.
    rater_kinds: tuple[str, ...] = ()

    def as_params(self) -> dict[str, Any]:
        """A canonical JSON-ready form: the same filters always give the same dict."""
        params = {
            "criteria": sorted(set(self.criteria)),
            "raters": sorted(set(self.raters)),
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "min_gold_accuracy": self.min_gold_accuracy,
        }
        if self.rater_kinds:  # only when set, so reports asked for before this filter keep their key
            params["rater_kinds"] = sorted(set(self.rater_kinds))
        return params

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReportFilters:
        return cls(
            criteria=tuple(params.get("criteria") or ()),
            raters=tuple(params.get("raters") or ()),
            date_from=datetime.date.fromisoformat(params["date_from"]) if params.get("date_from") else None,
            date_to=datetime.date.fromisoformat(params["date_to"]) if params.get("date_to") else None,
            min_gold_accuracy=params.get("min_gold_accuracy"),
            rater_kinds=tuple(params.get("rater_kinds") or ()),
        )


@dataclass(frozen=True)
class GoldExclusion:
    """Clinicians left out by the gold-accuracy threshold, with their accuracy."""

    threshold: float | None
    excluded: dict[str, float] = field(default_factory=dict)  # rater label -> gold accuracy
    without_gold: tuple[str, ...] = ()  # raters with no gold checks (kept)


def report_gold_exclusion(*, study: Study, filters: ReportFilters) -> GoldExclusion:
    """Per-rater gold accuracy (services.rating.gold_accuracy) against the filter's threshold.

    Raters with no gold checks are kept and listed: no evidence is not evidence of poor accuracy.
    """
    if filters.min_gold_accuracy is None:
        return GoldExclusion(threshold=None)
    from annotations.services.rating import gold_accuracy  # services import selectors, not the reverse

    accuracy = gold_accuracy(study=study)
    excluded = {
        label: round(result.accuracy, 6)
        for label, result in accuracy.items()
        if result.accuracy is not None and result.accuracy < filters.min_gold_accuracy
    }
    rated = set(
        Assignment.objects.filter(study=study, status=Assignment.Status.SUBMITTED, purpose__in=REPORTED_PURPOSES)
        .values_list("rater__label", flat=True)
        .distinct()
    )
    without_gold = tuple(sorted(rated - {label for label, r in accuracy.items() if r.accuracy is not None}))
    return GoldExclusion(threshold=filters.min_gold_accuracy, excluded=excluded, without_gold=without_gold)


def _left_code(field_name: str) -> Case:
    return Case(
        When(**{field_name: True}, then=Value(LEFT_WAS_FIRST)),
        When(**{field_name: False}, then=Value(LEFT_WAS_SECOND)),
        default=Value(LEFT_UNKNOWN),
        output_field=IntegerField(),
    )


def _consistency_code() -> Case:
    return Case(
        *(When(consistency=name, then=Value(code)) for name, code in CONSISTENCY_CODES.items() if name),
        default=Value(CONSISTENCY_NOT_RECORDED),
        output_field=IntegerField(),
    )


def report_ratings(*, study: Study, filters: ReportFilters, excluded_raters: tuple[str, ...] = ()) -> QuerySet:
    """Submitted clinician and external ratings the report covers (excluded comparisons never count)."""
    ratings = Rating.objects.filter(
        assignment__study=study,
        assignment__status=Assignment.Status.SUBMITTED,
        assignment__purpose__in=REPORTED_PURPOSES,
        assignment__comparison__excluded=False,
    )
    if filters.criteria:
        ratings = ratings.filter(criterion__key__in=filters.criteria)
    if filters.raters:
        ratings = ratings.filter(assignment__rater__label__in=filters.raters)
    if filters.rater_kinds:
        ratings = ratings.filter(assignment__rater__kind__in=filters.rater_kinds)
    if excluded_raters:
        ratings = ratings.exclude(assignment__rater__label__in=excluded_raters)
    if filters.date_from:
        ratings = ratings.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        ratings = ratings.filter(created_at__date__lte=filters.date_to)
    return ratings


def report_judgments(*, study: Study, filters: ReportFilters) -> QuerySet:
    """AI judgments the report covers. The gold threshold applies to clinicians only."""
    judgments = Judgment.objects.filter(comparison__study=study, comparison__excluded=False)
    if filters.criteria:
        judgments = judgments.filter(criterion__key__in=filters.criteria)
    if filters.raters:
        judgments = judgments.filter(judge__rater__label__in=filters.raters)
    if filters.rater_kinds and Rater.Kind.JUDGE not in filters.rater_kinds:
        judgments = judgments.none()
    if filters.date_from:
        judgments = judgments.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        judgments = judgments.filter(created_at__date__lte=filters.date_to)
    return judgments


def report_data_summary(*, study: Study, filters: ReportFilters, excluded_raters: tuple[str, ...] = ()) -> dict:
    """Order-free sums over the covered rows, two queries: any added, removed or edited rating or judgment
    changes them, so they fingerprint the data without reading it (revisions bump `updated_at` and
    `revision`; a value edited in place still moves the id-weighted sum; so do a judgment's order consistency
    and a "both unacceptable" flag)."""
    ratings = report_ratings(study=study, filters=filters, excluded_raters=excluded_raters).aggregate(
        n=Count("id"),
        id_sum=Sum("id"),
        id_max=Max("id"),
        weighted_value_sum=Sum(F("id") * F("value")),
        revision_sum=Sum("revision"),
        updated_max=Max("updated_at"),
        # A rater's safety flag: "both unacceptable", or a passage marked unsafe (docs/spans.md).
        unacceptable_sum=Sum(
            Case(When(Q(assignment__both_unacceptable=True) | unsafe_span_exists(), then=F("id")), default=Value(0))
        ),
    )
    judgments = report_judgments(study=study, filters=filters).aggregate(
        n=Count("id"),
        id_sum=Sum("id"),
        id_max=Max("id"),
        weighted_value_sum=Sum(F("id") * F("value")),
        left_sum=Sum(_left_code("left_is_first")),
        created_max=Max("created_at"),
        consistency_sum=Sum(F("id") * _consistency_code()),
        unacceptable_sum=Sum(Case(When(both_unacceptable=True, then=F("id")), default=Value(0))),
    )
    return {
        "ratings": {key: _plain(value) for key, value in ratings.items()},
        "judgments": {key: _plain(value) for key, value in judgments.items()},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return int(value) if isinstance(value, Decimal) else value  # PostgreSQL sums integers as numeric


@dataclass(frozen=True)
class ReportTable:
    table: RatingTable
    criteria: list[dict[str, Any]]  # {"key", "version", "title"} in the study's order (overall last)
    raters: dict[str, str]  # report label -> kind (clinician, external, judge)


def _columns(rows: QuerySet, fields: list[Any]) -> np.ndarray:
    """Stream a values_list into an (n, len(fields)) int64 array without materializing model objects."""
    flat = np.fromiter(
        (number for row in rows.values_list(*fields).iterator(chunk_size=ITERATOR_CHUNK) for number in row),
        dtype=np.int64,
    )
    return flat.reshape(-1, len(fields))


def report_table(*, study: Study, filters: ReportFilters, excluded_raters: tuple[str, ...] = ()) -> ReportTable:
    """The covered ratings and judgments as one RatingTable (canonical orientation, labels by name), with
    each judgment's order consistency, each rater's "both unacceptable" flag (the assignment's for ratings,
    the judgment's for judgments) and the characters of both responses of every comparison."""
    rating_rows = _columns(
        report_ratings(study=study, filters=filters, excluded_raters=excluded_raters).annotate(
            left_code=_left_code("assignment__left_is_first"),
            consistency_code=Value(CONSISTENCY_NOT_RECORDED, output_field=IntegerField()),
            # The safety flag the judge analyses read: "both unacceptable" or an unsafe passage (docs/spans.md).
            flagged_code=Case(
                When(Q(assignment__both_unacceptable=True) | unsafe_span_exists(), then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
        ),
        [
            "criterion_id",
            "assignment__comparison_id",
            "assignment__comparison__prompt_id",
            "assignment__rater_id",
            "value",
            "left_code",
            "assignment__comparison__response_first__system_id",
            "assignment__comparison__response_second__system_id",
            "consistency_code",
            "flagged_code",
        ],
    )
    judgment_rows = _columns(
        report_judgments(study=study, filters=filters).annotate(
            left_code=_left_code("left_is_first"), consistency_code=_consistency_code()
        ),
        [
            "criterion_id",
            "comparison_id",
            "comparison__prompt_id",
            "judge__rater_id",
            "value",
            "left_code",
            "comparison__response_first__system_id",
            "comparison__response_second__system_id",
            "consistency_code",
            "both_unacceptable",
        ],
    )
    rows = np.concatenate([rating_rows, judgment_rows])
    criteria, criterion_code, versions, rows = _criteria_by_key(study, rows)
    criterion_ids, item, prompt, rater_ids, value, left, first_ids, second_ids, consistency, unacceptable = rows.T
    length_first, length_second = _response_lengths(study, item)

    raters = {r.pk: r for r in Rater.objects.filter(pk__in=np.unique(rater_ids).tolist())}
    rater_label = _rater_labels(list(raters.values()))
    rater_labels = tuple(sorted(set(rater_label.values())))
    rater_code = {pk: rater_labels.index(label) for pk, label in rater_label.items()}

    system_ids = np.unique(np.concatenate([first_ids, second_ids])).tolist()
    system_name = dict(System.objects.filter(pk__in=system_ids).values_list("id", "name"))
    system_labels = tuple(sorted(system_name.values()))
    system_code = {pk: system_labels.index(name) for pk, name in system_name.items()}

    table = RatingTable(
        criterion=_recode(criterion_ids, criterion_code),
        item=item,
        prompt=prompt,
        rater=_recode(rater_ids, rater_code),
        value=value,
        left_is_first=left,
        system_first=_recode(first_ids, system_code),
        system_second=_recode(second_ids, system_code),
        criterion_labels=tuple(c.key for c in criteria),
        rater_labels=rater_labels,
        rater_is_judge=tuple(
            any(raters[pk].is_judge for pk, label in rater_label.items() if label == name) for name in rater_labels
        ),
        system_labels=system_labels,
        consistency=consistency,
        both_unacceptable=unacceptable,
        length_first=length_first,
        length_second=length_second,
    )
    return ReportTable(
        table=table,
        # "version" cites every version rated ("1,2" after a rubric edit; one version stays an integer).
        criteria=[
            {"key": c.key, "version": _cited(versions[c.key]), "versions": versions[c.key], "title": c.title}
            for c in criteria
        ],
        raters={rater_label[pk]: raters[pk].kind for pk in raters},
    )


def _cited(versions: list[int]) -> int | str:
    return versions[0] if len(versions) == 1 else ",".join(str(v) for v in versions)


def _criteria_by_key(
    study: Study, rows: np.ndarray
) -> tuple[list[Criterion], dict[int, int], dict[str, list[int]], np.ndarray]:
    """One report entry per criterion key, in the study's order with the overall preference last (keys
    rated but since removed after them): a rubric edit makes a new Criterion version, and ratings given
    under the earlier one still count with their key. Returns the entries (the version in force, or the
    latest rated for a removed key), criterion id -> entry index, the versions rated per key, and the rows;
    where one rater answered one item under two versions of a key (a judge run again after an edit), only
    the answer under the latest version is kept."""
    present = set(np.unique(rows[:, 0]).tolist()) if len(rows) else set()
    rated = {c.pk: c for c in Criterion.objects.filter(pk__in=present)}
    rated_keys = {c.key for c in rated.values()}
    ordered = [c for c in study_criteria(study) if not c.is_overall] + [
        c for c in study_criteria(study) if c.is_overall
    ]
    criteria = [c for c in ordered if c.key in rated_keys]
    removed: dict[str, Criterion] = {}
    for c in sorted(rated.values(), key=lambda c: (c.key, c.version)):
        if c.key not in {k.key for k in criteria}:
            removed[c.key] = c  # rated, since removed: the latest version rated
    criteria += [removed[key] for key in sorted(removed)]
    index_of_key = {c.key: index for index, c in enumerate(criteria)}
    criterion_code = {pk: index_of_key[c.key] for pk, c in rated.items()}
    versions = {key: sorted(c.version for c in rated.values() if c.key == key) for key in index_of_key}
    if len(rows) and any(len(v) > 1 for v in versions.values()):
        codes = _recode(rows[:, 0], criterion_code)
        version = _recode(rows[:, 0], {pk: c.version for pk, c in rated.items()})
        order = np.lexsort((-version, rows[:, 3], rows[:, 1], codes))
        keys = np.stack([codes[order], rows[order, 1], rows[order, 3]])
        first = np.ones(len(order), dtype=bool)
        first[1:] = np.any(keys[:, 1:] != keys[:, :-1], axis=0)
        rows = rows[np.sort(order[first])]
    return criteria, criterion_code, versions, rows


def _response_lengths(study: Study, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Characters of the first and second response of each row's comparison: one query over the study's
    comparisons (never per row), LENGTH_UNKNOWN for a comparison it does not return."""
    first = np.full(len(item), LENGTH_UNKNOWN, dtype=np.int64)
    second = first.copy()
    if not len(item):
        return first, second
    lengths = _columns(
        Comparison.objects.filter(study=study, excluded=False)
        .annotate(length_first=Length("response_first__content"), length_second=Length("response_second__content"))
        .order_by("id"),
        ["id", "length_first", "length_second"],
    )
    if not len(lengths):
        return first, second
    position = np.clip(np.searchsorted(lengths[:, 0], item), 0, len(lengths) - 1)
    found = lengths[position, 0] == item
    first[found] = lengths[position[found], 1]
    second[found] = lengths[position[found], 2]
    return first, second


def _rater_labels(raters: list[Rater]) -> dict[int, str]:
    """Rater id -> label in the report. A label used by two kinds (a clinician and an imported rater both
    called "r1") gets the kind added, so two people never merge into one rater."""
    kinds_of: dict[str, set[str]] = {}
    for rater in raters:
        kinds_of.setdefault(rater.label, set()).add(rater.kind)
    return {
        rater.pk: rater.label if len(kinds_of[rater.label]) == 1 else f"{rater.label} ({rater.kind})"
        for rater in raters
    }


def _recode(ids: np.ndarray, code: dict[int, int]) -> np.ndarray:
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    keys = np.array(sorted(code), dtype=np.int64)
    values = np.array([code[k] for k in keys], dtype=np.int64)
    return values[np.searchsorted(keys, ids)]


def report_rater_choices(*, study: Study) -> list[dict[str, str]]:
    """Everyone who rated or judged in the study, for the page's rater filter: {"label", "kind"}, platform
    clinicians, imported raters, then AI judges (two small queries)."""
    rating = (
        Assignment.objects.filter(study=study, status=Assignment.Status.SUBMITTED, purpose__in=REPORTED_PURPOSES)
        .values_list("rater__label", "rater__kind")
        .distinct()
    )
    judging = (
        Judgment.objects.filter(comparison__study=study)
        .values_list("judge__rater__label", "judge__rater__kind")
        .distinct()
    )
    order = {kind: index for index, kind in enumerate(RATER_KINDS)}
    return [
        {"label": label, "kind": kind}
        for label, kind in sorted(set(rating) | set(judging), key=lambda lk: (order.get(lk[1], 9), lk[0]))
    ]


# Groups of clinicians smaller than this are merged into "other", so the panel never singles anyone out.
PANEL_MIN_CELL = 3


def clinician_panel(*, study: Study) -> dict[str, Any]:
    """Who the clinicians who submitted ratings in the study are, in aggregate only.

    Licence types and specialties with fewer than PANEL_MIN_CELL clinicians are merged into "other";
    years of practice are summarised only when at least PANEL_MIN_CELL clinicians gave them.
    """
    from statistics import median

    from annotations.models import Profile

    # The same platform clinicians the report and the overview count (study_rater_counts): submitted work
    # that reaches reports, so calibration practice alone does not make someone part of the panel.
    profiles = list(
        Profile.objects.filter(
            role=Profile.Role.CLINICIAN,
            user__rater__kind=Rater.Kind.CLINICIAN,
            user__rater__assignments__study=study,
            user__rater__assignments__status=Assignment.Status.SUBMITTED,
            user__rater__assignments__purpose__in=REPORTED_PURPOSES,
            user__rater__assignments__comparison__excluded=False,
        )
        .distinct()
        # The id keeps two clinicians with the same licence, years and specialties apart: without it the
        # distinct rows merged them, and the panel undercounted.
        .values_list("pk", "licence_type", "years_of_practice", "specialties")
    )
    profiles = [row[1:] for row in profiles]

    def grouped(values: list[str]) -> list[dict[str, Any]]:
        counts: dict[str, int] = {}
        for value in values:
            counts[value] = counts.get(value, 0) + 1
        shown = sorted((v, n) for v, n in counts.items() if n >= PANEL_MIN_CELL)
        other = sum(n for n in counts.values() if n < PANEL_MIN_CELL)
        return [{"value": v, "count": n} for v, n in shown] + ([{"value": "other", "count": other}] if other else [])

    years = [y for _, y, _ in profiles if y is not None]
    return {
        "n_clinicians": len(profiles),
        "min_cell": PANEL_MIN_CELL,
        "licence_types": grouped([licence or "not given" for licence, _, _ in profiles]),
        "specialties": grouped([s for _, _, specialties in profiles for s in (specialties or [])]),
        "years_of_practice": (
            {"n": len(years), "median": median(years), "min": min(years), "max": max(years)}
            if len(years) >= PANEL_MIN_CELL
            else None
        ),
    }


RATER_KINDS = ("clinician", "external", "judge")


def study_rater_counts(*, study: Study) -> dict[str, Any]:
    """The three kinds of rater counted apart, as the report counts them by default: platform clinicians and
    imported external raters (submitted rating sets that reach reports: no calibration practice, no excluded
    comparison) and AI judges (judgments of comparisons not excluded). One place for the study overview, the
    progress page and the report's defaults, so their numbers agree. Four aggregate queries.

    Returns {kind: {"raters", "rating_sets", "ratings"}}, with "per_criterion": {criterion id: {kind: ratings}}.
    """
    unfiltered = ReportFilters()
    sets = (
        Assignment.objects.filter(
            study=study,
            status=Assignment.Status.SUBMITTED,
            purpose__in=REPORTED_PURPOSES,
            comparison__excluded=False,
        )
        .values("rater__kind")
        .annotate(raters=Count("rater", distinct=True), rating_sets=Count("id"))
        .order_by()
    )
    counts: dict[str, Any] = {kind: {"raters": 0, "rating_sets": 0, "ratings": 0} for kind in RATER_KINDS}
    for row in sets:
        counts[row["rater__kind"]].update(raters=row["raters"], rating_sets=row["rating_sets"])
    per_criterion: dict[int, dict[str, int]] = {}
    ratings = (
        report_ratings(study=study, filters=unfiltered)
        .values("criterion_id", "assignment__rater__kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in ratings:
        kind = row["assignment__rater__kind"]
        counts[kind]["ratings"] += row["n"]
        per_criterion.setdefault(row["criterion_id"], dict.fromkeys(RATER_KINDS, 0))[kind] += row["n"]
    judged = report_judgments(study=study, filters=unfiltered)
    totals = judged.aggregate(
        raters=Count("judge__rater", distinct=True), rating_sets=Count("comparison", distinct=True), ratings=Count("id")
    )
    counts["judge"].update(totals)
    for row in judged.values("criterion_id").annotate(n=Count("id")).order_by():
        per_criterion.setdefault(row["criterion_id"], dict.fromkeys(RATER_KINDS, 0))["judge"] += row["n"]
    counts["per_criterion"] = per_criterion
    return counts
