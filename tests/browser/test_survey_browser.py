"""A respondent fills in the patient preference survey on a phone, without an account, with axe-core clean;
the researcher then reads the answers on the results page at desktop size."""

import pytest

from annotations.models.survey import SurveyResponse
from annotations.services.surveys import survey_create, survey_criteria, survey_open
from tests.browser.conftest import ARTIFACTS, axe_serious_violations

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_respondent_answers_on_a_phone_and_the_researcher_reads_the_results(
    browser, live_server, client, study, researcher
):
    from playwright.sync_api import expect

    survey = survey_open(
        survey=survey_create(
            study=study,
            actor=researcher,
            title="What matters to you in a therapist",
            introduction="Five minutes, anonymous.",
            consent_text="Your answers are anonymous and used for research. You can stop at any time.",
            questions=[
                {"key": "age", "label": "Age group", "kind": "choice", "options": ["18-24", "25-34", "35+"]},
                {"key": "comments", "label": "Anything else you want to tell us?", "kind": "text"},
            ],
            ask_ranking=True,
        ),
        actor=researcher,
    )
    criteria = survey_criteria(study)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True, is_mobile=True)
    page = phone.new_page()
    page.goto(f"{live_server.url}/survey/{survey.link_token}/")
    expect(page.get_by_role("heading", name="What matters to you in a therapist")).to_be_visible()
    assert axe_serious_violations(page) == []
    page.get_by_label("I have read this and agree to take part.").check()
    for index, criterion in enumerate(criteria):
        group = page.get_by_role("group", name=criterion.title).first
        group.get_by_label(str(5 - index % 3)).check()
    top = page.get_by_role("group", name="Choose one quality")
    top.get_by_label(criteria[0].title).check()
    for position, criterion in enumerate(criteria, start=1):
        page.locator(f"#rank-{criterion.key}").select_option(str(position))
    page.get_by_label("25-34").check()
    page.get_by_label("Anything else you want to tell us?").fill("<b>be patient</b>")
    page.screenshot(path=str(ARTIFACTS / "survey-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    assert axe_serious_violations(page) == []
    response = SurveyResponse.objects.get(survey=survey)
    assert response.top_priority == criteria[0].key and response.answers["age"] == "25-34"
    assert response.ranking == [c.key for c in criteria]

    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    desktop = browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=True)
    desktop.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    results = desktop.new_page()
    results.goto(f"{live_server.url}/studies/{study.slug}/")
    results.get_by_role("link", name="Surveys").click()
    results.get_by_role("link", name="What matters to you in a therapist").click()
    results.get_by_role("link", name="Results and weight sets").click()
    expect(results.locator("#respondents")).to_have_text("1 respondent")
    expect(results.locator("#importance-table")).to_contain_text("5.00")
    expect(results.locator("#top-table tbody tr").first).to_contain_text("100%")
    expect(results.get_by_role("heading", name="By Age group")).to_be_visible()
    assert "be patient" not in results.content()  # free text stays in the CSV export only
    results.screenshot(path=str(ARTIFACTS / "survey-results-desktop.png"), full_page=True)
    assert axe_serious_violations(results) == []
    results.get_by_label("Name").fill("patients-top")
    results.get_by_label("Method").select_option("top_priority")
    results.get_by_label("Safety minimum (0 to 1, optional)").fill("0.3")
    results.get_by_role("button", name="Save weight set").click()
    expect(results.get_by_text("Weight set “patients-top” saved")).to_be_visible()
    results.screenshot(path=str(ARTIFACTS / "survey-weight-set-desktop.png"), full_page=True)
    results.get_by_role("link", name="Training jobs").click()
    expect(results.get_by_label("Or a weight set (MODPO, merge)")).to_contain_text("patients-top (top_priority)")
    assert axe_serious_violations(results) == []

    desktop.close()
    phone.close()
    small = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    small.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    detail = small.new_page()
    detail.goto(f"{live_server.url}/studies/{study.slug}/surveys/{survey.public_id}/")
    expect(detail.get_by_label("Share link")).to_have_value(f"{live_server.url}/survey/{survey.link_token}/")
    detail.screenshot(path=str(ARTIFACTS / "survey-detail-phone.png"), full_page=True)
    assert axe_serious_violations(detail) == []
    detail.goto(f"{live_server.url}/studies/{study.slug}/surveys/")
    detail.screenshot(path=str(ARTIFACTS / "survey-list-phone.png"), full_page=True)
    assert axe_serious_violations(detail) == []
