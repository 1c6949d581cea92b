"""Disagreement review and adjudication: the export's own 'disputed', decisions with reasons, audit, exports
that use adjudicated labels (counted in the manifest and the dataset card), the report's counts, pages, API,
command, and permissions."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from annotations.exporting import AggregationPolicy, ComparisonRecord, aggregate_comparison
from annotations.exporting.aggregate import VoteCounts, is_disputed
from annotations.models import Adjudication, AuditEvent, JobStatus
from annotations.services.adjudication import (
    adjudication_counts,
    adjudication_decide,
    adjudication_withdraw,
    disputed_items,
    next_unresolved,
)
from annotations.services.exports import export_create

pytestmark = pytest.mark.django_db


def _record(votes, adjudications=(), flagged=False):
    return ComparisonRecord.from_dict(
        {
            "comparison_id": "1",
            "prompt_id": "p",
            "prompt": [{"role": "user", "content": "hi"}],
            "first": {"id": "r1", "content": "a", "system": "s1"},
            "second": {"id": "r2", "content": "b", "system": "s2"},
            "votes": [
                {"criterion": "empathy", "rater": f"r{i}", "is_judge": False, "value": v, "both_unacceptable": flagged}
                for i, v in enumerate(votes)
            ],
            "adjudications": dict(adjudications),
        }
    )


def test_disputed_is_the_majority_rule_without_a_plurality():
    assert is_disputed(VoteCounts(a=1, b=1))
    assert is_disputed(VoteCounts(a=1, tie=1))
    assert not is_disputed(VoteCounts(a=2, b=1))
    assert not is_disputed(VoteCounts(tie=2, a=1))
    assert not is_disputed(VoteCounts())


def test_the_adjudicated_rule_takes_the_decision_and_the_majority_elsewhere():
    adjudicated = AggregationPolicy(decision="adjudicated")
    outcome = aggregate_comparison(
        _record([-1, 1], {"empathy": 1}),
        criteria=["empathy"],
        policy=adjudicated,
        scale_points=3,
        rater_gold_accuracy={},
    )["empathy"]
    assert (outcome.preferred, outcome.adjudicated, outcome.agreement) == ("b", True, 0.5)
    # Without a decision it is the majority rule: disputed, no label.
    plain = aggregate_comparison(
        _record([-1, 1]), criteria=["empathy"], policy=adjudicated, scale_points=3, rater_gold_accuracy={}
    )["empathy"]
    assert (plain.status, plain.preferred, plain.adjudicated) == ("disputed", None, False)
    # Majority ignores decisions; "both unacceptable" outranks a decision.
    majority = aggregate_comparison(
        _record([-1, 1], {"empathy": 1}),
        criteria=["empathy"],
        policy=AggregationPolicy(),
        scale_points=3,
        rater_gold_accuracy={},
    )["empathy"]
    assert majority.status == "disputed"
    flagged = aggregate_comparison(
        _record([-1, 1], {"empathy": 1}, flagged=True),
        criteria=["empathy"],
        policy=adjudicated,
        scale_points=3,
        rater_gold_accuracy={},
    )["empathy"]
    assert flagged.status == "both_unacceptable" and not flagged.adjudicated


def test_disputed_items_are_the_split_comparisons(disputed):
    items = disputed_items(study=disputed.study)
    split = {c.pk for c in disputed.comparisons[:4]}
    assert {i.comparison_id for i in items} == split
    assert {i.criterion.key for i in items} == {"empathy", "safety"}
    assert all(i.votes == VoteCounts(a=1, b=1) for i in items)


def test_a_decision_needs_a_reason_and_a_disputed_item(disputed, researcher):
    study, first = disputed.study, disputed.comparisons[0]
    with pytest.raises(ValidationError) as error:
        adjudication_decide(
            study=study, comparison_id=first.pk, criterion_key="empathy", decision="tie", reason=" ", actor=researcher
        )
    assert "reason" in error.value.message_dict
    settled = disputed.comparisons[5]
    with pytest.raises(ValidationError) as error:
        adjudication_decide(
            study=study, comparison_id=settled.pk, criterion_key="empathy", decision="tie", reason="x", actor=researcher
        )
    assert "not disputed" in error.value.message_dict["comparison"][0]
    with pytest.raises(ValidationError) as error:
        adjudication_decide(
            study=study, comparison_id=first.pk, criterion_key="nope", decision="sideways", reason="x", actor=researcher
        )
    assert set(error.value.message_dict) == {"criterion", "decision"}
    assert not Adjudication.objects.exists()


def test_decide_change_and_withdraw_are_audited(disputed, researcher):
    study, first = disputed.study, disputed.comparisons[0]
    kwargs = {"study": study, "comparison_id": first.pk, "criterion_key": "empathy", "actor": researcher}
    adjudication_decide(**kwargs, decision="response_1", reason="Names the feeling")
    adjudication_decide(**kwargs, decision="response_2", reason="Second reading: asks what helps")
    stored = Adjudication.objects.get()
    assert (stored.value, stored.decided_by, stored.reason) == (1, researcher, "Second reading: asks what helps")
    assert adjudication_withdraw(**kwargs) is True
    assert not Adjudication.objects.exists()
    actions = list(AuditEvent.objects.filter(action__startswith="adjudication.").order_by("id"))
    assert [e.action for e in actions] == ["adjudication.decide", "adjudication.change", "adjudication.withdraw"]
    assert (
        actions[1].data["before"]["decision"] == "Response 1" and actions[1].data["after"]["decision"] == "Response 2"
    )


def test_next_unresolved_skips_decided_items_and_wraps(disputed, researcher):
    study = disputed.study
    items = disputed_items(study=study)
    adjudication_decide(
        study=study,
        comparison_id=items[1].comparison_id,
        criterion_key=items[1].criterion.key,
        decision="tie",
        reason="Both fine",
        actor=researcher,
    )
    following = next_unresolved(study=study, after=items[0].key)
    assert following.key == items[2].key
    assert next_unresolved(study=study, after=items[-1].key).key == items[0].key


def _decide_all_empathy(disputed, researcher, decision="response_2"):
    for comparison in disputed.comparisons[:4]:
        adjudication_decide(
            study=disputed.study,
            comparison_id=comparison.pk,
            criterion_key="empathy",
            decision=decision,
            reason="The second response stays with the feeling",
            actor=researcher,
        )


def _rows(export, criterion="empathy"):
    root = Path(export.path)
    rows = []
    for path in sorted((root / "data" / criterion).glob("*.jsonl")):
        rows += [json.loads(line) | {"_split": path.stem} for line in path.read_text().splitlines() if line]
    return rows


def test_adjudication_reaches_the_export_manifest_card_and_labels(disputed, researcher):
    _decide_all_empathy(disputed, researcher)
    split_ids = {str(c.pk) for c in disputed.comparisons[:4]}
    export = export_create(
        study=disputed.study,
        actor=researcher,
        format="trl-dpo",
        criterion_keys=["empathy", "safety"],
        policy={"decision": "adjudicated"},
        inline=True,
    )
    assert export.status == JobStatus.SUCCEEDED, export.error
    manifest = export.manifest
    assert manifest["policy"]["decision"] == "adjudicated"
    assert manifest["adjudicated"] == {"empathy": 4, "safety": 0}
    # The adjudicated items became rows choosing the second response; on safety (not adjudicated) they stay disputed.
    rows = {r["comparison_id"]: r for r in _rows(export)}
    assert split_ids <= set(rows)
    by_id = {str(c.pk): c for c in disputed.comparisons}
    for comparison_id in split_ids:
        assert rows[comparison_id]["chosen"][0]["content"] == by_id[comparison_id].response_second.content
    assert not split_ids & {r["comparison_id"] for r in _rows(export, "safety")}
    assert manifest["outcomes"]["safety"]["disputed"] == 4 and manifest["outcomes"]["empathy"]["disputed"] == 0
    card = (Path(export.path) / "README.md").read_text()
    assert "labels decided by adjudication, per criterion: empathy: 4, safety: 0" in card
    # Split leakage still holds: every prompt lies in one split only.
    prompt_splits = {}
    for row in _rows(export) + _rows(export, "safety"):
        prompt_splits.setdefault(disputed.prompt_of[row["comparison_id"]], set()).add(row["_split"])
    assert all(len(splits) == 1 for splits in prompt_splits.values())
    # The majority rule ignores decisions: the same items are disputed and absent.
    majority = export_create(
        study=disputed.study, actor=researcher, format="trl-dpo", criterion_keys=["empathy", "safety"], inline=True
    )
    assert majority.manifest["adjudicated"] == {"empathy": 0, "safety": 0}
    assert not split_ids & {r["comparison_id"] for r in _rows(majority)}


def test_the_report_counts_adjudicated_items(disputed, researcher):
    from annotations.services.reports import ReportParams, report_request

    _decide_all_empathy(disputed, researcher)
    assert adjudication_counts(study=disputed.study) == {
        key: (4 if key == "empathy" else 0) for key in adjudication_counts(study=disputed.study)
    }
    snapshot = report_request(study=disputed.study, params=ReportParams(n_resamples=20), inline=True)
    assert snapshot.result["adjudication"]["empathy"] == 4
    # A new decision changes the fingerprint, so the next report counts it.
    adjudication_withdraw(
        study=disputed.study, comparison_id=disputed.comparisons[0].pk, criterion_key="empathy", actor=researcher
    )
    again = report_request(study=disputed.study, params=ReportParams(n_resamples=20), inline=True)
    assert again.pk != snapshot.pk and again.result["adjudication"]["empathy"] == 3


def test_the_disputes_pages_decide_and_go_to_the_next(client, disputed, researcher):
    client.force_login(researcher)
    study = disputed.study
    page = client.get(reverse("study-disputes", args=[study.slug]))
    html = page.content.decode()
    assert page.status_code == 200 and "Empathy" in html and "Review the next unresolved item" in html
    assert "sys-new" in html  # researchers see systems
    items = disputed_items(study=study)
    first = items[0]
    url = reverse("study-dispute", args=[study.slug, first.comparison_id, first.criterion.key])
    detail = client.get(url).content.decode()
    assert "Every rating on" in detail and "rater-a" in detail and "rater-b" in detail
    response = client.post(
        reverse("study-dispute-decide", args=[study.slug, first.comparison_id, first.criterion.key]),
        {"decision": "response_1", "reason": "Clearer about next steps", "then": "next"},
    )
    assert response.status_code == 302 and response.url.endswith(
        reverse("study-dispute", args=[study.slug, items[1].comparison_id, items[1].criterion.key])
    )
    assert Adjudication.objects.get().value == -1
    shown = client.get(url).content.decode()
    assert "Decision: Response 1" in shown and "Clearer about next steps" in shown and "decided Response 1" in shown
    refused = client.post(
        reverse("study-dispute-decide", args=[study.slug, items[1].comparison_id, items[1].criterion.key]),
        {"decision": "tie", "reason": ""},
        follow=True,
    )
    assert "Not saved (reason)" in refused.content.decode() and Adjudication.objects.count() == 1
    filtered = client.get(reverse("study-disputes", args=[study.slug]), {"status": "adjudicated"}).content.decode()
    assert "1 item" in filtered


def test_clinicians_never_see_the_disputes(client, disputed, clinician):
    client.force_login(clinician)
    first = disputed_items(study=disputed.study)[0]
    assert client.get(reverse("study-disputes", args=[disputed.study.slug])).status_code == 404
    assert (
        client.get(reverse("study-dispute", args=[disputed.study.slug, first.comparison_id, "empathy"])).status_code
        == 404
    )
    assert client.get(reverse("api-dispute-list", args=[disputed.study.slug])).status_code == 404


def test_the_api_lists_decides_and_withdraws(client, disputed, researcher):
    client.force_login(researcher)
    slug = disputed.study.slug
    listed = client.get(reverse("api-dispute-list", args=[slug]), {"status": "unresolved", "criterion": "empathy"})
    body = listed.json()
    assert body["count"] == 4 and body["results"][0]["votes"] == {"response_1": 1, "tie": 0, "response_2": 1}
    target = body["results"][0]["comparison"]
    bad = client.post(
        reverse("api-adjudication-list", args=[slug]),
        {"comparison": target, "criterion": "empathy", "decision": "sideways", "reason": "x"},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "decision" in bad.json()["error"]["details"]
    made = client.post(
        reverse("api-adjudication-list", args=[slug]),
        {"comparison": target, "criterion": "empathy", "decision": "tie", "reason": "Equally warm"},
        content_type="application/json",
    )
    assert made.status_code == 201 and made.json()["value"] == 0
    detail = client.get(reverse("api-adjudication-detail", args=[slug, target, "empathy"])).json()
    assert detail["adjudication"]["reason"] == "Equally warm" and len(detail["ratings"]) == 2
    gone = client.delete(reverse("api-adjudication-detail", args=[slug, target, "empathy"]))
    assert gone.status_code == 204 and not Adjudication.objects.exists()


def test_the_command_lists_and_resolves_from_a_csv(disputed, researcher, tmp_path):
    listing = tmp_path / "disputes.csv"
    call_command("adjudicate", study=disputed.study.slug, list=True, out=str(listing), criterion="empathy")
    rows = list(csv.DictReader(listing.open()))
    assert len(rows) == 4 and rows[0]["votes_response_1"] == "1"
    rows[0]["decision"], rows[0]["reason"] = "response_2", "Warmer"
    rows[1]["decision"], rows[1]["reason"] = "tie", "Both fine"
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = io.StringIO()
    call_command("adjudicate", study=disputed.study.slug, from_csv=str(filled), as_user=researcher.username, stdout=out)
    assert "2 decision(s) recorded" in out.getvalue() and Adjudication.objects.count() == 2
    # One bad row and nothing is written.
    rows[2]["decision"], rows[2]["reason"] = "tie", ""
    rows[3]["decision"], rows[3]["reason"] = "response_1", "Clear"
    with filled.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="line 4: reason"):
        call_command("adjudicate", study=disputed.study.slug, from_csv=str(filled), as_user=researcher.username)
    assert Adjudication.objects.count() == 2
