"""A researcher opens the item explorer from the study's tabs, filters to disputed items and reads one, at
desktop and phone sizes, with axe-core clean."""

import pytest

from tests.browser.conftest import ARTIFACTS, axe_serious_violations, browser  # noqa: F401 - the Chromium fixture
from tests.items.builders import build_item_study, is_disputed

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, client, **size):  # noqa: F811
    context = browser.new_context(bypass_csp=True, **size)  # bypass_csp only so that axe-core can be injected
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context


def test_a_researcher_filters_the_items_and_reads_one_on_desktop_and_phone(browser, live_server, client, researcher):  # noqa: F811
    from playwright.sync_api import expect

    built = build_item_study(owner=researcher, n_comparisons=60)
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    desktop = _context(browser, live_server, client, viewport={"width": 1366, "height": 900})
    page = desktop.new_page()
    page.goto(f"{live_server.url}/studies/{built.study.slug}/")
    page.get_by_role("link", name="Items", exact=True).click()
    expect(page.locator("#item-count")).to_have_text("60 comparisons")
    assert axe_serious_violations(page) == []
    page.get_by_role("checkbox", name="disputed").check()
    page.get_by_label("Sort").select_option("disagreement")
    page.get_by_role("button", name="Apply").click()
    disputed = len([i for i in range(60) if is_disputed(i)])
    expect(page.locator("#item-count")).to_have_text(f"{disputed} comparisons")
    first = page.locator("article.item").first
    expect(first.get_by_role("heading", name="First: base")).to_be_visible()
    expect(first.locator("table.item-ratings")).to_contain_text("items-external")
    page.screenshot(path=str(ARTIFACTS / "items-desktop.png"), full_page=False)
    assert axe_serious_violations(page) == []

    phone = _context(browser, live_server, client, viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    small.goto(f"{live_server.url}/studies/{built.study.slug}/items/?flagged=1")
    expect(small.locator("#item-count")).to_have_text("6 comparisons")
    assert small.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    small.screenshot(path=str(ARTIFACTS / "items-phone.png"), full_page=False)
    small.locator("article.item").first.scroll_into_view_if_needed()
    small.screenshot(path=str(ARTIFACTS / "items-phone-item.png"), full_page=False)
    assert axe_serious_violations(small) == []
    desktop.close()
    phone.close()
