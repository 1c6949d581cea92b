"""Selector and service: the table from the database, fingerprint, cache, filters, progress, CSV."""

import csv
import datetime
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from annotations.models import Assignment, Comparison, JobStatus, Rater, Rating, ReportSnapshot
from annotations.selectors_reports import ReportFilters, report_table
from annotations.services import reports as reports_service
from annotations.services.reports import (
    ReportLimitReached,
    ReportParams,
    report_csv,
    report_document,
    report_fingerprint,
    report_params_parse,
    report_request,
    shares_table,
)

from .builders import CLINICIANS, JUDGE, PAPER_SHARES, import_records, vote

pytestmark = pytest.mark.django_db
FAST = ReportParams(n_resamples=20)


@pytest.fixture
def compute_calls(monkeypatch):
    calls = []
    real = reports_service.compute_report

    def counting(table, **kwargs):
        calls.append(table.n_rows)
        return real(table, **kwargs)

    monkeypatch.setattr(reports_service, "compute_report", counting)
    return calls


def test_the_research_table_comes_out_of_imported_ratings(imported_paper_study):
    paper_study = imported_paper_study
    snapshot = report_request(study=paper_study, params=FAST, inline=True)
    rows = shares_table(report_document(study=paper_study, snapshot=snapshot)["report"], baseline="base")
    got = {
        row["criterion"]: (
            row["system"],
            row["opponent"],
            row["system_percent"],
            row["opponent_percent"],
            row["tie_percent"],
        )
        for row in rows
    }
    assert got == {criterion: ("new", "base", *shares) for criterion, shares in PAPER_SHARES.items()}
    assert {row["n"] for row in rows} == {200}


def test_the_table_holds_clinicians_and_judges_in_canonical_orientation(paper_study, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):  # a fixed handful of queries, however many ratings
        data = report_table(study=paper_study, filters=ReportFilters())
    table = data.table
    assert table.n_rows == 3 * 200 + 3 * 100
    assert table.rater_labels == tuple(sorted((*CLINICIANS, JUDGE)))
    assert [label for label, judge in zip(table.rater_labels, table.rater_is_judge) if judge] == [JUDGE]
    assert table.system_labels == ("base", "new")
    assert table.criterion_labels == ("empathy", "safety", "overall")  # the study's order, overall last
    empathy = table.criterion == 0
    human = ~(table.rater == table.rater_labels.index(JUDGE))
    # Half the votes were written with the responses swapped: all must come back favouring new 85 times in 100.
    assert (table.value[empathy & human] > 0).sum() == 170
    assert (table.left_is_first == -1).all()  # imported: side unknown
    assert data.raters[JUDGE] == Rater.Kind.JUDGE


def test_a_second_request_uses_the_cached_snapshot(paper_study, compute_calls):
    first = report_request(study=paper_study, params=FAST, inline=True)
    second = report_request(study=paper_study, params=FAST, inline=True)
    assert first.pk == second.pk and second.status == JobStatus.SUCCEEDED
    assert len(compute_calls) == 1
    assert second.computed_at == first.computed_at


def test_a_new_rating_changes_the_fingerprint_and_the_report(paper_study, compute_calls):
    before = report_request(study=paper_study, params=FAST, inline=True)
    import_records(paper_study, [vote(rater="late-rater", unit=5, criterion="empathy", value=-1)], "late.jsonl")
    after = report_request(study=paper_study, params=FAST, inline=True)
    assert after.fingerprint != before.fingerprint
    assert len(compute_calls) == 2
    assert after.result["report"]["counts"]["n_ratings"] == before.result["report"]["counts"]["n_ratings"] + 1
    # The superseded snapshot of the same report is gone.
    assert list(ReportSnapshot.objects.filter(study=paper_study).values_list("pk", flat=True)) == [after.pk]


