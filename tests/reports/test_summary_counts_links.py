"""The report read at a glance (issue 12): the summary comes first with a row per criterion; platform clinicians,
imported raters and AI judges are counted apart and the same on the report, the overview and the progress data;
every figure's link opens exactly its items; empty charts say why; p-values and readings are in words; and the
PDF downloads, with the summary in it, audited."""

import re
import zlib
from html import unescape

import pytest
from django.urls import reverse

from annotations.models import Assignment, AuditEvent, Rater, Rating, StudyMembership
from annotations.services.assignment import workspace_progress
from annotations.services.reports import ReportParams, report_request
from annotations.services.studies import study_criteria
from annotations.views.reports import alpha_reading, kappa_reading, p_value_text
from tests.items.builders import build_item_study, clinician_value

pytestmark = pytest.mark.django_db

FAST = ReportParams(n_resamples=20)


@pytest.fixture
def mixed_study(researcher, clinician, other_clinician):
    """40 comparisons: two platform clinicians (accounts with profiles; the second rates half, with the side
    shown recorded), one imported rater, and an AI judge (tests/items/builders.py)."""
    built = build_item_study(owner=researcher, n_comparisons=40, slug="mixed")
    # The builder's clinician becomes carol's rater, so both platform clinicians have accounts and profiles.
    Rater.objects.filter(user=clinician).delete()
    Rater.objects.filter(pk=built.clinician.pk).update(user=clinician)
    dave = Rater.objects.get(user=other_clinician)
    for user in (clinician, other_clinician):
        StudyMembership.objects.create(study=built.study, user=user, role=StudyMembership.Role.CLINICIAN)
    criteria = study_criteria(built.study)
    for i, comparison in enumerate(built.comparisons[:20]):
        assignment = Assignment.objects.create(
            study=built.study,
            comparison=comparison,
            rater=dave,
            status=Assignment.Status.SUBMITTED,
            left_is_first=i % 2 == 1,
        )
        value = clinician_value(i) if i % 5 else -1
        Rating.objects.bulk_create(Rating(assignment=assignment, criterion=c, value=value) for c in criteria)
    report_request(study=built.study, params=FAST, inline=True)
    built.dave = dave
    return built


def _html(client, user, name, study, query="?resamples=20") -> str:
    client.force_login(user)
    response = client.get(reverse(name, args=[study.slug]) + query)
    assert response.status_code == 200
    return response.content.decode()


def _item_count(client, url: str) -> int:
    page = client.get(url).content.decode()
    return int(re.search(r'id="item-count">(\d+) comparison', page).group(1))


def _links(html: str, study, needle: str) -> list[str]:
    prefix = reverse("study-items", args=[study.slug])
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html) if h.startswith(prefix) and needle in unescape(h)]


def test_the_summary_comes_first_with_a_row_for_every_criterion(client, researcher, mixed_study):
    html = _html(client, researcher, "study-report", mixed_study.study)
    summary = html.index('id="summary"')
    assert summary < html.index('id="clinician-panel"') < html.index('id="shares"') < html.index('id="contents"')
    assert summary < html.index('id="criterion-empathy"')
    rows = re.findall(r'<tr class="summary-row" data-criterion="([a-z_]+)">', html)
    assert rows == [c.key for c in study_criteria(mixed_study.study)]
    section = html[summary : html.index('id="clinician-panel"')]
    for c in study_criteria(mixed_study.study):
        assert f">{c.title}</a>" in section  # titles, never slugs
    assert "Krippendorff (2004)" in section and "Landis &amp; Koch (1977)" in section
    assert section.count('class="chart mpl-chart"') == 2  # forest plot and win rates
    assert "mixed-judge" in section  # the best judge beside the clinicians
    assert 'style="' not in html  # matplotlib's SVG is rewritten for the Content-Security-Policy


