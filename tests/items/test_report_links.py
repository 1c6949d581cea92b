"""From the report's numbers to the items behind them: a head-to-head row opens its pair's comparisons, a
criterion's reliability row opens its most disputed items, and the explorer takes the report's names."""

import re
from html import unescape

import pytest
from django.http import QueryDict
from django.urls import reverse

from annotations.services.reports import report_params_from_query, report_request
from tests.items.builders import build_item_study, is_disputed
from tests.reports.conftest import paper_study  # noqa: F401 - the research's table, as a fixture

pytestmark = pytest.mark.django_db


def _report_html(client, researcher, study) -> str:
    report_request(study=study, params=report_params_from_query(QueryDict("resamples=0")), inline=True)
    client.force_login(researcher)
    response = client.get(reverse("study-report", args=[study.slug]) + "?resamples=0")
    assert response.status_code == 200
    return response.content.decode()


def _items_links(html: str, study) -> list[str]:
    prefix = reverse("study-items", args=[study.slug])
    return [unescape(href) for href in re.findall(r'href="([^"]+)"', html) if href.startswith(prefix)]


def test_a_head_to_head_row_opens_the_comparisons_of_its_pair(client, researcher, paper_study):  # noqa: F811
    links = _items_links(_report_html(client, researcher, paper_study), paper_study)
    pair_link = next(link for link in links if link.count("system=") == 2 and "criterion=empathy" in link)
    response = client.get(pair_link)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span id="item-count">100 comparisons</span>' in html
    assert "systems base vs new" in html


def test_a_reliability_row_opens_its_most_disputed_items(client, researcher, paper_study):  # noqa: F811
    html = _report_html(client, researcher, paper_study)
    assert "Items behind the report" in html
    disputed_link = next(link for link in _items_links(html, paper_study) if "criterion=safety" in link)
    response = client.get(disputed_link)
    assert response.status_code == 200
    page = response.content.decode()
    count = int(re.search(r'id="item-count">(\d+) comparison', page).group(1))
    assert 0 < count < 100
    assert page.count('class="badge disputed"') == min(count, 25)


def test_the_explorer_takes_rater_labels_and_system_names_as_the_report_writes_them(client, researcher):
    built = build_item_study(owner=researcher, n_comparisons=40)
    client.force_login(researcher)
    url = reverse("api-study-items", args=[built.study.slug])
    by_name = client.get(url, {"system": ["third", "base"], "limit": 100}).json()
    assert by_name["count"] == len([i for i in range(40) if i % 3 == 1])
    both = client.get(
        url, {"rater_label": ["items-clinician", "items-external (external)"], "disagreement": 1, "limit": 100}
    ).json()
    assert both["count"] == len([i for i in range(40) if is_disputed(i)])
    assert client.get(url, {"rater_label": "nobody"}).json()["count"] == 0
