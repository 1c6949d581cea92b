"""Reads shaped for pages, reports and exports. Writes live in services/."""

from typing import Any

from django.db.models import Count, Q

from annotations.models import Assignment, Comparison, Judge, ScreeningHit, Study
from annotations.selectors_reports import study_rater_counts


def study_overview(*, study: Study) -> dict[str, Any]:
    """Counts for the study page, in a handful of queries whatever the study's size."""
    counts = Study.objects.filter(pk=study.pk).aggregate(
        prompts=Count("prompts", distinct=True),
        responses=Count("responses", distinct=True),
        systems=Count("systems", distinct=True),
    )
    comparisons = Comparison.objects.filter(study=study).aggregate(
        total=Count("id"), excluded=Count("id", filter=Q(excluded=True)), gold=Count("id", filter=Q(is_gold=True))
    )
    assignments = Assignment.objects.filter(study=study).aggregate(
        submitted=Count("id", filter=Q(status=Assignment.Status.SUBMITTED)),
        leased=Count("id", filter=Q(status=Assignment.Status.LEASED)),
    )
    return {
        **counts,
        "comparisons": comparisons["total"],
        "comparisons_excluded": comparisons["excluded"],
        "comparisons_gold": comparisons["gold"],
        "assignments_submitted": assignments["submitted"],
        "assignments_leased": assignments["leased"],
        "open_screening_hits": screening_hits_open(study=study).count(),
        # Platform clinicians, imported raters and AI judges apart, counted as the report counts them.
        "rater_counts": study_rater_counts(study=study),
    }


def screening_hits_open(*, study: Study):
    return (
        ScreeningHit.objects.filter(
            response__study=study, resolution=ScreeningHit.Resolution.OPEN, response__excluded=False
        )
        .select_related("response", "response__system")
        .order_by("response__external_id", "term")
    )


def comparisons_for_study(*, study: Study):
    return (
        Comparison.objects.filter(study=study)
        .select_related("prompt", "response_first__system", "response_second__system")
        .annotate(submitted=Count("assignments", filter=Q(assignments__status=Assignment.Status.SUBMITTED)))
        .order_by("id")
    )


def judges_for_study(*, study: Study):
    return (
        Judge.objects.filter(judgments__comparison__study=study)
        .select_related("rater")
        .annotate(judgments_count=Count("judgments"))
        .order_by("rater__label")
    )