def test_an_edited_or_removed_rating_changes_the_fingerprint(paper_study):
    original = report_fingerprint(study=paper_study, params=FAST).value
    rating = Rating.objects.filter(assignment__study=paper_study, value=1).first()
    # An edit that bypasses updated_at and revision still moves the id-weighted sum of values.
    Rating.objects.filter(pk=rating.pk).update(value=-1, updated_at=rating.updated_at)
    edited = report_fingerprint(study=paper_study, params=FAST).value
    assert edited != original
    Rating.objects.filter(pk=rating.pk).delete()
    assert report_fingerprint(study=paper_study, params=FAST).value not in (original, edited)
    removed = report_fingerprint(study=paper_study, params=FAST)
    first = Comparison.objects.filter(study=paper_study).order_by("id").first()
    Comparison.objects.filter(pk=first.pk).update(excluded=True)
    excluded = report_fingerprint(study=paper_study, params=FAST)
    assert excluded.value != removed.value
    assert excluded.n_rows < removed.n_rows  # an excluded comparison's ratings leave the report


def test_parameters_are_part_of_the_fingerprint(paper_study):
    base = report_fingerprint(study=paper_study, params=FAST).value
    assert report_fingerprint(study=paper_study, params=ReportParams(n_resamples=21)).value != base
    only_empathy = ReportParams(filters=ReportFilters(criteria=("empathy",)), n_resamples=20)
    assert report_fingerprint(study=paper_study, params=only_empathy).value != base


def test_filters_pick_criteria_raters_and_dates(paper_study):
    params = ReportParams(filters=ReportFilters(criteria=("safety",), raters=(*CLINICIANS[:4], JUDGE)), n_resamples=0)
    report = report_request(study=paper_study, params=params, inline=True).result["report"]
    assert list(report["criteria"]) == ["safety"]
    assert [r["label"] for r in report["raters"]] == sorted((*CLINICIANS[:4], JUDGE))

    old = timezone.now() - datetime.timedelta(days=30)
    Rating.objects.filter(assignment__rater__label=CLINICIANS[0]).update(created_at=old)
    recent = ReportFilters(date_from=timezone.localdate() - datetime.timedelta(days=1))
    labels = set(report_table(study=paper_study, filters=recent).table.rater_labels)
    assert CLINICIANS[0] not in labels and CLINICIANS[1] in labels
    until = ReportFilters(date_to=(old + datetime.timedelta(days=1)).date())
    assert set(report_table(study=paper_study, filters=until).table.rater_labels) == {CLINICIANS[0]}


def test_the_gold_threshold_leaves_out_inaccurate_clinicians(paper_study):
    gold = Comparison.objects.filter(study=paper_study).order_by("id").first()
    Comparison.objects.filter(pk=gold.pk).update(is_gold=True, gold_expected={"empathy": 1})
    for label, value in ((CLINICIANS[0], -1), (CLINICIANS[1], 1)):
        rater = Rater.objects.get(kind=Rater.Kind.EXTERNAL, label=label)
        assignment, _ = Assignment.objects.update_or_create(
            comparison=gold,
            rater=rater,
            defaults={"study": paper_study, "status": Assignment.Status.SUBMITTED, "purpose": Assignment.Purpose.GOLD},
        )
        Rating.objects.filter(assignment=assignment).delete()
        Rating.objects.create(assignment=assignment, criterion=gold.study.criteria.get(key="empathy"), value=value)

    params = ReportParams(filters=ReportFilters(min_gold_accuracy=0.5), n_resamples=0)
    document = report_document(
        study=paper_study, snapshot=report_request(study=paper_study, params=params, inline=True)
    )
    assert document["excluded_raters"]["below_gold_accuracy"] == {CLINICIANS[0]: 0.0}
    assert CLINICIANS[2] in document["excluded_raters"]["without_gold_checks"]
    labels = [r["label"] for r in document["report"]["raters"]]
    assert CLINICIANS[0] not in labels and CLINICIANS[1] in labels and JUDGE in labels


def test_progress_rises_to_the_end_while_computing(paper_study, monkeypatch):
    seen = []
    real = reports_service._progress_set
    monkeypatch.setattr(reports_service, "_progress_set", lambda pk, value: (seen.append(value), real(pk, value)))
    snapshot = report_request(study=paper_study, params=FAST, inline=True)
    assert seen == sorted(seen) and len(seen) == 1 + 4 * 3 + 1  # loading, 4 parts per criterion, pooled bias
    assert seen[-1] == pytest.approx(0.99)
    assert snapshot.progress == 1.0 and snapshot.computed_at is not None


