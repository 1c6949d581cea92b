"""Marked passages (spans): who may mark what, offsets checked against the text, blinded answers, survival across
reload and revision, the pair page in one query, the API, the researcher's views and the raw download."""

import csv
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.models import Assignment, AuditEvent, Span, Study, StudyMembership, System
from annotations.selectors_spans import pair_spans, side_response_ids
from tests.workspace.conftest import SYSTEM_NAMES, build_study

pytestmark = pytest.mark.django_db
KEYS = ("empathy", "safety", "overall")


def open_pair(client, study, user) -> Assignment:
    client.force_login(user)
    response = client.post(reverse("workspace-next", args=[study.slug]))
    assert response.status_code == 302
    return Assignment.objects.get(rater__user=user, status=Assignment.Status.LEASED)


def side_text(assignment: Assignment, side: int) -> str:
    left_id, right_id = side_response_ids(assignment)
    from annotations.models import Response

    return Response.objects.get(pk=left_id if side == 1 else right_id).content


def mark(client, assignment, **fields):
    return client.post(
        reverse("workspace-span-create", args=[assignment.public_id]), fields, HTTP_ACCEPT="application/json"
    )


def test_a_clinician_marks_a_passage_of_response_2_and_the_answer_names_only_the_side(client, ws_study, clinician):
    assignment = open_pair(client, ws_study, clinician)
    text = side_text(assignment, 2)
    start = text.index("it makes sense")
    end = start + len("it makes sense")
    response = mark(
        client, assignment, side=2, start=start, end=end, label="unsafe", note="Minimises", quote=text[start:end]
    )
    assert response.status_code == 201
    body = response.json()
    assert body["span"] == {
        "id": body["span"]["id"],
        "side": 2,
        "start": start,
        "end": end,
        "label": "unsafe",
        "note": "Minimises",
        "quote": "it makes sense",
    }
    span = Span.objects.get()
    _, right_id = side_response_ids(assignment)
    assert (span.response_id, span.assignment_id, span.quote) == (right_id, assignment.pk, "it makes sense")
    text_of_answer = response.content.decode()
    assert not any(name in text_of_answer for name in SYSTEM_NAMES)
    assert str(span.response_id) not in json.dumps({k: v for k, v in body["span"].items() if k != "id"})
    event = AuditEvent.objects.get(action="span.create")
    assert event.data["side"] == 2 and event.data["label"] == "unsafe"

    # The same passage with the same label again (a double click) keeps one span.
    again = mark(client, assignment, side=2, start=start, end=end, label="unsafe")
    assert again.status_code == 200 and again.json()["created"] is False
    assert Span.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"side": 3, "start": 0, "end": 5, "label": "unsafe"}, "side"),
        ({"side": 1, "start": "x", "end": 5, "label": "unsafe"}, "start"),
        ({"side": 1, "start": 5, "end": 5, "label": "unsafe"}, "end"),
        ({"side": 1, "start": 0, "end": 100000, "label": "unsafe"}, "end"),
        ({"side": 1, "start": -1, "end": 4, "label": "unsafe"}, "start"),
        ({"side": 1, "start": 0, "end": 5, "label": "kind"}, "label"),
        ({"side": 1, "start": 0, "end": 5, "label": "unsafe", "quote": "nope!"}, "quote"),
        ({"side": 1, "start": 0, "end": 5, "label": "unsafe", "note": "n" * 2001}, "note"),
    ],
)
def test_bad_offsets_labels_and_quotes_are_refused_naming_the_field(client, ws_study, clinician, fields, field):
    assignment = open_pair(client, ws_study, clinician)
    response = mark(client, assignment, **fields)
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert Span.objects.count() == 0


def test_white_space_alone_cannot_be_marked(client, ws_study, clinician):
    assignment = open_pair(client, ws_study, clinician)
    text = side_text(assignment, 1)
    space = text.index(" ")
    response = mark(client, assignment, side=1, start=space, end=space + 1, label="unsafe")
    assert response.status_code == 400 and "start" in response.json()["errors"]


