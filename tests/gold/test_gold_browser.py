"""A researcher opens a comparison from the item explorer and marks it as a calibration item by answering it
with the pair page's controls, in Chromium at desktop and phone sizes, axe-core clean."""

import pytest

from tests.browser.conftest import ARTIFACTS, axe_serious_violations, browser  # noqa: F401 - the Chromium fixture
from tests.workspace.conftest import build_study

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, client, **size):  # noqa: F811
    context = browser.new_context(bypass_csp=True, **size)  # bypass_csp only so that axe-core can be injected
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context


def test_a_researcher_marks_a_calibration_item_by_answering_it(browser, live_server, client, researcher):  # noqa: F811
    from playwright.sync_api import expect

    study = build_study(owner=researcher, slug="gold-browser", prompts=2, open_study=False)
    comparison = study.comparisons.order_by("id").first()
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    desktop = _context(browser, live_server, client, viewport={"width": 1366, "height": 900})
    page = desktop.new_page()
    page.goto(f"{live_server.url}/studies/{study.slug}/items/")
    page.get_by_role("link", name=f"Mark as gold or calibration, comparison {comparison.pk}").click()
    expect(page.get_by_role("heading", name=f"Comparison {comparison.pk}: gold and calibration")).to_be_visible()
    first_system = comparison.response_first.system.name
    expect(page.get_by_role("heading", name=f"First: {first_system}")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "gold-desktop.png"), full_page=False)
    assert axe_serious_violations(page) == []

    # Submitting with nothing answered names what is missing.
    page.get_by_role("button", name="Mark with these answers").click()
    expect(page.locator("#gold-errors")).to_contain_text("Choose the expected answer for “Empathy”")
    assert axe_serious_violations(page) == []

    # Keyboard: the radios are real inputs inside the pair page's option labels.
    page.locator("#criterion-empathy").get_by_text(f"First ({first_system}) better").click()
    page.locator("#criterion-safety").get_by_text("About the same").click()
    page.locator("#criterion-overall input[value='-1']").focus()
    page.keyboard.press("Space")
    page.get_by_label("Calibration item").check()
    page.get_by_label("Why these answers").fill("The warmer reply names the worry before offering anything.")
    page.screenshot(path=str(ARTIFACTS / "gold-answered-desktop.png"), full_page=True)
    page.get_by_role("button", name="Mark with these answers").click()
    expect(page.locator("#gold-state")).to_contain_text("calibration item")
    comparison.refresh_from_db()
    assert comparison.is_gold and comparison.is_calibration
    assert comparison.gold_expected == {"empathy": -1, "safety": 0, "overall": -1}

    phone = _context(browser, live_server, client, viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    small.goto(f"{live_server.url}/studies/{study.slug}/items/{comparison.pk}/gold/")
    expect(small.locator("#criterion-empathy input[value='-1']")).to_be_checked()
    assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    small.screenshot(path=str(ARTIFACTS / "gold-phone.png"), full_page=False)
    small.locator("#criterion-empathy").scroll_into_view_if_needed()
    small.screenshot(path=str(ARTIFACTS / "gold-phone-controls.png"), full_page=False)
    assert axe_serious_violations(small) == []
    small.get_by_role("button", name="Unmark: make it a regular pair again").click()
    expect(small.locator("#gold-state")).to_contain_text("regular pair")
    desktop.close()
    phone.close()
