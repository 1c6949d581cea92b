"""The explorer's first page and the raw download at 50,000 comparisons (built with bulk inserts): medians are
printed, and the page's queries stay those of a small study. A benchmark, not part of `make test`:

    .venv/bin/pytest bench/items_scale.py -s -p no:cacheprovider

(PostgreSQL and Redis as for `make test`; the test database is made and dropped by pytest-django.)"""

import statistics
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.models import Profile
from tests.conftest import make_user
from tests.items.builders import build_item_study

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

N = 50_000


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_the_first_page_and_the_raw_download_at_50000_comparisons(client, django_user_model):
    researcher = make_user(django_user_model, "alice", Profile.Role.RESEARCHER)
    start = time.perf_counter()
    built = build_item_study(owner=researcher, n_comparisons=N, slug="large")
    print(f"\nbuilt {N} comparisons, {N * 6} ratings and judgments in {time.perf_counter() - start:.1f} s")
    client.force_login(researcher)
    items_url = reverse("study-items", args=[built.study.slug])
    client.get(items_url)

    figures = {}
    for name, query in (
        ("first page", {}),
        ("first page, most disputed first", {"sort": "disagreement"}),
        ("first page, flagged on safety", {"flagged": "1", "criterion": "safety"}),
    ):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(items_url, query).status_code == 200
        figures[name] = (_median_seconds(lambda q=query: client.get(items_url, q), 5), len(queries))
    api_url = reverse("api-study-items", args=[built.study.slug])
    figures["API first page"] = (_median_seconds(lambda: client.get(api_url, {"limit": 25}), 5), None)

    def download(file_format: str) -> None:
        response = client.get(reverse("study-raw-data", args=[built.study.slug, file_format]))
        size = sum(len(chunk) for chunk in response.streaming_content)
        assert size > 0

    for file_format in ("csv", "parquet"):
        figures[f"raw {file_format} ({N * 6} rows)"] = (_median_seconds(lambda f=file_format: download(f), 3), None)
    for name, (seconds, n_queries) in figures.items():
        print(f"{name}: median {seconds * 1000:.0f} ms" + (f", {n_queries} queries" if n_queries else ""))
    assert all(n <= 25 for _, n in figures.values() if n)
