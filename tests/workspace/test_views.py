"""Clinician pages and API, the researcher's progress page, permissions, and constant queries per request."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.models import Assignment, AuditEvent, Comparison, Rating, StudyMembership
from annotations.services.assignment import assignment_next, rater_for_user
from annotations.services.rating import comparison_mark_gold
from tests.workspace.conftest import add_clinicians, build_study

pytestmark = pytest.mark.django_db
KEYS = ("empathy", "safety", "overall")


def login(client, user):
    client.force_login(user)
    return client


def form_values(value=-1, **extra):
    return {**{f"v_{k}": str(value) for k in KEYS}, "mode": "submit", **extra}


def test_my_studies_shows_progress_and_rate_next(client, ws_study, clinician):
    login(client, clinician)
    page = client.get(reverse("workspace-home"))
    assert page.status_code == 200
    html = page.content.decode()
    assert ws_study.title in html and "<progress" in html and "Rate next" in html
    assert "0</strong> done" in html and "12</strong> assigned" in html  # 12 comparisons x k=2 / 1 clinician, capped


def test_rate_next_opens_the_pair_by_its_opaque_id_and_submit_moves_on(client, ws_study, clinician):
    login(client, clinician)
    response = client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    assert response.url == f"/workspace/pair/{assignment.public_id}/"
    page = client.get(response.url)
    html = page.content.decode()
    assert "Response 1" in html and "Response 2" in html and "Overall preference" in html
    assert html.index("Safety") < html.index("Overall preference")  # overall last
    assert page["Content-Security-Policy"].startswith("default-src 'self'")
    assert "<script>" not in html and "style=" not in html  # nothing inline (CSP)
    submitted = client.post(reverse("workspace-submit", args=[assignment.public_id]), form_values())
    assert submitted.status_code == 302 and submitted.url.startswith("/workspace/pair/")
    assert submitted.url != response.url
    assert Rating.objects.filter(assignment=assignment).count() == 3
    # A double click: the same form again stores nothing more and still moves on.
    again = client.post(reverse("workspace-submit", args=[assignment.public_id]), form_values())
    assert again.status_code == 302 and Rating.objects.filter(assignment=assignment).count() == 3


def test_a_missing_answer_is_shown_with_the_rest_of_the_form_kept(client, ws_study, clinician):
    login(client, clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    data = form_values(rationale="Kept while fixing the error")
    del data["v_overall"]
    page = client.post(reverse("workspace-submit", args=[assignment.public_id]), data)
    assert page.status_code == 400
    html = page.content.decode()
    assert "Choose an answer for “Overall preference”" in html and "Kept while fixing the error" in html


def test_draft_autosave_and_reload(client, ws_study, clinician):
    login(client, clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    draft = {"values": {"empathy": 1}, "rationale": "half written", "saved_at": 1}
    saved = client.post(
        reverse("workspace-draft", args=[assignment.public_id]),
        {"draft": json.dumps(draft), "total_seconds": "12.5", "active_seconds": "7"},
    )
    assert saved.json() == {"saved": True}
    page = client.get(reverse("workspace-pair", args=[assignment.public_id])).content.decode()
    assert "half written" in page
    assert 'name="v_empathy" value="1" checked' in page.replace("\n", "").replace("  ", "")


def test_calibration_feedback_shows_expected_answers_and_rubric(client, researcher, clinician):
    study = build_study(owner=researcher, prompts=2, calibration_size=1)
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    gold = Comparison.objects.filter(study=study).order_by("id").first()
    comparison_mark_gold(comparison=gold, expected={"overall": -1}, actor=researcher)
    login(client, clinician)
    pair_url = client.post(reverse("workspace-next", args=[study.slug])).url
    assert "Calibration pair" in client.get(pair_url).content.decode()
    assignment = Assignment.objects.get(rater__user=clinician)
    response = client.post(reverse("workspace-submit", args=[assignment.public_id]), form_values(0))
    assert response.url == reverse("workspace-feedback", args=[assignment.public_id])
    html = client.get(response.url).content.decode()
    expected_label = "Response 1 better" if assignment.left_is_first else "Response 2 better"
    assert f"Expected: <strong>{expected_label}</strong>" in html
    assert "Your answer: <strong>About the same</strong>" in html and "Better when:" in html


def test_revise_from_my_submitted_pairs(client, ws_study, clinician):
    login(client, clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    client.post(reverse("workspace-submit", args=[assignment.public_id]), form_values(-1))
    done = client.get(reverse("workspace-done", args=[ws_study.slug])).content.decode()
    assert reverse("workspace-pair", args=[assignment.public_id]) in done
    page = client.get(reverse("workspace-pair", args=[assignment.public_id])).content.decode()
    assert 'value="revise"' in page
    client.post(reverse("workspace-submit", args=[assignment.public_id]), form_values(1, mode="revise"))
    flip = 1 if assignment.left_is_first else -1
    assert set(Rating.objects.filter(assignment=assignment).values_list("value", flat=True)) == {flip}
    assert AuditEvent.objects.filter(action="rating.revise").count() == 1


def test_skip_needs_a_reason_and_moves_on(client, ws_study, clinician):
    login(client, clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    client.post(reverse("workspace-skip", args=[assignment.public_id]), {"skip_reason": ""})
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.LEASED
    response = client.post(reverse("workspace-skip", args=[assignment.public_id]), {"skip_reason": "Conflict"})
    assert response.url.startswith("/workspace/pair/")
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.SKIPPED


def test_other_clinicians_and_researchers_cannot_open_my_pair(client, ws_study, clinician, other_clinician, researcher):
    assignment = assignment_next(study=ws_study, rater=rater_for_user(user=clinician))
    urls = [
        reverse("workspace-pair", args=[assignment.public_id]),
        reverse("api-workspace-pair", args=[assignment.public_id]),
    ]
    for user in (other_clinician, researcher):
        login(client, user)
        assert [client.get(url).status_code for url in urls] == [404, 404]
        assert client.post(reverse("workspace-submit", args=[assignment.public_id]), form_values()).status_code == 404
    client.logout()
    assert client.get(urls[0]).status_code == 302  # to the login page


def test_a_clinician_outside_the_study_cannot_ask_for_pairs(client, ws_study, other_clinician):
    login(client, other_clinician)
    assert client.post(reverse("workspace-next", args=[ws_study.slug])).status_code == 404
    assert client.post(reverse("api-workspace-next", args=[ws_study.slug])).status_code == 404


def test_the_api_loop_next_then_submit(client, ws_study, clinician):
    login(client, clinician)
    pair = client.post(reverse("api-workspace-next", args=[ws_study.slug])).json()
    assert [r["label"] for r in pair["responses"]] == ["Response 1", "Response 2"]
    assert [c["key"] for c in pair["criteria"]] == list(KEYS)
    body = {"values": dict.fromkeys(KEYS, 1), "total_seconds": 20, "active_seconds": 15}
    url = reverse("api-workspace-submit", args=[pair["id"]])
    first = client.post(url, body, content_type="application/json")
    assert first.json() == {"status": "submitted", "created": True, "feedback": None}
    assert client.post(url, body, content_type="application/json").json()["created"] is False
    changed = client.post(url, {"values": dict.fromkeys(KEYS, 0)}, content_type="application/json")
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "already_submitted"
    revise = client.post(
        reverse("api-workspace-revise", args=[pair["id"]]),
        {"values": dict.fromkeys(KEYS, 0)},
        content_type="application/json",
    )
    assert revise.status_code == 200
    bad = client.post(
        reverse("api-workspace-submit", args=[pair["id"]]), {"values": {"empathy": 9}}, content_type="application/json"
    )
    assert bad.status_code == 400 and set(bad.json()["error"]["details"]) == {"empathy", "safety", "overall"}


def test_the_researcher_progress_page(client, researcher, clinician, django_user_model):
    study = build_study(owner=researcher, prompts=2, overlap_k=2, min_shared_per_rater_pair=1)
    add_clinicians(django_user_model, study, ["c1", "c2"], owner=researcher)
    rater = rater_for_user(user=django_user_model.objects.get(username="c1"))
    assignment = assignment_next(study=study, rater=rater)
    from annotations.services.rating import RatingInput, rating_submit

    rating_submit(
        assignment=assignment,
        rater=rater,
        data=RatingInput(values=dict.fromkeys(KEYS, 0), both_unacceptable=True, unacceptable_reason="Both unsafe"),
    )
    login(client, researcher)
    html = client.get(reverse("study-progress", args=[study.slug])).content.decode()
    assert "Progress per criterion" in html and "Safety queue (1)" in html and "Both unsafe" in html
    assert "c1" in html and "below 2 raters" in html
    assert "Every pair of clinicians should share at least 1" in html
    assert (
        reverse("study-progress", args=[study.slug])
        in client.get(reverse("study-detail", args=[study.slug])).content.decode()
    )
    client.post(reverse("study-clinician-add", args=[study.slug]), {"username": clinician.username, "quota": "5"})
    assert StudyMembership.objects.get(study=study, user=clinician).quota == 5
    client.post(
        reverse("study-workspace-settings", args=[study.slug]),
        {
            "overlap_k": "3",
            "lease_minutes": "20",
            "calibration_size": "1",
            "gold_rate": "0.1",
            "rationale_mode": "none",
        },
    )
    study.refresh_from_db()
    assert (study.overlap_k, study.lease_minutes, study.calibration_size, study.rationale_mode) == (3, 20, 1, "none")
    api = client.get(reverse("api-study-progress", args=[study.slug])).json()
    assert api["safety_queue"][0]["unacceptable_reason"] == "Both unsafe"
    assert {r["rater"] for r in api["per_rater"]} == {"c1"}
    client.logout()
    login(client, clinician)
    assert client.get(reverse("study-progress", args=[study.slug])).status_code == 404
    assert client.get(reverse("api-study-progress", args=[study.slug])).status_code == 404


def _queries_for_loop(client, study) -> list[int]:
    counts = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as next_queries:
            pair = client.post(reverse("api-workspace-next", args=[study.slug])).json()
        with CaptureQueriesContext(connection) as submit_queries:
            client.post(
                reverse("api-workspace-submit", args=[pair["id"]]),
                {"values": dict.fromkeys(KEYS, 1)},
                content_type="application/json",
            )
        with CaptureQueriesContext(connection) as page_queries:
            client.get(reverse("workspace-pair", args=[pair["id"]]))
        counts.append((len(next_queries), len(submit_queries), len(page_queries)))
    return counts


def test_queries_per_request_stay_constant_as_the_study_grows(client, researcher, clinician, django_user_model):
    # Four prompts: enough that the prompt spacing (the last 3 prompts kept apart) still has a pair to give.
    small = build_study(owner=researcher, slug="small", prompts=4)
    large = build_study(owner=researcher, slug="large", prompts=40)
    for study in (small, large):
        StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    login(client, clinician)
    small_counts, large_counts = _queries_for_loop(client, small), _queries_for_loop(client, large)
    assert small_counts[-1] == large_counts[-1], (small_counts, large_counts)
    next_q, submit_q, page_q = large_counts[-1]
    # The API's submit locks and checks the pair in one query, as the page's does (session, user, BEGIN, rater,
    # pair, answers, audit head, audit rows, COMMIT); its "next" reads the membership and the rubric's
    # fingerprint with the study.
    assert next_q <= 13 and submit_q <= 9 and page_q <= 4, large_counts[-1]
    with CaptureQueriesContext(connection) as home_small:
        client.get(reverse("workspace-home"))
    assert len(home_small) <= 10


def test_the_pair_page_says_which_pair_of_how_many_and_the_time_rated_today(client, ws_study, clinician):
    login(client, clinician)
    first = client.post(reverse("workspace-next", args=[ws_study.slug]))
    html = client.get(first.url).content.decode()
    assert "Pair 1 of 12" in html and "12 left for you in this study" in html and "min rated today" in html
    assignment = Assignment.objects.get(rater__user=clinician)
    client.post(
        reverse("workspace-submit", args=[assignment.public_id]), form_values(total_seconds="180", active_seconds="120")
    )
    second = client.post(reverse("workspace-next", args=[ws_study.slug]))
    html = client.get(second.url).content.decode()
    assert "Pair 2 of 12" in html and "11 left for you in this study" in html and "2 min rated today" in html


def test_a_refused_submit_is_explained_at_each_criterion_and_in_a_live_summary_at_the_submit_bar(
    client, ws_study, clinician
):
    login(client, clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    data = form_values(both_unacceptable="1")
    del data["v_safety"]
    html = client.post(reverse("workspace-submit", args=[assignment.public_id]), data).content.decode()
    summary = html[html.index('id="error-summary"') : html.index('id="submit-button"')]
    assert 'role="alert"' in summary
    assert "Choose an answer for “Safety”." in summary and "Say why both responses are unacceptable." in summary
    at_safety = html[html.index('id="criterion-safety"') : html.index('id="criterion-overall"')]
    assert "has-error" in html[html.index('<fieldset class="criterion has-error" id="criterion-safety"') :][:80]
    assert "Choose an answer for “Safety”." in at_safety
    at_reason = html[html.index('id="errors-unacceptable_reason"') :][:200]
    assert "Say why both responses are unacceptable." in at_reason


def test_both_unacceptable_needs_a_reason_and_every_answer_and_the_page_says_so(client, ws_study, clinician):
    login(client, clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    assignment = Assignment.objects.get(rater__user=clinician)
    page = client.get(reverse("workspace-pair", args=[assignment.public_id])).content.decode()
    assert "say why below, and still answer every criterion" in page
    only_reason = {"mode": "submit", "both_unacceptable": "1", "unacceptable_reason": "Both dismiss the risk."}
    refused = client.post(reverse("workspace-submit", args=[assignment.public_id]), only_reason)
    assert refused.status_code == 400 and "Choose an answer for “Empathy”." in refused.content.decode()
    accepted = client.post(
        reverse("workspace-submit", args=[assignment.public_id]),
        form_values(both_unacceptable="1", unacceptable_reason="Both dismiss the risk."),
    )
    assert accepted.status_code == 302
    assert Assignment.objects.get(pk=assignment.pk).both_unacceptable


def test_my_pairs_show_the_message_the_answers_and_flags_and_skipped_pairs_can_be_taken_back(
    client, ws_study, clinician
):
    login(client, clinician)
    client.post(reverse("workspace-next", args=[ws_study.slug]))
    rated = Assignment.objects.get(rater__user=clinician)
    client.post(
        reverse("workspace-submit", args=[rated.public_id]),
        form_values(-1, both_unacceptable="1", unacceptable_reason="Both miss the risk."),
    )
    skipped = Assignment.objects.get(rater__user=clinician, status=Assignment.Status.LEASED)
    client.post(reverse("workspace-skip", args=[skipped.public_id]), {"skip_reason": "I know this person"})
    html = client.get(reverse("workspace-done", args=[ws_study.slug])).content.decode()
    opening = rated.comparison.prompt.messages[-1]["content"][:30]
    assert opening in html
    assert "<strong>Empathy:</strong> Response 1 better" in html  # as the clinician saw it, not canonical
    assert "Both unacceptable" in html
    assert "I know this person" in html
    take_back = reverse("workspace-take-back", args=[skipped.public_id])
    assert take_back in html
    response = client.post(take_back)
    assert response.url == reverse("workspace-pair", args=[skipped.public_id])
    assert Assignment.objects.get(pk=skipped.pk).status == Assignment.Status.LEASED
    assert client.get(response.url).status_code == 200


def test_my_pairs_page_takes_a_fixed_number_of_queries(client, researcher, clinician):
    study = build_study(owner=researcher, prompts=4, overlap_k=1)
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    login(client, clinician)
    counts = []
    for _ in range(2):
        for _ in range(3):
            client.post(reverse("workspace-next", args=[study.slug]))
            pair = Assignment.objects.get(rater__user=clinician, status=Assignment.Status.LEASED)
            client.post(reverse("workspace-submit", args=[pair.public_id]), form_values())
        with CaptureQueriesContext(connection) as queries:
            client.get(reverse("workspace-done", args=[study.slug]))
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
