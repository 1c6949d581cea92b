"""Report pages, downloads and API: content, charts, progress, and who may see them."""

import json
import re

import pytest
from django.http import QueryDict
from django.urls import reverse

from annotations.models import JobStatus, ReportSnapshot
from annotations.services import reports as reports_service
from annotations.services.reports import report_params_from_query, report_request
from annotations.stats.report import REPORT_SCHEMA_VERSION

from .builders import JUDGE

pytestmark = pytest.mark.django_db


def page(client, user, name, slug="paper", query="", **kwargs):
    client.force_login(user)
    return client.get(reverse(name, kwargs={"slug": slug, **kwargs}) + query)


def computed(study, query: str) -> ReportSnapshot:
    """What a worker does for the page: compute the report for these filters (here, in the test's process)."""
    return report_request(study=study, params=report_params_from_query(QueryDict(query.lstrip("?"))), inline=True)


@pytest.fixture
def no_inline_compute(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a report was computed inside a request")

    monkeypatch.setattr(reports_service, "compute_report", refuse)


def test_the_page_queues_even_a_small_report_for_a_worker_and_polls_it(
    client, researcher, paper_study, no_inline_compute, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        html = page(client, researcher, "study-report", query="?resamples=0").content.decode()
    snapshot = ReportSnapshot.objects.get(study=paper_study)
    assert snapshot.status == JobStatus.QUEUED and snapshot.requested_by == researcher
    assert len(callbacks) == 1  # the Celery task, sent on commit
    assert '<progress id="report-progress-bar"' in html and "waiting for a worker" in html
    status_url = reverse("study-report-status", kwargs={"slug": "paper", "snapshot_id": snapshot.pk})
    assert f'data-status-url="{status_url}"' in html
    assert client.get(status_url).json() == {"status": "queued", "progress": 0.0, "error": ""}
    # Neither the poll nor a download starts another computation.
    download = page(client, researcher, "study-report-download", file_format="csv", query="?resamples=0")
    assert download.status_code == 302 and ReportSnapshot.objects.count() == 1


def test_past_the_limit_the_page_says_so_and_queues_nothing(client, researcher, paper_study, settings):
    settings.REPORT_MAX_ACTIVE_PER_USER = 1
    page(client, researcher, "study-report", query="?resamples=0&seed=1")
    html = page(client, researcher, "study-report", query="?resamples=0&seed=2").content.decode()
    assert "You already have 1 report being computed" in html and "report-progress-bar" not in html
    assert ReportSnapshot.objects.count() == 1
    api = client.get(reverse("api-study-report", kwargs={"slug": "paper"}) + "?resamples=0&seed=3")
    assert api.status_code == 429 and "being computed" in api.json()["error"]["message"]


def test_another_researcher_cannot_poll_a_snapshot(client, researcher, other_researcher, paper_study):
    snapshot = ReportSnapshot.objects.create(study=paper_study, fingerprint="x")
    url = reverse("study-report-status", kwargs={"slug": "paper", "snapshot_id": snapshot.pk})
    client.force_login(other_researcher)
    assert client.get(url).status_code == 404


def test_the_page_shows_the_research_table_and_charts(client, researcher, imported_paper_study):
    computed(imported_paper_study, "?resamples=20")
    response = page(client, researcher, "study-report", query="?resamples=20&baseline=base")
    assert response.status_code == 200
    html = response.content.decode()
    for criterion, title, shares in (
        ("empathy", "Empathy", (85, 6, 9)),
        ("safety", "Safety", (56, 32, 12)),
        ("overall", "Overall preference", (64, 27, 9)),
    ):
        cells = "".join(f'<td class="num">{share}</td>' for share in shares)
        compact = re.sub(r">\s+<", "><", html)
        assert f'data-criterion="{criterion}"><th scope="row">{title}</th><td>new vs base</td>{cells}' in compact
    assert html.count('<svg class="chart heatmap"') == 3
    # Win rates per criterion, and position bias per criterion and pooled: a chart, or the reason there is none.
    assert html.count('class="chart interval-chart"') + html.count("No position bias to show") == 3 * 2 + 1
    assert html.count('class="chart mpl-chart"') == 2  # the summary's forest plot and win-rate chart
    assert 'judge-label" x=' in html and JUDGE in html  # the judge is in the heatmap
    assert "half-line" in html and "whisker" in html
    assert "Computed <time" in html and "Download CSV" in html and "Download PDF" in html
    assert 'style="' not in html  # CSP: no inline style attributes
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # and no inline scripts


def test_the_printable_view_has_the_report_without_the_filters(client, researcher, paper_study):
    computed(paper_study, "?resamples=20")
    response = page(client, researcher, "study-report-print", query="?resamples=20")
    html = response.content.decode()
    assert response.status_code == 200
    assert "criterion-empathy" in html and "report-filters" not in html


def test_downloads_carry_the_filters(client, researcher, paper_study):
    computed(paper_study, "?resamples=20&criterion=safety")
    computed(paper_study, "?resamples=20")
    csv_response = page(
        client, researcher, "study-report-download", file_format="csv", query="?resamples=20&criterion=safety"
    )
    assert csv_response.status_code == 200
    assert csv_response["Content-Disposition"].startswith('attachment; filename="paper-report-')
    lines = csv_response.content.decode().splitlines()
    assert lines[0].startswith("criterion,section,statistic") and {line.split(",")[0] for line in lines[1:]} == {
        "safety"
    }
    json_response = page(client, researcher, "study-report-download", file_format="json", query="?resamples=20")
    document = json.loads(json_response.content)
    assert document["status"] == "succeeded" and set(document["report"]["criteria"]) == {"empathy", "safety", "overall"}


def test_the_api_answers_the_document_and_202_while_computing(client, researcher, paper_study):
    client.force_login(researcher)
    url = reverse("api-study-report", kwargs={"slug": "paper"})
    computed(paper_study, "?resamples=20")
    response = client.get(url + "?resamples=20")
    assert response.status_code == 200 and response.json()["report"]["schema_version"] == REPORT_SCHEMA_VERSION
    queued = client.get(url + "?resamples=30")  # new parameters: queued for a worker
    assert queued.status_code == 202
    assert queued.json()["status"] == JobStatus.QUEUED and queued.json()["report"] is None
    bad = client.get(url + "?from=yesterday&min_gold_accuracy=2")
    assert bad.status_code == 400 and set(bad.json()["error"]["details"]) == {"from", "min_gold_accuracy"}


def test_the_page_shows_a_progress_bar_while_computing(client, researcher, paper_study):
    response = page(client, researcher, "study-report", query="?resamples=20")
    html = response.content.decode()
    assert '<progress id="report-progress-bar"' in html
    assert 'data-status-url="/studies/paper/reports/status/' in html
    assert "js/reports.js" in html
    # Meanwhile the last report with the same parameters is shown, marked as earlier.
    snapshot = ReportSnapshot.objects.get(study=paper_study)
    ReportSnapshot.objects.filter(pk=snapshot.pk).update(fingerprint="older-data")
    from annotations.services.reports import report_snapshot_compute

    report_snapshot_compute(snapshot_id=snapshot.pk)
    html = page(client, researcher, "study-report", query="?resamples=20").content.decode()
    assert "Last report, for earlier data" in html and '<progress id="report-progress-bar"' in html


NAMES = [
    ("study-report", {}),
    ("study-report-print", {}),
    ("study-report-download", {"file_format": "csv"}),
    ("study-report-download", {"file_format": "json"}),
]
API_NAMES = ["api-study-report", "api-study-report-csv"]


def test_other_researchers_and_clinicians_get_404(client, paper_study, other_researcher, clinician, other_clinician):
    # `clinician` is a member of the study: rating in it must never open its reports.
    for user in (other_researcher, clinician, other_clinician):
        for name, kwargs in NAMES:
            assert page(client, user, name, query="?resamples=0", **kwargs).status_code == 404, (user, name)
        for name in API_NAMES:
            assert page(client, user, name, query="?resamples=0").status_code == 404, (user, name)
    assert not ReportSnapshot.objects.exists()  # nothing was computed for them


def test_anonymous_users_are_sent_to_log_in(client, paper_study):
    assert client.get(reverse("study-report", kwargs={"slug": "paper"})).status_code == 302
    assert client.get(reverse("api-study-report", kwargs={"slug": "paper"})).status_code == 401
