"""A researcher adds an LLM judge in the browser, runs it through the worker, and reads it in the report
beside the clinicians, at desktop and phone sizes, with axe-core clean."""

import pytest

from annotations.models import Assignment, JobStatus, JudgeRun, Rater, Rating
from annotations.services.studies import study_criteria
from tests.browser.conftest import ARTIFACTS, axe_serious_violations
from tests.judges.conftest import build_judge_study

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _clinician_ratings(study) -> None:
    """Two external raters rate every pair on every criterion, preferring the longer reply most of the time."""
    raters = [Rater.objects.create(kind=Rater.Kind.EXTERNAL, label=f"clinician-{i}") for i in range(2)]
    criteria = study_criteria(study)
    for index, comparison in enumerate(study.comparisons.select_related("response_first", "response_second")):
        longer = 1 if len(comparison.response_second.content) > len(comparison.response_first.content) else -1
        for r, rater in enumerate(raters):
            assignment = Assignment.objects.create(
                study=study, comparison=comparison, rater=rater, status="submitted", purpose="imported"
            )
            value = longer if (index + r) % 4 else 0
            Rating.objects.bulk_create([Rating(assignment=assignment, criterion=c, value=value) for c in criteria])


def test_a_researcher_adds_a_judge_runs_it_and_reads_it_in_the_report(
    browser, live_server, client, researcher, celery_worker, judge_server
):
    from playwright.sync_api import expect

    judge_server.configure(faults=[], latency_ms=0, reset_stats=True)
    study = build_judge_study(owner=researcher, prompts=4)
    _clinician_ratings(study)
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    # bypass_csp only so that axe-core can be injected; the app's own pages never need it.
    context = browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=True)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.goto(f"{live_server.url}/studies/{study.slug}/")
    page.get_by_role("link", name="AI judges").click()
    expect(page.get_by_text("No judges yet")).to_be_visible()
    page.locator("#name").fill("local-judge")
    page.get_by_label("Base URL").fill(judge_server.base_url)
    page.get_by_label("Model").fill("prefer-longer")
    page.get_by_label("or API key (stored encrypted)").fill("sk-browser-secret-123")
    page.screenshot(path=str(ARTIFACTS / "judge-add-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []
    page.get_by_role("button", name="Add LLM judge").click()
    expect(page.get_by_role("heading", name="Judge local-judge")).to_be_visible()
    expect(page.get_by_text("stored encrypted")).to_be_visible()
    assert "sk-browser-secret-123" not in page.content()
    page.get_by_role("button", name="Run judge").click()
    # The run page refreshes itself until the worker is done.
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=60000)
    expect(page.locator("#run-counts")).to_contain_text("12 of 12 pairs judged")
    page.screenshot(path=str(ARTIFACTS / "judge-run-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []
    run = JudgeRun.objects.get(judge__name="local-judge")
    assert run.status == JobStatus.SUCCEEDED and run.calls == 24

    page.get_by_role("link", name="Read the agreement report").click()
    # The summary comes first; each criterion's figures sit behind the contents list (issue 12).
    page.locator("#contents a").first.click(timeout=60000)
    judge_table = page.locator("table.judge-quality-table").first
    expect(judge_table).to_be_visible(timeout=60000)
    expect(judge_table).to_contain_text("local-judge")
    expect(page.locator("tr.judge-quality-position-swap").first).to_contain_text("100")
    page.screenshot(path=str(ARTIFACTS / "judge-report-desktop.png"), full_page=False)
    judge_table.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "judge-report-quality.png"), full_page=False)

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, bypass_csp=True)
    phone.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    small = phone.new_page()
    small.goto(f"{live_server.url}/studies/{study.slug}/judges/")
    expect(small.get_by_role("link", name="local-judge")).to_be_visible()
    assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    small.screenshot(path=str(ARTIFACTS / "judge-list-phone.png"), full_page=True)
    assert axe_serious_violations(small) == []
    context.close()
    phone.close()
