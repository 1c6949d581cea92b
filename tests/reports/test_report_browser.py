"""The demo's report in Chromium as a researcher, at desktop and phone sizes: the summary comes first with a row
per criterion, a contents link opens a criterion, a heatmap cell opens its items, the printable report and the
PDF are there, and axe-core finds nothing serious. Prints the page heights (issue 12 asked for a shorter page)."""

import re

import pytest

from annotations.services.demo import demo_load
from annotations.services.reports import ReportParams, report_request
from annotations.services.studies import study_criteria
from tests.browser.conftest import ARTIFACTS, axe_serious_violations, browser  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = (("desktop", {"width": 1366, "height": 900}), ("phone", {"width": 390, "height": 844}))


def _page(browser, live_server, client, user, size):  # noqa: F811
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    # bypass_csp only so that axe-core can be injected; the app's own pages never need it.
    context = browser.new_context(viewport=size, bypass_csp=True)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context, context.new_page()


def test_the_demo_report_reads_at_a_glance_on_desktop_and_phone(browser, live_server, client):  # noqa: F811
    from playwright.sync_api import expect

    study = demo_load().study
    report_request(study=study, params=ReportParams(), inline=True)  # as the worker would
    titles = [c.title for c in study_criteria(study)]
    heights = {}
    for name, size in SIZES:
        context, page = _page(browser, live_server, client, study.owner, size)
        page.goto(f"{live_server.url}/studies/{study.slug}/reports")
        first_card = page.locator("main section.card").first
        expect(first_card).to_have_id("summary")
        rows = page.locator("#summary tr.summary-row th[scope=row] a")
        assert rows.all_inner_texts() == titles  # every criterion, by title, in the study's order
        expect(page.locator("#summary svg.mpl-chart").first).to_be_visible()
        assert "simulated" not in page.locator("#report-kind-counts").inner_text()
        expect(page.locator("#report-kind-counts")).to_have_text("0 platform clinicians, 4 imported raters, 1 AI judge")
        heights[name] = page.evaluate("document.documentElement.scrollHeight")
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"] + 1
        page.screenshot(path=str(ARTIFACTS / f"report-summary-{name}.png"), full_page=False)
        page.screenshot(path=str(ARTIFACTS / f"report-full-{name}.png"), full_page=True)
        assert axe_serious_violations(page) == []

        page.get_by_text("Filters and settings").click()
        expect(page.get_by_label("Imported raters")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / f"report-filters-{name}.png"), full_page=False)
        assert axe_serious_violations(page) == []

        # The contents list opens a criterion's section; its position-bias figure says why it is empty.
        page.locator("#contents a", has_text="Safety").click()
        section = page.locator("#criterion-safety")
        expect(section).to_have_attribute("open", "")
        expect(section.locator(".empty-chart", has_text="imported without the side shown")).to_be_visible()
        section.locator("svg.heatmap").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"report-criterion-{name}.png"), full_page=False)
        assert axe_serious_violations(page) == []
        if name == "desktop":
            cell = section.locator("a.heatmap-cell").first
            label = cell.get_attribute("aria-label")
            expected = int(re.search(r"(\d+) comparisons rated by both", label).group(1))
            cell.click()
            expect(page.locator("#item-count")).to_have_text(f"{expected} comparisons")
        context.close()

    # The overview counts the three kinds of rater as the report does.
    for name, size in SIZES:
        context, page = _page(browser, live_server, client, study.owner, size)
        page.goto(f"{live_server.url}/studies/{study.slug}/")
        expect(page.locator("#overview-clinician-sets")).to_contain_text("by 0 platform clinicians")
        expect(page.locator("#overview-external-sets")).to_contain_text("by 4 external raters")
        expect(page.locator("#overview-judge-sets")).to_contain_text("by 1 AI judge")
        page.screenshot(path=str(ARTIFACTS / f"overview-counts-{name}.png"), full_page=False)
        assert axe_serious_violations(page) == []
        context.close()

    context, page = _page(browser, live_server, client, study.owner, SIZES[0][1])
    page.goto(f"{live_server.url}/studies/{study.slug}/reports/print")
    expect(page.locator("#methods")).to_contain_text("Krippendorff")
    expect(page.locator("#provenance")).to_contain_text("Fingerprint")
    heights["printable"] = page.evaluate("document.documentElement.scrollHeight")
    page.screenshot(path=str(ARTIFACTS / "report-print-desktop.png"), full_page=False)
    assert axe_serious_violations(page) == []
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename.endswith(".pdf")
    context.close()
    print("REPORT HEIGHTS", heights)