def test_spans_survive_reload_and_revision_and_load_in_one_query(client, ws_study, clinician):
    ws_study.span_labels = ["unsafe", "validating"]
    ws_study.save(update_fields=["span_labels"])
    assignment = open_pair(client, ws_study, clinician)
    text = side_text(assignment, 1)
    mark(client, assignment, side=1, start=0, end=10, label="validating", note="warm opening")
    page = client.get(reverse("workspace-pair", args=[assignment.public_id]))
    html = page.content.decode()
    assert "1 marked passage" in html and "warm opening" in html
    assert "<dt><kbd>m</kbd></dt><dd>While reading a response" in html  # listed among the keyboard shortcuts
    state = json.loads(html.split('id="spans-state" type="application/json">')[1].split("</script>")[0])
    assert state["spans"][0]["side"] == 1 and state["spans"][0]["quote"] == text[:10]
    assert state["labels"] == ["unsafe", "validating"]
    assert state["texts"][0] == text

    # Submit, then revise: the span stays and can still be changed.
    values = {f"v_{k}": "-1" for k in KEYS}
    client.post(reverse("workspace-submit", args=[assignment.public_id]), {**values, "mode": "submit"})
    client.post(
        reverse("workspace-submit", args=[assignment.public_id]), {**{f"v_{k}": "1" for k in KEYS}, "mode": "revise"}
    )
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED
    assert Span.objects.filter(assignment=assignment).count() == 1
    revise_page = client.get(reverse("workspace-pair", args=[assignment.public_id])).content.decode()
    assert "warm opening" in revise_page
    assert mark(client, assignment, side=2, start=0, end=5, label="unsafe").status_code == 201

    assignment = Assignment.objects.select_related(
        "study", "comparison__response_first", "comparison__response_second"
    ).get(pk=assignment.pk)
    with CaptureQueriesContext(connection) as queries:
        data = pair_spans(assignment=assignment)
    assert len(queries) == 1
    assert [s["side"] for s in data["client"]["spans"]] == [1, 2]


def test_removing_a_span_by_form_and_other_raters_spans_are_not_found(
    client, ws_study, clinician, other_clinician, django_user_model
):
    assignment = open_pair(client, ws_study, clinician)
    created = mark(client, assignment, side=1, start=0, end=5, label="unsafe").json()["span"]
    # Another clinician of the study cannot reach the pair (404), nor remove the span through their own pair.
    StudyMembership.objects.create(study=ws_study, user=other_clinician, role=StudyMembership.Role.CLINICIAN)
    client.force_login(other_clinician)
    assert mark(client, assignment, side=1, start=0, end=5, label="unsafe").status_code == 404
    theirs = open_pair(client, ws_study, other_clinician)
    refused = client.post(reverse("workspace-span-delete", args=[theirs.public_id, created["id"]]))
    assert refused.status_code == 404
    assert Span.objects.count() == 1

    client.force_login(clinician)
    removed = client.post(reverse("workspace-span-delete", args=[assignment.public_id, created["id"]]))
    assert removed.status_code == 302 and Span.objects.count() == 0
    assert AuditEvent.objects.filter(action="span.delete").count() == 1


def test_no_spans_on_a_skipped_pair_or_in_a_closed_study(client, ws_study, clinician):
    assignment = open_pair(client, ws_study, clinician)
    client.post(reverse("workspace-skip", args=[assignment.public_id]), {"skip_reason": "Not my area"})
    refused = mark(client, assignment, side=1, start=0, end=5, label="unsafe")
    assert refused.status_code == 400 and "take it back" in json.dumps(refused.json())
    Study.objects.filter(pk=ws_study.pk).update(status=Study.Status.CLOSED)
    other = Assignment.objects.filter(rater__user=clinician).exclude(pk=assignment.pk).first()
    if other is not None:
        assert mark(client, other, side=1, start=0, end=5, label="unsafe").status_code == 400
    assert Span.objects.count() == 0


