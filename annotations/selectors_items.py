"""Reads for the item explorer and the raw data download: the comparisons behind every number of a study.

Query counts do not grow with the study: a page is one count, one page of comparisons (with its disagreement
computed in SQL) and a fixed number of prefetches; the raw table is two server-side cursors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import (
    Exists,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce, Sign
from django.http import QueryDict

from annotations.models import Assignment, Comparison, Judge, Judgment, Rater, Rating, Study, System
from annotations.selectors_spans import attach_item_spans

ITEMS_PER_PAGE = 25
SORTS = ("id", "disagreement")
RAW_CHUNK = 2000


@dataclass(frozen=True)
class ItemFilters:
    """What the explorer shows. Every filter narrows; an empty one does nothing."""

    criterion: str = ""  # criterion key: show and score only this criterion
    systems: tuple[int, int] | None = None  # the two systems of the pair, in any order
    raters: tuple[int, ...] = ()  # rater ids: items that every one of them rated or judged
    # The report's vocabulary, so its figures link here by name: system names (one: either side; two: the pair)
    # and rater labels ("label" or "label (kind)", as the report writes a label two kinds share).
    system_names: tuple[str, ...] = ()
    rater_labels: tuple[str, ...] = ()
    disagreement: bool = False  # items whose raters gave verdicts on both sides, or one side and a tie
    flagged: bool = False  # someone marked both responses unacceptable
    skipped: bool = False  # someone skipped the pair
    gold: bool = False
    sort: str = "id"  # "id" or "disagreement" (most disputed first)


def _flag(query: QueryDict, name: str) -> bool:
    return query.get(name, "") in ("1", "true", "on", "yes")


def item_filters_from_query(query: QueryDict) -> ItemFilters:
    """The explorer's filters from a page or API query string; a ValidationError names the bad field."""
    errors: dict[str, str] = {}
    systems = None
    if pair := query.get("systems", ""):
        parts = pair.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            errors["systems"] = "Give a system pair as two system ids joined by a hyphen, e.g. 3-7."
        else:
            systems = (int(parts[0]), int(parts[1]))
    raters = []
    for value in query.getlist("rater"):
        if value:
            if not value.isdigit():
                errors["rater"] = "Give raters by their numeric id."
            else:
                raters.append(int(value))
    system_names = tuple(dict.fromkeys(v for v in query.getlist("system") if v))
    if len(system_names) > 2:
        errors["system"] = "Give at most two system names: one for either side, two for the pair."
    sort = query.get("sort", "") or "id"
    if sort not in SORTS:
        errors["sort"] = f"Sort by one of: {', '.join(SORTS)}."
    if errors:
        raise ValidationError(errors)
    return ItemFilters(
        criterion=query.get("criterion", "").strip(),
        systems=systems,
        raters=tuple(dict.fromkeys(raters)),
        system_names=system_names,
        rater_labels=tuple(dict.fromkeys(v for v in query.getlist("rater_label") if v)),
        disagreement=_flag(query, "disagreement"),
        flagged=_flag(query, "flagged"),
        skipped=_flag(query, "skipped"),
        gold=_flag(query, "gold"),
        sort=sort,
    )


def _submitted_ratings(filters: ItemFilters) -> QuerySet[Rating]:
    ratings = Rating.objects.filter(assignment__status=Assignment.Status.SUBMITTED)
    if filters.criterion:
        ratings = ratings.filter(criterion__key=filters.criterion)
    return ratings


def _rater_label_condition(label: str) -> Q:
    """A rater named as the report names them: "label", or "label (kind)" where two kinds share the label."""
    for kind in Rater.Kind.values:
        suffix = f" ({kind})"
        if label.endswith(suffix):
            return Q(label=label[: -len(suffix)], kind=kind) | Q(label=label)
    return Q(label=label)


