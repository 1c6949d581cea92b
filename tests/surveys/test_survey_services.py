"""The public survey takes only the survey's questions, all or nothing; replays store nothing twice; a closed
survey says so; the public post is throttled; respondents' text is escaped; weight sets are derived and saved."""

import csv
import io

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotations.models import AuditEvent
from annotations.models.survey import SurveyResponse, WeightSet
from annotations.services.surveys import (
    CLOSED_MESSAGE,
    SurveyAlreadyAnswered,
    SurveyNotOpen,
    survey_close,
    survey_create,
    survey_criteria,
    survey_response_submit,
    survey_submission_key_issue,
    weight_set_derive,
)

pytestmark = pytest.mark.django_db


def keys(survey) -> list[str]:
    return [c.key for c in survey_criteria(survey.study)]


def answers(survey, **overrides) -> dict:
    criteria = keys(survey)
    values = {
        "submission_key": survey_submission_key_issue(survey),
        "consent": True,
        "importance": dict.fromkeys(criteria, 4),
        "top_priority": criteria[0],
        "ranking": list(criteria),
        "answers": {"age": "25-34", "comments": "Be kind."},
    }
    values.update(overrides)
    return values


def refused(survey, **overrides) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        survey_response_submit(survey=survey, **answers(survey, **overrides))
    assert not SurveyResponse.objects.exists()
    return caught.value.message_dict


def form_fields(survey, **overrides) -> dict[str, str]:
    criteria = keys(survey)
    fields = {
        "submission_key": survey_submission_key_issue(survey),
        "consent": "yes",
        "top_priority": criteria[1],
        "answer_age": "18-24",
        "answer_comments": "",
    }
    fields.update({f"importance_{key}": "5" for key in criteria})
    fields.update({f"rank_{key}": str(position) for position, key in enumerate(criteria, start=1)})
    fields.update(overrides)
    return fields


def test_a_complete_response_is_stored_with_its_answers(survey):
    response = survey_response_submit(survey=survey, **answers(survey))
    assert response.importance == dict.fromkeys(keys(survey), 4)
    assert response.answers == {"age": "25-34", "comments": "Be kind."}


@pytest.mark.parametrize("value", [0, 6, "4.5", "high", None, True])
def test_importance_outside_one_to_five_is_refused(survey, value):
    importance = dict.fromkeys(keys(survey), 3)
    importance["empathy"] = value
    assert "importance_empathy" in refused(survey, importance=importance)


def test_a_missing_criterion_an_unknown_criterion_and_an_unknown_question_are_refused(survey):
    importance = dict.fromkeys(keys(survey), 3)
    del importance["safety"]
    assert "importance_safety" in refused(survey, importance=importance)
    assert "importance" in refused(survey, importance={**dict.fromkeys(keys(survey), 3), "charm": 5})
    assert "answers" in refused(survey, answers={"age": "18-24", "postcode": "AB1"})


def test_a_choice_outside_the_options_a_top_priority_outside_the_criteria_and_a_partial_ranking_are_refused(survey):
    assert "answer_age" in refused(survey, answers={"age": "99"})
    assert "top_priority" in refused(survey, top_priority="charm")
    assert "ranking" in refused(survey, ranking=keys(survey)[:-1])
    assert "ranking" in refused(survey, ranking=[keys(survey)[0]] * len(keys(survey)))


def test_oversized_free_text_and_a_missing_required_answer_are_refused(survey):
    assert "answer_comments" in refused(survey, answers={"age": "18-24", "comments": "x" * 2001})
    assert "answer_age" in refused(survey, answers={"comments": "hello"})


def test_no_consent_is_refused(survey):
    assert "consent" in refused(survey, consent=False)


def test_a_replayed_form_stores_nothing_twice(survey):
    first = answers(survey)
    survey_response_submit(survey=survey, **first)
    with pytest.raises(SurveyAlreadyAnswered):
        survey_response_submit(survey=survey, **{**first, "top_priority": "safety"})
    assert SurveyResponse.objects.count() == 1
    assert SurveyResponse.objects.get().top_priority == keys(survey)[0]


def test_a_forged_key_and_a_key_of_another_survey_are_refused(survey, study, researcher):
    other = survey_create(study=study, actor=researcher, title="Other", consent_text="ok")
    assert "__all__" in refused(survey, submission_key="forged")
    assert "another survey" in refused(survey, submission_key=survey_submission_key_issue(other))["__all__"][0]


def test_a_closed_survey_takes_no_answers_and_says_so(survey, client, researcher):
    key_before_closing = survey_submission_key_issue(survey)
    survey_close(survey=survey, actor=researcher)
    with pytest.raises(SurveyNotOpen):
        survey_response_submit(survey=survey, **answers(survey, submission_key=key_before_closing))
    page = client.get(reverse("survey-public", args=[survey.link_token]))
    assert page.status_code == 410 and CLOSED_MESSAGE in page.content.decode()
    assert client.post(reverse("survey-public", args=[survey.link_token]), form_fields(survey)).status_code == 410
    assert not SurveyResponse.objects.exists()