def test_the_api_lists_creates_and_deletes_spans_blinded(client, ws_study, clinician, researcher):
    assignment = open_pair(client, ws_study, clinician)
    url = reverse("api-workspace-spans", args=[assignment.public_id])
    text = side_text(assignment, 1)
    created = client.post(
        url, {"side": 1, "start": 0, "end": 8, "label": "unsafe", "quote": text[:8]}, content_type="application/json"
    )
    assert created.status_code == 201, created.content
    listed = client.get(url).json()
    assert listed["labels"] == ["unsafe"]
    assert listed["spans"] == [created.json()["span"]]
    assert not any(name in json.dumps(listed) for name in SYSTEM_NAMES)
    bad = client.post(url, {"side": 1, "start": 4, "end": 2, "label": "unsafe"}, content_type="application/json")
    assert bad.status_code == 400 and "end" in bad.json()["error"]["details"]
    span_id = created.json()["span"]["id"]
    detail = reverse("api-workspace-span-detail", args=[assignment.public_id, span_id])
    client.force_login(researcher)
    assert client.get(url).status_code == 404
    assert client.delete(detail).status_code == 404
    client.force_login(clinician)
    assert client.delete(detail).status_code == 204
    assert client.delete(detail).status_code == 404
    client.logout()
    assert client.get(url).status_code == 401


def _spanned_submitted_pair(client, study, clinician) -> Assignment:
    assignment = open_pair(client, study, clinician)
    mark(client, assignment, side=1, start=0, end=12, label="unsafe", note="crosses a line")
    client.post(
        reverse("workspace-submit", args=[assignment.public_id]), {**{f"v_{k}": "-1" for k in KEYS}, "mode": "submit"}
    )
    return assignment


def test_researchers_see_spans_in_the_item_explorer_page_and_api(client, ws_study, clinician, researcher):
    assignment = _spanned_submitted_pair(client, ws_study, clinician)
    span = Span.objects.get()
    system = System.objects.get(responses__pk=span.response_id)
    client.force_login(researcher)
    page = client.get(reverse("study-items", args=[ws_study.slug]))
    html = page.content.decode()
    assert "crosses a line" in html and "Marked passages" in html
    api = client.get(reverse("api-study-items", args=[ws_study.slug])).json()
    item = next(i for i in api["results"] if i["comparison_id"] == assignment.comparison_id)
    assert item["spans"][0]["system"] == system.name
    assert item["spans"][0]["quote"] == span.quote and item["spans"][0]["label"] == "unsafe"


def test_the_raw_spans_download_is_one_row_per_span_with_its_system(client, ws_study, clinician, researcher):
    _spanned_submitted_pair(client, ws_study, clinician)
    span = Span.objects.select_related("response__system").get()
    client.force_login(researcher)
    response = client.get(reverse("study-raw-data", args=[ws_study.slug, "csv"]), {"kind": "spans"})
    assert response.status_code == 200
    assert "spans" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["system"] == span.response.system.name
    assert (int(row["start"]), int(row["end"]), row["label"], row["quote"]) == (
        span.start,
        span.end,
        "unsafe",
        span.quote,
    )
    assert row["displayed_side"] == "left" and row["note"] == "crosses a line"
    parquet = client.get(reverse("api-study-raw-data", args=[ws_study.slug, "parquet"]), {"kind": "spans"})
    assert parquet.status_code == 200
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    assert table.num_rows == 1 and table.column("start").to_pylist() == [span.start]
    assert client.get(reverse("study-raw-data", args=[ws_study.slug, "csv"]), {"kind": "nope"}).status_code == 400


def test_spans_are_not_shown_to_anyone_on_another_study(client, researcher, other_researcher, clinician):
    study = build_study(owner=researcher, slug="spans-s")
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    _spanned_submitted_pair(client, study, clinician)
    client.force_login(other_researcher)
    assert client.get(reverse("study-raw-data", args=[study.slug, "csv"]), {"kind": "spans"}).status_code == 404


def test_the_raw_data_command_writes_the_spans(client, ws_study, clinician, tmp_path):
    _spanned_submitted_pair(client, ws_study, clinician)
    out = tmp_path / "spans.csv"
    call_command("raw_data", "--study", ws_study.slug, "--kind", "spans", "--out", str(out), stderr=io.StringIO())
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["note"] for row in rows] == ["crosses a line"]
    assert AuditEvent.objects.filter(action="download.spans_csv").count() == 1