def test_a_report_asked_for_without_inline_is_queued_never_computed_here(
    paper_study, researcher, compute_calls, django_capture_on_commit_callbacks
):
    small = ReportParams(n_resamples=0)  # the smallest report there is still goes to the worker
    with django_capture_on_commit_callbacks() as callbacks:
        snapshot = report_request(study=paper_study, params=small, requested_by=researcher)
    assert snapshot.status == JobStatus.QUEUED and snapshot.result is None
    assert snapshot.requested_by == researcher
    assert compute_calls == [] and len(callbacks) == 1  # the task is sent on commit, to the worker
    assert report_request(study=paper_study, params=small, requested_by=researcher).pk == snapshot.pk


def test_a_researcher_may_have_only_so_many_reports_computing_at_once(
    paper_study, researcher, other_researcher, settings
):
    settings.REPORT_MAX_ACTIVE_PER_USER = 2
    first = report_request(study=paper_study, params=ReportParams(seed=1), requested_by=researcher)
    report_request(study=paper_study, params=ReportParams(seed=2), requested_by=researcher)
    with pytest.raises(ReportLimitReached, match="already have 2 reports being computed"):
        report_request(study=paper_study, params=ReportParams(seed=3), requested_by=researcher)
    assert ReportSnapshot.objects.filter(study=paper_study).count() == 2  # nothing queued past the limit
    # Asking for a report already being computed costs nothing, and the limit is per person.
    assert report_request(study=paper_study, params=ReportParams(seed=1), requested_by=researcher).pk == first.pk
    report_request(study=paper_study, params=ReportParams(seed=3), requested_by=other_researcher)
    # A finished report frees its place; so does one stuck in the queue for longer than an hour.
    ReportSnapshot.objects.filter(pk=first.pk).update(status=JobStatus.SUCCEEDED)
    report_request(study=paper_study, params=ReportParams(seed=4), requested_by=researcher)
    ReportSnapshot.objects.filter(requested_by=researcher).update(
        created_at=timezone.now() - datetime.timedelta(hours=2)
    )
    report_request(study=paper_study, params=ReportParams(seed=5), requested_by=researcher)


def test_resamples_are_capped_by_a_setting(settings):
    settings.REPORT_MAX_RESAMPLES = 500
    assert report_params_parse(n_resamples="500").n_resamples == 500
    with pytest.raises(ValidationError) as refused:
        report_params_parse(n_resamples="501")
    assert refused.value.message_dict == {"resamples": ["Expected an integer from 0 to 500."]}


def test_csv_has_every_statistic_with_its_interval(paper_study):
    report = report_request(study=paper_study, params=FAST, inline=True).result["report"]
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    alpha = next(r for r in rows if r["criterion"] == "empathy" and r["statistic"] == "alpha_nominal")
    expected = report["criteria"]["empathy"]["reliability"]["alpha"]["nominal"]
    assert float(alpha["estimate"]) == pytest.approx(expected["estimate"])
    assert float(alpha["ci_low"]) == pytest.approx(expected["ci_low"])
    new_share = next(
        r
        for r in rows
        if r["criterion"] == "empathy" and r["statistic"] == "share_losses_percent" and "(clinicians)" in r["subject"]
    )
    assert float(new_share["estimate"]) == 85
    assert any(r["section"] == "pairwise" and JUDGE in r["subject"] for r in rows)


def test_the_command_prints_json_and_csv(paper_study, capsys):
    call_command("agreement_report", "--study", "paper", "--format", "json", "--resamples", "20")
    document = json.loads(capsys.readouterr().out)
    assert document["status"] == "succeeded" and document["report"]["counts"]["n_judges"] == 1
    assert [c["key"] for c in document["criteria"]] == ["empathy", "safety", "overall"]
    call_command(
        "agreement_report", "--study", "paper", "--format", "csv", "--resamples", "20", "--criterion", "empathy"
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "criterion,section,statistic,subject,estimate,ci_low,ci_high,n"
    assert {line.split(",")[0] for line in lines[1:]} == {"empathy"}


def test_every_key_of_the_document_is_documented(paper_study):
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text()
    document = report_document(study=paper_study, snapshot=report_request(study=paper_study, params=FAST, inline=True))
    keys = set(document) | set(document["filters"]) | set(document["excluded_raters"]) | set(document["report"])
    assert {key for key in keys if f"`{key}`" not in docs} == set()