def test_the_access_code_is_stored_as_sha256_only_and_checked(study, researcher):
    from annotations.services.surveys import survey_open

    survey = survey_open(
        survey=survey_create(study=study, actor=researcher, title="Coded", consent_text="ok", access_code="tulip-42"),
        actor=researcher,
    )
    assert "tulip" not in survey.access_code_hash and len(survey.access_code_hash) == 64
    no_answers = {"answers": {}, "ranking": []}
    assert "access_code" in refused(survey, access_code="wrong", **no_answers)
    survey_response_submit(survey=survey, **answers(survey, access_code="tulip-42", **no_answers))
    assert AuditEvent.objects.filter(action="survey.create", object_id=str(survey.pk)).exists()


def test_the_public_form_refuses_fields_it_did_not_ask_for_and_stores_nothing(survey, client):
    url = reverse("survey-public", args=[survey.link_token])
    page = client.post(url, form_fields(survey, is_admin="1"))
    assert page.status_code == 400 and "Unexpected fields: is_admin" in page.content.decode()
    assert not SurveyResponse.objects.exists()
    assert client.post(url, form_fields(survey)).status_code == 302
    assert SurveyResponse.objects.get().answers == {"age": "18-24"}


def test_a_double_submit_of_the_public_form_lands_on_the_thank_you_page_with_one_response(survey, client):
    url = reverse("survey-public", args=[survey.link_token])
    fields = form_fields(survey)
    assert client.post(url, fields)["Location"] == reverse("survey-thanks", args=[survey.link_token])
    assert client.post(url, fields)["Location"] == reverse("survey-thanks", args=[survey.link_token])
    assert SurveyResponse.objects.count() == 1


def test_a_flood_from_one_address_is_throttled_and_stores_nothing_more(survey, client, settings):
    from annotations.views import surveys as survey_views

    url = reverse("survey-public", args=[survey.link_token])
    statuses = [client.post(url, form_fields(survey)).status_code for _ in range(survey_views.SURVEY_POST_LIMIT + 2)]
    assert statuses[: survey_views.SURVEY_POST_LIMIT] == [302] * survey_views.SURVEY_POST_LIMIT
    assert statuses[survey_views.SURVEY_POST_LIMIT :] == [429, 429]
    assert SurveyResponse.objects.count() == survey_views.SURVEY_POST_LIMIT
    other_address = client.post(url, form_fields(survey), REMOTE_ADDR="10.9.9.9")
    assert other_address.status_code == 302


def test_a_draft_survey_is_not_found_by_its_link(study, researcher, client):
    draft = survey_create(study=study, actor=researcher, title="Draft", consent_text="ok")
    assert client.get(reverse("survey-public", args=[draft.link_token])).status_code == 404


def test_respondents_free_text_is_escaped_on_the_results_page_and_never_on_the_public_page(survey, client, researcher):
    script = "<script>alert(1)</script>"
    survey_response_submit(survey=survey, **answers(survey, answers={"age": "18-24", "comments": script}))
    public = client.get(reverse("survey-public", args=[survey.link_token])).content.decode()
    assert "alert(1)" not in public
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    results = client.get(reverse("survey-results", args=[survey.study.slug, survey.public_id])).content.decode()
    assert script not in results  # free text is not shown there at all, and persona texts leave it out


def test_the_csv_export_escapes_formulas_and_holds_one_row_per_response(survey, client, researcher):
    survey_response_submit(survey=survey, **answers(survey, answers={"age": "18-24", "comments": "=HYPERLINK(1)"}))
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    body = client.get(reverse("survey-responses-csv", args=[survey.study.slug, survey.public_id])).content.decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:3] == ["response", "submitted_at", "importance_empathy"]
    assert len(rows) == 2 and rows[1][-1] == "'=HYPERLINK(1)"


def test_a_weight_set_is_derived_with_the_safety_minimum_and_saved(survey, researcher):
    criteria = keys(survey)
    for top in (criteria[0], criteria[0], criteria[0], "safety"):
        survey_response_submit(survey=survey, **answers(survey, top_priority=top))
    weight_set = weight_set_derive(
        survey=survey, actor=researcher, name="patients", method="top_priority", safety_minimum=0.4
    )
    assert weight_set.weights[criteria[0]] == pytest.approx(0.6)
    assert weight_set.weights["safety"] == pytest.approx(0.4)
    assert weight_set.derivation["before_safety"]["safety"] == pytest.approx(0.25)
    with pytest.raises(ValidationError) as caught:
        weight_set_derive(survey=survey, actor=researcher, name="patients", method="borda")
    assert "name" in caught.value.message_dict
    assert WeightSet.objects.count() == 1
