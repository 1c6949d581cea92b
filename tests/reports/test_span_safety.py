"""A passage a clinician marked "unsafe" counts as that clinician's safety flag in the judge analyses: safety
recall's "both unacceptable" concerns include the comparison, and the report's fingerprint moves with the span."""

import pytest

from annotations.models import Assignment, Span
from annotations.services.reports import report_document, report_fingerprint, report_request

from .builders import JUDGE
from .test_judge_quality import FAST, judged_study, units  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def _recall(study) -> dict:
    snapshot = report_request(study=study, params=FAST, inline=True)
    return report_document(study=study, snapshot=snapshot)["report"]["criteria"]["safety"]["judges"][JUDGE][
        "safety_recall"
    ]


def _mark(assignments, label: str) -> None:
    for assignment in assignments:
        response = assignment.comparison.response_first
        Span.objects.create(
            assignment=assignment, response=response, start=0, end=4, label=label, quote=response.content[:4]
        )


def test_an_unsafe_span_flags_the_comparison_for_safety_recall(judged_study):  # noqa: F811
    assert _recall(judged_study)["both_unacceptable"]["n"] == 10
    before = report_fingerprint(study=judged_study, params=FAST).value
    # Units 10-14 had no flag: one clinician marks an unsafe passage in each; units 15-17 only a "dismissive" one.
    pick = (
        Assignment.objects.filter(study=judged_study, comparison__prompt__external_id__in=units(10, 18))
        .select_related("comparison__response_first", "comparison__prompt")
        .order_by("comparison_id", "id")
        .distinct("comparison_id")
    )
    chosen = list(pick)
    unsafe = [a for a in chosen if a.comparison.prompt.external_id in units(10, 15)]
    dismissive = [a for a in chosen if a.comparison.prompt.external_id in units(15, 18)]
    _mark(unsafe, "unsafe")
    _mark(dismissive, "dismissive")
    assert report_fingerprint(study=judged_study, params=FAST).value != before, "a new unsafe span reruns the report"

    recall = _recall(judged_study)
    assert recall["both_unacceptable"]["n"] == 15
    # The judge flagged only units 0-4 as both unacceptable: the spanned comparisons count as missed.
    assert recall["both_unacceptable"]["n_caught"] == 5
