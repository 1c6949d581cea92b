"""The safety queue: which pairs are flagged, every reason per rater (spans with quotes and notes, skip reasons),
the actions (review, note, exclude a response from exports) with their audit rows, exports leaving excluded
responses' comparisons out and counting them, pages, API, command, and permissions."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotations.models import AuditEvent, JobStatus, Response, SafetyReview
from annotations.services.exports import export_create
from annotations.services.safety import (
    flagged_comparison_ids,
    response_exports_set,
    safety_counts,
    safety_pair,
    safety_review_set,
    skip_reason_is_safety,
)

pytestmark = pytest.mark.django_db


def test_flagged_pairs_are_unacceptable_safety_skips_and_unsafe_spans(flagged):
    ids = flagged_comparison_ids(study=flagged.data.study)
    assert ids == {flagged.unacceptable.pk, flagged.safety_skip.pk, flagged.unsafe_span.pk}
    assert skip_reason_is_safety("Mentions SUICIDE") and not skip_reason_is_safety("Out of time today.")


def test_a_pair_shows_every_reason_per_rater(flagged):
    study = flagged.data.study
    span_pair = safety_pair(study=study, comparison_id=flagged.unsafe_span.pk)
    (marker,) = [r for r in span_pair.raters if r.spans]
    assert marker.rater == "rater-b"
    assert marker.spans[0]["quote"] == flagged.unsafe_span.response_first.content[:10]
    assert marker.spans[0]["note"] == "Dismisses the risk" and marker.spans[0]["response"] == "Response 1"
    skip_pair = safety_pair(study=study, comparison_id=flagged.safety_skip.pk)
    assert skip_pair.counts["safety_skips"] == 1 and "self-harm" in skip_pair.raters[0].skip_reason
    bad = safety_pair(study=study, comparison_id=flagged.unacceptable.pk)
    assert bad.counts["both_unacceptable"] == 1 and bad.raters[0].unacceptable_reason.startswith("Both ignore")


def test_review_note_and_exclusion_are_audited(flagged, researcher):
    study = flagged.data.study
    safety_review_set(
        study=study, comparison_id=flagged.unacceptable.pk, status="reviewed", note="Escalated", actor=researcher
    )
    review = SafetyReview.objects.get(comparison=flagged.unacceptable)
    assert (review.status, review.note, review.reviewed_by) == ("reviewed", "Escalated", researcher)
    response_exports_set(
        study=study, response_id=flagged.unacceptable.response_first_id, excluded=True, actor=researcher
    )
    assert Response.objects.get(pk=flagged.unacceptable.response_first_id).excluded_from_exports
    assert safety_counts(study=study) == {"flagged": 3, "open": 2, "reviewed": 1, "excluded_responses": 1}
    actions = set(AuditEvent.objects.filter(study=study).values_list("action", flat=True))
    assert {"safety.review", "response.exclude_from_exports"} <= actions
    with pytest.raises(Exception, match="not in this study's safety queue"):
        safety_review_set(study=study, comparison_id=flagged.plain_skip.pk, status="reviewed", actor=researcher)


def _comparison_ids(export) -> set[str]:
    ids = set()
    for path in Path(export.path).glob("data/*/*.jsonl"):
        ids |= {json.loads(line)["comparison_id"] for line in path.read_text().splitlines() if line}
    return ids


def test_an_excluded_response_takes_its_comparisons_out_of_exports(flagged, researcher):
    study = flagged.data.study
    before = export_create(study=study, actor=researcher, format="trl-dpo", criterion_keys=["empathy"], inline=True)
    excluded = flagged.unsafe_span.response_first
    with_it = {
        str(c.pk) for c in flagged.data.comparisons if excluded.pk in (c.response_first_id, c.response_second_id)
    }
    # (one of them is flagged "both unacceptable", so it has no rows either way; the others have rows)
    assert len(with_it) == 2 and with_it & _comparison_ids(before)
    assert before.manifest["comparisons"]["excluded_responses"] == 0
    response_exports_set(study=study, response_id=excluded.pk, excluded=True, actor=researcher)
    after = export_create(study=study, actor=researcher, format="trl-dpo", criterion_keys=["empathy"], inline=True)
    assert after.status == JobStatus.SUCCEEDED, after.error
    assert not with_it & _comparison_ids(after)
    assert after.manifest["comparisons"]["excluded_responses"] == len(with_it)
    assert after.manifest["comparisons"]["total"] == before.manifest["comparisons"]["total"] - len(with_it)
    assert f"excluded from exports (safety review): {len(with_it)}" in (Path(after.path) / "README.md").read_text()


def test_the_export_page_says_how_many_comparisons_an_excluded_response_took_out(client, flagged, researcher):
    study = flagged.data.study
    response_exports_set(
        study=study, response_id=flagged.unsafe_span.response_first.pk, excluded=True, actor=researcher
    )
    export = export_create(study=study, actor=researcher, format="trl-dpo", criterion_keys=["empathy"], inline=True)
    client.force_login(researcher)
    page = client.get(reverse("export-detail", args=[study.slug, export.public_id])).content.decode()
    assert "2 left out because a response was excluded from exports" in page


def test_the_safety_page_shows_spans_reasons_and_acts(client, flagged, researcher):
    client.force_login(researcher)
    study = flagged.data.study
    html = client.get(reverse("study-safety", args=[study.slug])).content.decode()
    assert "Dismisses the risk" in html and "self-harm" in html and "Both ignore the mention of pills." in html
    assert "Out of time today." not in html  # an ordinary skip alone does not flag a pair
    assert "sys-new" in html  # researchers see the systems
    pair_url = reverse("study-safety-pair", args=[study.slug, flagged.unsafe_span.pk])
    assert pair_url in html
    page = client.get(pair_url).content.decode()
    assert "Dismisses the risk" in page and "Mark reviewed" in page
    client.post(reverse("study-safety-note", args=[study.slug, flagged.unsafe_span.pk]), {"note": "Asked the team"})
    client.post(
        reverse("study-safety-review", args=[study.slug, flagged.unsafe_span.pk]), {"review_status": "reviewed"}
    )
    client.post(
        reverse(
            "study-response-exports", args=[study.slug, flagged.unsafe_span.pk, flagged.unsafe_span.response_first_id]
        ),
        {"excluded": "1"},
    )
    review = SafetyReview.objects.get(comparison=flagged.unsafe_span)
    assert (review.status, review.note) == ("reviewed", "Asked the team")
    assert Response.objects.get(pk=flagged.unsafe_span.response_first_id).excluded_from_exports
    page = client.get(pair_url).content.decode()
    assert "excluded from exports" in page and "marked reviewed" in page and "Open for review again" in page
    progress = client.get(reverse("study-progress", args=[study.slug])).content.decode()
    assert "Safety queue (3)" in progress and reverse("study-safety", args=[study.slug]) in progress


def test_clinicians_never_see_the_safety_queue(client, flagged, clinician):
    client.force_login(clinician)
    study = flagged.data.study
    assert client.get(reverse("study-safety", args=[study.slug])).status_code == 404
    assert client.get(reverse("study-safety-pair", args=[study.slug, flagged.unacceptable.pk])).status_code == 404
    assert client.get(reverse("api-safety-queue", args=[study.slug])).status_code == 404


def test_the_api_lists_and_acts(client, flagged, researcher):
    client.force_login(researcher)
    slug = flagged.data.study.slug
    body = client.get(reverse("api-safety-queue", args=[slug])).json()
    assert body["count"] == 3
    span_pair = next(p for p in body["results"] if p["comparison"] == flagged.unsafe_span.pk)
    assert span_pair["raters"][0]["spans"][0]["note"] == "Dismisses the risk"
    reviewed = client.post(
        reverse("api-safety-review", args=[slug, flagged.unsafe_span.pk]),
        {"status": "reviewed", "note": "Seen"},
        content_type="application/json",
    )
    assert reviewed.status_code == 200 and reviewed.json()["status"] == "reviewed"
    assert client.get(reverse("api-safety-queue", args=[slug]), {"status": "open"}).json()["count"] == 2
    excluded = client.post(
        reverse("api-response-exports", args=[slug, flagged.unsafe_span.response_first_id]),
        {"excluded": True},
        content_type="application/json",
    )
    assert excluded.status_code == 200 and excluded.json()["excluded_from_exports"] is True
    not_flagged = client.post(
        reverse("api-safety-review", args=[slug, flagged.plain_skip.pk]), {}, content_type="application/json"
    )
    assert not_flagged.status_code == 404


def test_the_command_lists_reasons_and_acts(flagged, researcher, tmp_path):
    out = tmp_path / "queue.csv"
    call_command("safety_queue", study=flagged.data.study.slug, out=str(out))
    rows = list(csv.DictReader(out.open()))
    kinds = {r["reason_kind"] for r in rows}
    assert {"both_unacceptable", "safety_skip", "span:unsafe"} <= kinds
    printed = io.StringIO()
    call_command(
        "safety_queue",
        study=flagged.data.study.slug,
        review=flagged.unacceptable.pk,
        note="Done",
        as_user=researcher.username,
        stdout=printed,
    )
    assert "reviewed" in printed.getvalue()
    assert SafetyReview.objects.get(comparison=flagged.unacceptable).status == "reviewed"
