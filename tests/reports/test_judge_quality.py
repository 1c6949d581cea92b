"""Through the database: judgments with order consistency, "both unacceptable" flags and response lengths reach
the report document, the page and the CSV (position-swap consistency, pooled agreement, length preference,
safety recall)."""

import csv
import io
from collections import Counter, defaultdict

import pytest
from django.db.models import F
from django.db.models.functions import Concat
from django.urls import reverse

from annotations.models import Assignment, Judgment, Rating, Response
from annotations.selectors_reports import ReportFilters
from annotations.services.reports import ReportParams, report_csv, report_document, report_fingerprint, report_request

from .builders import JUDGE

pytestmark = pytest.mark.django_db
FAST = ReportParams(n_resamples=50)


def units(first: int, last: int) -> list[str]:
    return [f"u{unit}" for unit in range(first, last)]


@pytest.fixture
def judged_study(paper_study):
    """The paper study with: empathy judged in both orders on units 0-79 (60-79 inconsistent, stored as ties),
    the rest in one order; one clinician flagging both responses unacceptable on units 0-9, the judge on
    0-4 (safety judgments); the new system's responses three times as long as the base's."""
    empathy = Judgment.objects.filter(comparison__study=paper_study, criterion__key="empathy")
    empathy.filter(comparison__prompt__external_id__in=units(0, 60)).update(consistency="consistent")
    empathy.filter(comparison__prompt__external_id__in=units(60, 80)).update(consistency="inconsistent", value=0)
    one_per_comparison = (
        Assignment.objects.filter(study=paper_study, comparison__prompt__external_id__in=units(0, 10))
        .order_by("comparison_id", "id")
        .distinct("comparison_id")
        .values_list("id", flat=True)
    )
    Assignment.objects.filter(pk__in=list(one_per_comparison)).update(both_unacceptable=True)
    Judgment.objects.filter(
        comparison__study=paper_study, criterion__key="safety", comparison__prompt__external_id__in=units(0, 5)
    ).update(both_unacceptable=True)
    Response.objects.filter(study=paper_study, system__name="new").update(
        content=Concat(F("content"), F("content"), F("content"))
    )
    return paper_study


def safety_by_hand(study):
    """Expected safety recall counts, from the rows themselves."""
    votes = defaultdict(Counter)
    for comparison, value in Rating.objects.filter(assignment__study=study, criterion__key="safety").values_list(
        "assignment__comparison_id", "value"
    ):
        votes[comparison][(value > 0) - (value < 0)] += 1
    flagged = set(
        Assignment.objects.filter(study=study, both_unacceptable=True).values_list("comparison_id", flat=True)
    )
    judged = {
        comparison: (value, flag)
        for comparison, value, flag in Judgment.objects.filter(
            comparison__study=study, criterion__key="safety"
        ).values_list("comparison_id", "value", "both_unacceptable")
    }
    preferred = caught = 0
    for comparison, counts in votes.items():
        side = 1 if counts[1] > counts[-1] else -1 if counts[-1] > counts[1] else 0
        if side:
            preferred += 1
            caught += (judged[comparison][0] > 0) - (judged[comparison][0] < 0) == side
    flag_caught = sum(1 for comparison in flagged if judged[comparison][1])
    return preferred, caught, len(flagged), flag_caught