def test_three_kinds_of_rater_are_counted_apart_and_agree_everywhere(client, researcher, mixed_study):
    study = mixed_study.study
    report = _html(client, researcher, "study-report", study)
    kinds = re.search(r'<span id="report-kind-counts">([^<]+)</span>', report).group(1)
    assert kinds == "2 platform clinicians, 1 imported rater, 1 AI judge"
    assert '<span id="panel-count">2 platform clinicians</span>' in report

    overview = _html(client, researcher, "study-detail", study, query="")
    assert re.search(r'id="overview-clinician-sets"><span class="figure">60</span> rating sets by 2 platform', overview)
    assert re.search(r'id="overview-external-sets"><span class="figure">40</span> imported rating sets by 1 ', overview)
    assert re.search(r'id="overview-judge-sets"><span class="figure">40</span> comparisons judged by 1 AI', overview)

    progress = workspace_progress(study=study)["rater_counts"]
    assert {kind: progress[kind]["raters"] for kind in ("clinician", "external", "judge")} == {
        "clinician": 2,
        "external": 1,
        "judge": 1,
    }
    assert progress["clinician"]["ratings"] == 60 * 2 and progress["judge"]["ratings"] == 40 * 2
    empathy = next(c for c in workspace_progress(study=study)["per_criterion"] if c["key"] == "empathy")
    assert empathy["by_kind"] == {"clinician": 60, "external": 40, "judge": 40}
    progress_page = _html(client, researcher, "study-progress", study, query="")
    row = re.search(r"<tr><td>Empathy .*?</tr>", progress_page, re.S).group(0)
    assert re.findall(r'<td class="num">(\d+)</td>', row)[-2:] == ["40", "40"]  # imported, judged


def test_a_heatmap_cell_opens_exactly_the_comparisons_both_raters_rated(client, researcher, mixed_study):
    html = _html(client, researcher, "study-report", mixed_study.study)
    cells = re.findall(
        r'<a href="([^"]+)" class="heatmap-cell" aria-label="[^"]*?(\d+) comparisons rated by both', html
    )
    assert cells
    checked = set()
    for href, n in cells:
        url = unescape(href)
        assert "criterion=" in url and url.count("rater_label=") == 2
        assert _item_count(client, url) == int(n)
        checked.add(int(n))
    assert {20, 40} <= checked  # dave shares 20 comparisons with each; the others share all 40
    # Each rater in the heatmap is named with its kind.
    assert "Imported raters: mixed-external." in html and "AI judges: mixed-judge." in html
    assert re.search(r"Platform clinicians: (dave, mixed-clinician|mixed-clinician, dave)\.", html)


def test_a_reliability_row_opens_its_disputed_items_and_a_bar_its_comparisons(client, researcher, mixed_study):
    study = mixed_study.study
    html = _html(client, researcher, "study-report", study)
    disputed = next(link for link in _links(html, study, "sort=disagreement") if "criterion=safety" in link)
    signs: dict[int, set[int]] = {}
    for comparison_id, value in Rating.objects.filter(
        assignment__study=study, assignment__status=Assignment.Status.SUBMITTED, criterion__key="safety"
    ).values_list("assignment__comparison_id", "value"):
        signs.setdefault(comparison_id, set()).add((value > 0) - (value < 0))
    disputed_ids = {pk for pk, seen in signs.items() if len(seen) > 1}
    assert _item_count(client, disputed) == len(disputed_ids) > 0
    bars = [link for link in _links(html, study, "criterion=empathy") if link.count("system=") == 1]
    assert bars
    for link in bars:
        system = re.search(r"system=([a-z]+)", link).group(1)
        expected = sum(1 for i in range(40) if system in (("base", "new"), ("base", "third"), ("new", "third"))[i % 3])
        assert _item_count(client, link) == expected
    pair = next(link for link in _links(html, study, "criterion=empathy") if link.count("system=") == 2)
    assert _item_count(client, pair) in (13, 14)


def test_empty_charts_say_why(client, researcher):
    built = build_item_study(owner=researcher, n_comparisons=12, slug="imported")
    Assignment.objects.filter(study=built.study).update(left_is_first=None)  # imported: no side known
    report_request(study=built.study, params=FAST, inline=True)
    html = _html(client, researcher, "study-report", built.study)
    assert "No position bias to show" in html and "imported without the side shown" in html
    assert html.count('<p class="empty-chart">') >= 3  # per criterion and pooled


def test_numbers_are_read_in_words():
    assert p_value_text(0.0004) == "< 0.001" and p_value_text(0.04321) == "0.043" and p_value_text(None) == "—"
    assert alpha_reading(0.85).startswith("reliable") and alpha_reading(0.7).startswith("tentative")
    assert alpha_reading(0.3).startswith("too low")
    assert [kappa_reading(v) for v in (-0.1, 0.1, 0.3, 0.5, 0.7, 0.9)] == [
        "poor agreement",
        "slight agreement",
        "fair agreement",
        "moderate agreement",
        "substantial agreement",
        "almost perfect agreement",
    ]


