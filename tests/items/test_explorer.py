"""The item explorer: filters and sorting pick the right comparisons, the page shows systems and every rating,
and a page costs the same number of queries whatever the study's size."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.selectors_items import item_filters_from_query, items_for_study
from tests.items.builders import CRITERIA, PAIRS, build_item_study, clinician_value, is_disputed

pytestmark = pytest.mark.django_db

N = 60


@pytest.fixture
def items(researcher):
    return build_item_study(owner=researcher, n_comparisons=N)


def _indices(items, **query) -> list[int]:
    from django.http import QueryDict

    q = QueryDict(mutable=True)
    for key, value in query.items():
        q.setlist(key, value if isinstance(value, list) else [str(value)])
    index_of = {c.pk: i for i, c in enumerate(items.comparisons)}
    found = items_for_study(study=items.study, filters=item_filters_from_query(q))
    return [index_of[pk] for pk in found.values_list("pk", flat=True)]


def test_with_no_filter_it_lists_every_comparison_in_study_order(items):
    assert _indices(items) == list(range(N))


def test_the_disagreement_filter_keeps_exactly_the_disputed_items(items):
    assert _indices(items, disagreement=1) == [i for i in range(N) if is_disputed(i)]


def test_sorting_by_disagreement_puts_both_sides_disputes_first(items):
    order = _indices(items, sort="disagreement")
    disputed = [i for i in range(N) if is_disputed(i)]
    assert sorted(order[: len(disputed)]) == disputed
    assert order[: len(disputed)] == disputed  # ties broken by study order
    assert sorted(order) == list(range(N))


def test_the_flagged_skipped_and_gold_filters_keep_their_items(items):
    assert _indices(items, flagged=1) == [i for i in range(N) if i % 10 == 0]
    assert _indices(items, skipped=1) == [i for i in range(N) if i % 7 == 0]
    assert _indices(items, gold=1) == [i for i in range(N) if i % 20 == 0]
    assert _indices(items, gold=1, flagged=1) == [i for i in range(N) if i % 20 == 0]


def test_the_system_pair_filter_matches_the_pair_in_either_order(items):
    base, third = items.systems["base"].pk, items.systems["third"].pk
    expected = [i for i in range(N) if PAIRS[i % 3] == ("base", "third")]
    assert _indices(items, systems=f"{base}-{third}") == expected
    assert _indices(items, systems=f"{third}-{base}") == expected


def test_the_rater_filter_keeps_items_every_selected_rater_rated(items):
    assert _indices(items, rater=[str(items.skipper.pk)]) == []  # skipping is not rating
    both = _indices(items, rater=[str(items.clinician.pk), str(items.judge.rater_id)])
    assert both == list(range(N))


def test_the_criterion_filter_scores_disagreement_on_that_criterion_only(items, researcher):
    from annotations.models import Rating

    # On safety only, the external rater now agrees with the clinician on item 0 (where V=-1, a dispute).
    Rating.objects.filter(
        assignment__comparison=items.comparisons[0], assignment__rater=items.external, criterion__key="safety"
    ).update(value=clinician_value(0))
    assert 0 not in _indices(items, disagreement=1, criterion="safety")
    assert 0 in _indices(items, disagreement=1, criterion="empathy")


def test_a_bad_filter_is_answered_in_words(items, client, researcher):
    client.force_login(researcher)
    response = client.get(reverse("study-items", args=[items.study.slug]), {"systems": "base", "sort": "x"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "Give a system pair as two system ids" in text and "Sort by one of" in text
    assert "{'" not in text and "[&#x27;" not in text


def test_the_page_shows_prompt_responses_systems_and_every_rating(items, client, researcher):
    client.force_login(researcher)
    response = client.get(reverse("study-items", args=[items.study.slug]), {"flagged": 1, "criterion": "safety"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "Scenario 0: I have felt low for weeks." in text
    assert "First: base" in text and "Second: new" in text
    assert "Reply 0 from base." in text and "Reply 0 from new." in text
    assert "items-clinician" in text and "items-external" in text and "items-judge" in text
    assert "both unacceptable" in text and "Outside my expertise" in text
    articles = text.split("<article")[1:]
    assert all("<td>Empathy <span" not in a and "<td>Safety <span" in a for a in articles)  # safety rows only
    assert f"{N // 10} comparisons" in text


def _page_queries(client, url, **query) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, query)
    assert response.status_code == 200
    return len(queries)


def test_a_page_costs_the_same_queries_at_50_and_500_comparisons(client, researcher):
    small = build_item_study(owner=researcher, n_comparisons=50, slug="small")
    large = build_item_study(owner=researcher, n_comparisons=500, slug="large")
    client.force_login(researcher)
    client.get(reverse("study-items", args=[small.study.slug]))  # the session's first request does extra work
    for query in ({}, {"sort": "disagreement", "disagreement": "1"}, {"flagged": "1", "criterion": "empathy"}):
        counts = []
        for built in (small, large):
            counts.append(_page_queries(client, reverse("study-items", args=[built.study.slug]), **query))
            counts.append(_page_queries(client, reverse("api-study-items", args=[built.study.slug]), **query))
        assert counts[0] == counts[2] and counts[1] == counts[3], (query, counts)
        assert max(counts) <= 25


def test_the_api_lists_items_with_systems_and_ratings(items, client, researcher):
    client.force_login(researcher)
    response = client.get(reverse("api-study-items", args=[items.study.slug]), {"gold": "1", "limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == N // 20
    first = body["results"][0]
    assert first["system_first"] == "base" and first["system_second"] == "new"
    assert {(r["rater_kind"], r["criterion"]) for r in first["ratings"]} == {
        (kind, key) for kind in ("clinician", "external", "judge") for key in CRITERIA
    }
    assert first["not_rated"] == [
        {"rater": "items-skipper", "rater_kind": "external", "status": "skipped", "reason": "Outside my expertise"}
    ]


def test_the_api_rejects_a_bad_filter_with_a_field_error(items, client, researcher):
    client.force_login(researcher)
    response = client.get(reverse("api-study-items", args=[items.study.slug]), {"rater": "carol"})
    assert response.status_code == 400
    assert "rater" in str(response.json())