def items_for_study(*, study: Study, filters: ItemFilters) -> QuerySet[Comparison]:
    """A study's comparisons under `filters`, each annotated with `disagreement`: the spread of the raters'
    verdict sides (0 all agree, 1 one side against a tie, 2 both sides), over the filtered criteria."""
    spread = (
        _submitted_ratings(filters)
        .filter(assignment__comparison=OuterRef("pk"))
        .values("assignment__comparison")
        .annotate(spread=Max(Sign("value")) - Min(Sign("value")))
        .values("spread")
    )
    items = Comparison.objects.filter(study=study).annotate(
        disagreement=Coalesce(Subquery(spread, output_field=IntegerField()), Value(0))
    )
    if filters.criterion:
        items = items.filter(
            Exists(_submitted_ratings(filters).filter(assignment__comparison=OuterRef("pk")))
            | Exists(Judgment.objects.filter(comparison=OuterRef("pk"), criterion__key=filters.criterion))
        )
    if filters.systems:
        a, b = filters.systems
        items = items.filter(
            Q(response_first__system_id=a, response_second__system_id=b)
            | Q(response_first__system_id=b, response_second__system_id=a)
        )
    if len(filters.system_names) == 2:
        a, b = filters.system_names
        items = items.filter(
            Q(response_first__system__name=a, response_second__system__name=b)
            | Q(response_first__system__name=b, response_second__system__name=a)
        )
    elif filters.system_names:
        (name,) = filters.system_names
        items = items.filter(Q(response_first__system__name=name) | Q(response_second__system__name=name))
    rater_conditions = [Q(pk=rater_id) for rater_id in filters.raters]
    rater_conditions += [_rater_label_condition(label) for label in filters.rater_labels]
    for condition in rater_conditions:
        raters = Rater.objects.filter(condition)
        # With a criterion, "rated" means rated on that criterion: a heatmap cell's comparisons are exactly
        # those both raters answered on the cell's criterion.
        rated = _submitted_ratings(filters).filter(assignment__comparison=OuterRef("pk"), assignment__rater__in=raters)
        judged = Judgment.objects.filter(comparison=OuterRef("pk"), judge__rater__in=raters)
        if filters.criterion:
            judged = judged.filter(criterion__key=filters.criterion)
        else:
            rated = Assignment.objects.filter(
                comparison=OuterRef("pk"), rater__in=raters, status=Assignment.Status.SUBMITTED
            )
        items = items.filter(Exists(rated) | Exists(judged))
    if filters.disagreement:
        items = items.filter(disagreement__gt=0)
    if filters.flagged:
        items = items.filter(
            Exists(Assignment.objects.filter(comparison=OuterRef("pk"), both_unacceptable=True))
            | Exists(Judgment.objects.filter(comparison=OuterRef("pk"), both_unacceptable=True))
        )
    if filters.skipped:
        items = items.filter(
            Exists(Assignment.objects.filter(comparison=OuterRef("pk"), status=Assignment.Status.SKIPPED))
        )
    if filters.gold:
        items = items.filter(is_gold=True)
    order = ("-disagreement", "id") if filters.sort == "disagreement" else ("id",)
    return items.order_by(*order)


def items_page_load(*, items: list[Comparison] | QuerySet[Comparison], filters: ItemFilters) -> list[Comparison]:
    """One page of comparisons with everything the explorer shows, in a fixed number of queries: prompt,
    both responses with their systems, every assignment (rater, ratings) and every judgment."""
    ratings = Rating.objects.select_related("criterion").order_by("criterion__key")
    judgments = Judgment.objects.select_related("criterion", "judge__rater").order_by("judge_id", "criterion__key")
    if filters.criterion:
        ratings = ratings.filter(criterion__key=filters.criterion)
        judgments = judgments.filter(criterion__key=filters.criterion)
    assignments = (
        Assignment.objects.exclude(status=Assignment.Status.LEASED)
        .select_related("rater")
        .prefetch_related(Prefetch("ratings", queryset=ratings))
        .order_by("rater__kind", "rater__label")
    )
    items = list(items)
    prefetch_related_objects(
        items,
        "prompt",
        "response_first__system",
        "response_second__system",
        Prefetch("assignments", queryset=assignments),
        Prefetch("judgments", queryset=judgments),
    )
    attach_item_spans(items)  # marked passages, by response: one query
    return items