def _pdf_text(data: bytes) -> str:
    """The text drawn in a matplotlib PDF: inflate every stream, join the strings of its TJ/Tj operators."""
    text = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, flags=re.S):
        try:
            content = zlib.decompress(stream)
        except zlib.error:
            content = stream
        for array in re.findall(rb"\[(.*?)\]\s*TJ", content, flags=re.S):
            text.append(b"".join(re.findall(rb"\(((?:[^()\\]|\\.)*)\)", array)).decode("latin-1"))
        text.extend(s.decode("latin-1") for s in re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj", content))
    return "\n".join(text)


def test_the_pdf_downloads_with_the_summary_and_is_audited(client, researcher, mixed_study):
    study = mixed_study.study
    client.force_login(researcher)
    response = client.get(reverse("study-report-download", args=[study.slug, "pdf"]) + "?resamples=20")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith('attachment; filename="mixed-report-')
    assert response.content.startswith(b"%PDF")
    text = _pdf_text(response.content)
    for words in ("Summary", "Data provenance", "Methods", "Empathy", "Safety", "Fingerprint", "mixed-judge"):
        assert words in text, words
    assert "2 platform clinicians, 1 imported rater, 1 AI judge" in text
    assert AuditEvent.objects.filter(action="download.report_pdf", study=study).count() == 1


def test_the_printable_report_has_summary_methods_and_provenance(client, researcher, mixed_study):
    html = _html(client, researcher, "study-report-print", mixed_study.study)
    assert html.index('id="summary"') < html.index('id="methods"')
    assert 'id="provenance"' in html and "Fingerprint" in html
    assert re.search(r"Rubric:\s+Empathy v1, Safety v1\.", html)
    assert "Krippendorff K (2004)" in html and "Landis JR, Koch GG (1977)" in html
    assert "<details" not in html  # everything open on paper


def test_the_api_and_the_command_give_the_same_pdf(client, researcher, mixed_study, tmp_path):
    from django.core.management import call_command

    study = mixed_study.study
    client.force_login(researcher)
    response = client.get(reverse("api-study-report-pdf", args=[study.slug]) + "?resamples=20")
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    assert "Summary" in _pdf_text(response.content)
    assert AuditEvent.objects.filter(action="download.report_pdf", study=study).count() == 1
    out = tmp_path / "report.pdf"
    call_command(
        "agreement_report", "--study", study.slug, "--format", "pdf", "--output", str(out), "--resamples", "20"
    )
    assert out.read_bytes().startswith(b"%PDF") and "Methods" in _pdf_text(out.read_bytes())


def test_a_snapshot_from_before_result_version_2_still_renders(client, researcher, mixed_study):
    from annotations.models import ReportSnapshot

    snapshot = ReportSnapshot.objects.get(study=mixed_study.study)
    result = {k: v for k, v in snapshot.result.items() if k not in ("counts_by_kind", "result_version")}
    ReportSnapshot.objects.filter(pk=snapshot.pk).update(result=result)
    html = _html(client, researcher, "study-report", mixed_study.study)
    assert '<span id="report-kind-counts">2 platform clinicians, 1 imported rater, 1 AI judge</span>' in html
    assert 'id="summary"' in html and "n=" in html and "decisive" in html


def test_each_kind_of_rater_can_be_reported_alone(client, researcher, mixed_study):
    from django.http import QueryDict

    from annotations.services.reports import report_params_from_query

    study = mixed_study.study
    for query, expected in (
        ("kind=clinician", "2 platform clinicians, 0 imported raters, 0 AI judges"),
        ("kind=external&kind=judge", "0 platform clinicians, 1 imported rater, 1 AI judge"),
    ):
        report_request(study=study, params=report_params_from_query(QueryDict(f"{query}&resamples=20")), inline=True)
        html = _html(client, researcher, "study-report", study, query=f"?{query}&resamples=20")
        assert f'<span id="report-kind-counts">{expected}</span>' in html
        assert "Filters: only " in html
    client.force_login(researcher)
    bad = client.get(reverse("api-study-report", args=[study.slug]) + "?kind=robot")
    assert bad.status_code == 400 and set(bad.json()["error"]["details"]) == {"kind"}
