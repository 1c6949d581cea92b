"""A researcher edits an open study's rubric in Chromium: reorders, rewrites a question, confirms the warning,
and reads the version history and the diff; at desktop and phone sizes, axe-core clean."""

import pytest

from annotations.models import RubricVersion
from tests.browser.conftest import ARTIFACTS, axe_serious_violations, browser  # noqa: F401 - the Chromium fixture
from tests.workspace.conftest import build_study

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, client, **size):  # noqa: F811
    context = browser.new_context(bypass_csp=True, **size)  # bypass_csp only so that axe-core can be injected
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context


def test_a_researcher_edits_an_open_studys_rubric_on_desktop_and_phone(browser, live_server, client, researcher):  # noqa: F811
    from playwright.sync_api import expect

    study = build_study(owner=researcher, slug="rubric-browser", prompts=2)
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    desktop = _context(browser, live_server, client, viewport={"width": 1366, "height": 900})
    page = desktop.new_page()
    page.goto(f"{live_server.url}/studies/{study.slug}/")
    page.get_by_role("link", name="Rubric", exact=True).click()
    expect(page.get_by_role("heading", name="Rubric v1")).to_be_visible()
    expect(page.locator("#after-open-warning")).to_contain_text("Ratings already given were made under rubric v1")
    page.screenshot(path=str(ARTIFACTS / "rubric-desktop.png"), full_page=False)
    assert axe_serious_violations(page) == []

    # Safety up above Empathy (no save yet), then a new question for Safety.
    page.get_by_role("button", name="Move up: Safety").click()
    expect(page.locator("#criterion-row-0 legend")).to_contain_text("Safety")
    page.locator("#c-0-question").fill("Which response better keeps the person safe?")
    page.get_by_role("button", name="Save as rubric v2").click()
    expect(page.locator("#rubric-errors")).to_contain_text("Tick “I understand” above the Save button")
    page.screenshot(path=str(ARTIFACTS / "rubric-confirm-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []
    expect(page.locator("#c-0-question")).to_have_value("Which response better keeps the person safe?")  # kept
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Save as rubric v2").click()
    expect(page.locator(".message.success")).to_contain_text("Saved rubric v2")
    version = RubricVersion.objects.get(study=study, number=2)
    assert version.after_open and version.changes == [
        "Safety: question changed",
        "Order changed: Safety, Empathy, Overall preference",
    ]

    page.get_by_role("link", name="Version history and what changed").click()
    expect(page.locator("#version-2")).to_contain_text("Safety: question changed")
    page.get_by_role("link", name="Compare v2 with v1").click()
    expect(page.locator("#criterion-safety ins.diff-added").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "rubric-diff-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []

    phone = _context(browser, live_server, client, viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    small.goto(f"{live_server.url}/studies/{study.slug}/rubric/")
    expect(small.get_by_role("heading", name="Rubric v2")).to_be_visible()
    assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    small.screenshot(path=str(ARTIFACTS / "rubric-phone.png"), full_page=False)
    assert axe_serious_violations(small) == []
    small.goto(f"{live_server.url}/studies/{study.slug}/rubric/versions/2/")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    small.screenshot(path=str(ARTIFACTS / "rubric-diff-phone.png"), full_page=False)
    assert axe_serious_violations(small) == []
    desktop.close()
    phone.close()