def item_filter_choices(*, study: Study) -> dict[str, Any]:
    """The explorer's filter options: criteria, system pairs present in the study, raters who took part."""
    from annotations.services.studies import study_criteria

    systems = {s.pk: s.name for s in System.objects.filter(study=study)}
    pairs = (
        Comparison.objects.filter(study=study)
        .values_list("response_first__system_id", "response_second__system_id")
        .distinct()
    )
    pair_choices = {}
    for a, b in pairs:
        low, high = sorted((a, b))
        pair_choices[f"{low}-{high}"] = f"{systems.get(low, low)} vs {systems.get(high, high)}"
    # Distinct ids first (hash aggregates over the study's rows), then the few raters they name.
    rater_ids = set(
        Assignment.objects.filter(study=study, status=Assignment.Status.SUBMITTED)
        .order_by()
        .values_list("rater_id", flat=True)
        .distinct()
    )
    rater_ids |= set(
        Judge.objects.filter(
            Exists(Judgment.objects.filter(judge=OuterRef("pk"), comparison__study=study))
        ).values_list("rater_id", flat=True)
    )
    raters = Rater.objects.filter(pk__in=rater_ids).order_by("kind", "label")
    return {
        "criteria": [(c.key, c.title) for c in study_criteria(study)],
        "system_pairs": sorted(pair_choices.items(), key=lambda kv: kv[1]),
        "raters": [(r.pk, f"{r.label} ({r.kind})") for r in raters],
    }


RAW_COLUMNS = (
    "study",
    "comparison_id",
    "prompt_id",
    "system_first",
    "system_second",
    "rater",
    "rater_kind",
    "criterion",
    "rubric_version",
    "value",
    "displayed_side",
    "rationale",
    "pair_rationale",
    "flagged_unacceptable",
    "unacceptable_reason",
    "purpose",
    "is_gold",
    "judge_consistency",
    "active_seconds",
    "total_seconds",
    "revision",
    "created_at",
    "submitted_at",
    "updated_at",
)


def _displayed_side(left_is_first: bool | None) -> str:
    """Where the comparison's first response was shown; empty when unknown (imported data)."""
    if left_is_first is None:
        return ""
    return "first_left" if left_is_first else "first_right"


def raw_rows(*, study: Study) -> Iterator[tuple[Any, ...]]:
    """Every submitted rating, then every judgment, of a study as one long table in RAW_COLUMNS order.

    Values are canonical (negative favours the comparison's first response). Two server-side cursors
    (iterator), so the table is never held in memory whatever its size."""
    ratings = (
        Rating.objects.filter(assignment__study=study, assignment__status=Assignment.Status.SUBMITTED)
        .order_by("assignment__comparison_id", "assignment__rater_id", "criterion__key")
        .values_list(
            "assignment__comparison_id",
            "assignment__comparison__prompt__external_id",
            "assignment__comparison__response_first__system__name",
            "assignment__comparison__response_second__system__name",
            "assignment__rater__label",
            "assignment__rater__kind",
            "criterion__key",
            "criterion__version",
            "value",
            "assignment__left_is_first",
            "rationale",
            "assignment__rationale",
            "assignment__both_unacceptable",
            "assignment__unacceptable_reason",
            "assignment__purpose",
            "assignment__comparison__is_gold",
            "assignment__active_seconds",
            "assignment__total_seconds",
            "revision",
            "created_at",
            "assignment__submitted_at",
            "updated_at",
        )
    )
    for (
        comparison_id, prompt_id, first, second, rater, kind, criterion, version, value, left_is_first,
        rationale, pair_rationale, flagged, reason, purpose, is_gold, active, total, revision,
        created, submitted, updated,
    ) in ratings.iterator(chunk_size=RAW_CHUNK):  # fmt: skip
        yield (
            study.slug, comparison_id, prompt_id, first, second, rater, kind, criterion, version, value,
            _displayed_side(left_is_first), rationale, pair_rationale, flagged, reason, purpose, is_gold, "",
            active, total, revision, created, submitted, updated,
        )  # fmt: skip
    judgments = (
        Judgment.objects.filter(comparison__study=study)
        .order_by("comparison_id", "judge_id", "criterion__key")
        .values_list(
            "comparison_id",
            "comparison__prompt__external_id",
            "comparison__response_first__system__name",
            "comparison__response_second__system__name",
            "judge__rater__label",
            "criterion__key",
            "criterion__version",
            "value",
            "left_is_first",
            "rationale",
            "both_unacceptable",
            "comparison__is_gold",
            "consistency",
            "created_at",
        )
    )
    for (
        comparison_id, prompt_id, first, second, judge, criterion, version, value, left_is_first, rationale,
        flagged, is_gold, consistency, created,
    ) in judgments.iterator(chunk_size=RAW_CHUNK):  # fmt: skip
        yield (
            study.slug, comparison_id, prompt_id, first, second, judge, Rater.Kind.JUDGE.value, criterion, version,
            value, _displayed_side(left_is_first), rationale, "", flagged, "", "judgment", is_gold, consistency,
            None, None, None, created, created, created,
        )  # fmt: skip