def test_the_document_carries_the_judge_quality_figures(judged_study):
    report = report_document(study=judged_study, snapshot=report_request(study=judged_study, params=FAST, inline=True))[
        "report"
    ]
    empathy = report["criteria"]["empathy"]["judges"][JUDGE]
    swap = empathy["position_swap"]
    assert (swap["n_consistent"], swap["n_inconsistent"], swap["n_single_order"]) == (60, 20, 20)
    assert swap["consistency"] == pytest.approx(0.75) and swap["inconsistent_rate"] == pytest.approx(0.25)
    overall_swap = report["criteria"]["overall"]["judges"][JUDGE]["position_swap"]
    assert overall_swap["consistency"] is None and overall_swap["reason"] == "judged in one order only"

    pooled = empathy["pooled_agreement"]
    assert (pooled["judge_clinician"]["n_item_pairs"], pooled["judge_clinician"]["n_rater_pairs"]) == (200, 6)
    assert pooled["clinician_clinician"]["n_item_pairs"] == 100
    assert pooled["clinician_clinician"]["n_rater_pairs"] >= 5 and pooled["warning"] is None
    assert pooled["clinician_clinician"]["estimate"] == pytest.approx(
        report["criteria"]["empathy"]["reliability"]["percent_agreement"]["estimate"]
    )

    # The new (second) response is the longer one everywhere: a non-tie choice for new picked the longer.
    judge_values = list(
        Judgment.objects.filter(comparison__study=judged_study, criterion__key="empathy").values_list(
            "value", flat=True
        )
    )
    decisive = [v for v in judge_values if v]
    length = empathy["length_preference"]
    assert length["judge"]["share_longer"]["n_choices"] == len(decisive)
    assert length["judge"]["share_longer"]["estimate"] == pytest.approx(sum(v > 0 for v in decisive) / len(decisive))
    assert length["judge"]["fit"]["reason"]  # one length ratio for every comparison: no slope, but no error
    assert length["share_longer_difference"]["estimate"] is not None

    preferred, caught, flagged, flag_caught = safety_by_hand(judged_study)
    recall = report["criteria"]["safety"]["judges"][JUDGE]["safety_recall"]
    assert (recall["preferred"]["n"], recall["preferred"]["n_caught"]) == (preferred, caught)
    assert (recall["both_unacceptable"]["n"], recall["both_unacceptable"]["n_caught"]) == (flagged, flag_caught)
    assert (flagged, flag_caught) == (10, 5)
    assert "safety_recall" not in empathy

    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    quality = {(r["criterion"], r["statistic"]): r for r in rows if r["section"] == "judge_quality"}
    assert float(quality[("empathy", "position_swap_consistency")]["estimate"]) == pytest.approx(0.75)
    assert quality[("empathy", "pooled_agreement_judge_clinician")]["n"] == "200"
    assert int(quality[("safety", "safety_recall_both_unacceptable")]["n"]) == 10
    assert quality[("safety", "safety_recall_combined")]["subject"] == JUDGE


def test_a_changed_consistency_or_flag_changes_the_fingerprint(judged_study):
    before = report_fingerprint(study=judged_study, params=FAST).value
    Judgment.objects.filter(comparison__study=judged_study, criterion__key="overall").update(consistency="consistent")
    after_consistency = report_fingerprint(study=judged_study, params=FAST).value
    assert after_consistency != before
    Assignment.objects.filter(study=judged_study).update(both_unacceptable=False)
    assert report_fingerprint(study=judged_study, params=FAST).value != after_consistency


def test_the_page_shows_the_judge_quality_figures(client, researcher, judged_study):
    report_request(study=judged_study, params=ReportParams(n_resamples=20), inline=True)  # as the worker would
    client.force_login(researcher)
    html = client.get(reverse("study-report", kwargs={"slug": "paper"}) + "?resamples=20").content.decode()
    assert html.count('class="table judge-quality-table"') == 3
    assert "Same verdict in both orders (position-swap consistency)" in html
    assert "75.0%" in html and "80 comparisons judged in both orders; 20 inconsistent (25.0%), counted as ties" in html
    assert "This judge was run in one order only" in html  # safety and overall
    assert "200 co-rated item pairs, 6 rater pairs" in html
    assert "Picked the longer response" in html
    assert html.count('class="table safety-recall-table"') == 1
    assert "A clinician flagged both responses unacceptable" in html
    assert "pooled-warning" not in html

    # Two clinicians and the judge: the pooled figures rest on few rater pairs, and the page says so.
    few_raters = ReportFilters(raters=("clinician-1", "clinician-2", JUDGE))
    report_request(study=judged_study, params=ReportParams(filters=few_raters, n_resamples=20), inline=True)
    few = client.get(
        reverse("study-report", kwargs={"slug": "paper"})
        + f"?resamples=20&rater=clinician-1&rater=clinician-2&rater={JUDGE}"
    ).content.decode()
    assert 'class="notice pooled-warning"' in few and "rater pair" in few
