"""The raw data download: one row per rating and judgment, equal to the database, streamed, audited once per
download, formula-safe in CSV, the same through the page, the API and the command."""

import csv
import io

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.models import AuditEvent, Judgment, Rating
from annotations.selectors_items import RAW_COLUMNS
from tests.items.builders import build_item_study

pytestmark = pytest.mark.django_db

N = 700  # enough rows (2,800 ratings, 1,400 judgments) for several chunks


@pytest.fixture
def items(researcher):
    return build_item_study(owner=researcher, n_comparisons=N, rationale='=HYPERLINK("http://x")')


def _expected(study) -> set[tuple]:
    ratings = {
        (
            r.assignment.comparison_id,
            r.assignment.rater.label,
            r.assignment.rater.kind,
            r.criterion.key,
            r.value,
            {None: "", True: "first_left", False: "first_right"}[r.assignment.left_is_first],
        )
        for r in Rating.objects.filter(assignment__study=study, assignment__status="submitted").select_related(
            "assignment__rater", "criterion"
        )
    }
    judgments = {
        (j.comparison_id, j.judge.rater.label, "judge", j.criterion.key, j.value, "")
        for j in Judgment.objects.filter(comparison__study=study).select_related("judge__rater", "criterion")
    }
    return ratings | judgments


def _key(row: dict) -> tuple:
    return (
        int(row["comparison_id"]),
        row["rater"],
        row["rater_kind"],
        row["criterion"],
        int(row["value"]),
        row["displayed_side"] or "",
    )


def _download(client, name, slug, file_format) -> tuple[bytes, int]:
    response = client.get(reverse(name, args=[slug, file_format]))
    assert response.status_code == 200
    assert response.streaming
    chunks = list(response.streaming_content)
    return b"".join(chunks), len(chunks)


def test_the_csv_rows_equal_the_ratings_and_judgments_in_the_database(items, client, researcher):
    client.force_login(researcher)
    body, chunks = _download(client, "study-raw-data", items.study.slug, "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert tuple(rows[0]) == RAW_COLUMNS
    assert len(rows) == N * 2 * 2 + N * 2
    assert {_key(row) for row in rows} == _expected(items.study)
    assert chunks > 2  # written as it is read, not built whole
    clinician = next(r for r in rows if r["rater_kind"] == "clinician")
    assert clinician["system_first"] and clinician["prompt_id"].startswith("p") and clinician["rubric_version"] == "1"


def test_the_csv_guards_text_that_would_run_as_a_spreadsheet_formula(items, client, researcher):
    client.force_login(researcher)
    body, _ = _download(client, "study-raw-data", items.study.slug, "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    clinician_rows = [r for r in rows if r["rater_kind"] == "clinician"]
    assert {r["pair_rationale"] for r in clinician_rows} == {'\'=HYPERLINK("http://x")'}
    assert {r["value"] for r in rows} == {"-1", "0", "1"}  # numbers stay numbers


def test_the_parquet_rows_equal_the_database_with_typed_columns(items, client, researcher):
    client.force_login(researcher)
    body, _ = _download(client, "study-raw-data", items.study.slug, "parquet")
    table = pq.read_table(io.BytesIO(body))
    assert table.column_names == list(RAW_COLUMNS)
    assert str(table.schema.field("value").type) == "int16"
    rows = table.to_pylist()
    assert {_key(row) for row in rows} == _expected(items.study)
    assert len(rows) == N * 6


def test_every_download_is_audited_once(items, client, researcher):
    client.force_login(researcher)
    _download(client, "study-raw-data", items.study.slug, "csv")
    _download(client, "api-study-raw-data", items.study.slug, "parquet")
    events = AuditEvent.objects.filter(action__startswith="download.raw_").order_by("id")
    assert [(e.action, e.data["via"], e.actor_id) for e in events] == [
        ("download.raw_csv", "page", researcher.pk),
        ("download.raw_parquet", "api", researcher.pk),
    ]


def test_the_download_costs_the_same_queries_at_50_and_500_comparisons(client, researcher):
    small = build_item_study(owner=researcher, n_comparisons=50, slug="small")
    large = build_item_study(owner=researcher, n_comparisons=500, slug="large")
    client.force_login(researcher)
    client.get(reverse("study-items", args=[small.study.slug]))
    counts = []
    for built in (small, large):
        with CaptureQueriesContext(connection) as queries:
            _download(client, "study-raw-data", built.study.slug, "csv")
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_command_writes_the_same_table_and_is_audited(items, tmp_path):
    out = tmp_path / "raw.parquet"
    call_command("raw_data", study=items.study.slug, format="parquet", out=str(out))
    rows = pq.read_table(out).to_pylist()
    assert {_key(row) for row in rows} == _expected(items.study)
    event = AuditEvent.objects.get(action="download.raw_parquet")
    assert event.actor_id is None and event.data == {"via": "command"}


def test_an_unknown_format_is_not_found(items, client, researcher):
    client.force_login(researcher)
    assert client.get(reverse("study-raw-data", args=[items.study.slug, "xlsx"])).status_code == 404
    assert not AuditEvent.objects.filter(action__startswith="download.raw_").exists()
