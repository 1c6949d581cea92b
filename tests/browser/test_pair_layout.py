"""The pair page's layout in Chromium, with seven criteria and texts of realistic size (about 1,500 characters):
on a laptop both responses stay in view while each criterion has focus and nothing passes under the submit bar;
every refused submit explains itself where the clinician is looking and in a live region; a phone opens at the top
of the conversation, shows no keyboard hints and flips between the responses without losing its place."""

import io
import json
import re

import pytest

from annotations.models import StudyMembership
from annotations.services.comparisons import comparisons_build
from annotations.services.importing import import_study_file
from annotations.services.studies import study_create, study_open
from tests.browser.conftest import ARTIFACTS, axe_serious_violations
from tests.browser.test_workspace_browser import log_in, wait_for_pair

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
SENTENCE = "I keep replaying the argument with my sister and I cannot tell whether I was unfair to her or to myself. "


def long_text(seed: str, length: int = 1500) -> str:
    text = f"{seed}. " + SENTENCE * (length // len(SENTENCE) + 1)
    return "\n\n".join(text[i : i + 300] for i in range(0, length, 300))


@pytest.fixture
def long_study(researcher, clinician):
    lines = []
    for p in range(3):
        messages = [{"role": "user", "content": long_text(f"Help-seeker {p}")}]
        lines.append({"kind": "prompt", "id": f"prompt-{p}", "messages": messages})
        for s, system in enumerate(("zephyr-modpo-x9", "quokka-base-k4")):
            content = long_text(f"Response variant {s} to {p}")
            lines.append(
                {"kind": "response", "id": f"r-{p}-{s}", "prompt": f"prompt-{p}", "system": system, "content": content}
            )
    study = study_create(slug="long", title="Long texts", owner=researcher, overlap_k=1)  # all seven criteria
    stream = io.BytesIO("\n".join(json.dumps(line) for line in lines).encode())
    import_study_file(study=study, stream=stream, filename="long.jsonl", actor=researcher)
    comparisons_build(study=study, actor=researcher)
    study = study_open(study=study, actor=researcher)
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    return study


def open_pair(browser, live_server, clinician, viewport, **options):
    context = browser.new_context(viewport=viewport, bypass_csp=True, **options)
    page = context.new_page()
    log_in(page, live_server.url, clinician.username)
    page.click("button.ws-next")
    if options.get("java_script_enabled", True):
        wait_for_pair(page)
    else:
        page.wait_for_url(re.compile(r"/workspace/pair/[0-9a-f-]{36}/$"))
    return context, page


def box(page, selector_or_handle):
    handle = page.locator(selector_or_handle) if isinstance(selector_or_handle, str) else selector_or_handle
    return handle.bounding_box()


def visible_part(page, locator) -> dict | None:
    """The part of an element not clipped by its scrolling ancestors or the viewport, in viewport coordinates."""
    return locator.evaluate(
        """el => {
            let r = el.getBoundingClientRect();
            let top = r.top, bottom = r.bottom, left = r.left, right = r.right;
            for (let p = el.parentElement; p; p = p.parentElement) {
                const s = getComputedStyle(p);
                if (/(auto|scroll|hidden)/.test(s.overflowY) && p !== document.body && p !== document.documentElement) {
                    const c = p.getBoundingClientRect();
                    top = Math.max(top, c.top); bottom = Math.min(bottom, c.bottom);
                    left = Math.max(left, c.left); right = Math.min(right, c.right);
                }
            }
            top = Math.max(top, 0); bottom = Math.min(bottom, window.innerHeight);
            left = Math.max(left, 0); right = Math.min(right, window.innerWidth);
            return bottom - top > 1 && right - left > 1 ? {x: left, y: top, width: right - left, height: bottom - top} : null;
        }"""
    )


def overlaps(a: dict | None, b: dict | None) -> bool:
    if not a or not b:
        return False
    return (
        a["x"] < b["x"] + b["width"] - 0.5
        and b["x"] < a["x"] + a["width"] - 0.5
        and a["y"] < b["y"] + b["height"] - 0.5
        and b["y"] < a["y"] + a["height"] - 0.5
    )


def in_viewport(page, locator, min_height: float = 40) -> bool:
    part = visible_part(page, locator)
    return part is not None and part["height"] >= min(min_height, locator.bounding_box()["height"])


def bar_box(page) -> dict:
    return page.locator(".ws-submit").evaluate(
        "el => { const r = el.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
    )


def answer_controls_covered(page, bars: list[str]) -> list[str]:
    """Answer controls whose visible part lies under one of the bars."""
    covered = []
    rects = [
        page.locator(sel).evaluate(
            "el => { const r = el.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
        )
        for sel in bars
        if page.locator(sel).is_visible()
    ]
    controls = page.locator(
        "fieldset.criterion label.option, #both-unacceptable, #unacceptable-reason, textarea.rationale"
    )
    for i in range(controls.count()):
        part = visible_part(page, controls.nth(i))
        if any(overlaps(part, rect) for rect in rects):
            covered.append(controls.nth(i).inner_text() or f"control {i}")
    return covered


def test_on_a_laptop_both_responses_stay_in_view_while_each_criterion_has_focus(
    browser, live_server, long_study, clinician
):
    context, page = open_pair(browser, live_server, clinician, LAPTOP)
    page.screenshot(path=str(ARTIFACTS / "layout-01-laptop-pair.png"))
    fieldsets = page.locator("fieldset.criterion")
    assert fieldsets.count() == 7
    assert answer_controls_covered(page, [".ws-submit"]) == []
    for i in range(7):
        key = fieldsets.nth(i).get_attribute("data-key")
        page.locator(f"input[name=v_{key}]").first.focus()
        assert page.evaluate("document.activeElement.name") == f"v_{key}"
        for n in (1, 2):
            assert in_viewport(page, page.locator(f"#response-{n}"), min_height=200), (key, n)
        assert in_viewport(page, fieldsets.nth(i).locator("label.option").first)
        assert answer_controls_covered(page, [".ws-submit"]) == [], key
        page.keyboard.press("2")  # answer it and move on, as a clinician does
    submit = page.locator("#submit-button")
    assert in_viewport(page, submit), "submitting needs no scrolling"
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 1")
    page.screenshot(path=str(ARTIFACTS / "layout-02-laptop-answered.png"))
    assert axe_serious_violations(page) == []
    context.close()


def settled_scroll_y(page) -> float:
    """window.scrollY once it stops moving: a click can start a smooth scroll (or focus scrolling) that is
    still running when the next line reads the position."""
    previous = page.evaluate("window.scrollY")
    for _ in range(40):
        page.wait_for_timeout(50)
        current = page.evaluate("window.scrollY")
        if current == previous:
            return current
        previous = current
    return previous


def test_a_phone_opens_at_the_top_and_flips_between_responses_in_place(browser, live_server, long_study, clinician):
    context, page = open_pair(browser, live_server, clinician, PHONE, has_touch=True, is_mobile=True)
    page.wait_for_timeout(300)
    assert page.evaluate("window.scrollY") == 0
    assert in_viewport(page, page.locator("#conversation-heading"), min_height=10)
    assert page.locator("kbd:visible, .option-key:visible").count() == 0, "no keyboard hints on a touch screen"
    assert not page.is_visible("#help-open")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / "layout-03-phone-top.png"))
    assert axe_serious_violations(page) == []

    # Rate down to the fifth criterion, then read Response 2 and come back to the same place.
    fifth = page.locator("fieldset.criterion").nth(4)
    fifth.locator("label.option").first.scroll_into_view_if_needed()
    fifth.locator("label.option").first.click()
    assert answer_controls_covered(page, [".ws-submit", "#peek-bar"]) == []
    assert page.is_visible("#peek-bar")
    place = settled_scroll_y(page)
    # A tap on the sticky button (Playwright's click would first scroll the button's place in the flow into view).
    page.get_by_role("button", name="Read Response 2").dispatch_event("click")
    assert page.is_visible("dialog#peek")
    assert "Response variant" in page.inner_text("#peek-body")
    page.screenshot(path=str(ARTIFACTS / "layout-04-phone-peek.png"))
    page.locator("dialog#peek .peek-flip", has_text="Response 1").click()
    assert page.get_attribute("dialog#peek .peek-flip >> nth=0", "aria-pressed") == "true"
    page.click("#peek-close")
    assert not page.is_visible("dialog#peek")
    assert abs(settled_scroll_y(page) - place) <= 1
    page.screenshot(path=str(ARTIFACTS / "layout-05-phone-rating.png"))
    context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_every_refused_submit_explains_itself_where_the_clinician_looks(
    browser, live_server, long_study, clinician, viewport
):
    context, page = open_pair(browser, live_server, clinician, viewport)
    first = page.locator("fieldset.criterion").first
    first.locator("label.option").first.click()  # one answer, so autosave runs while the errors are shown
    page.click("#submit-button")
    summary = page.locator("#error-summary")
    assert page.get_attribute("#error-summary", "role") == "alert"
    assert "Choose an answer for" in summary.inner_text()
    second = page.locator("fieldset.criterion").nth(1)
    assert "Choose an answer for" in second.locator(".criterion-errors").inner_text()
    assert in_viewport(page, second.locator(".criterion-errors .error"), min_height=10)
    if viewport is LAPTOP:
        assert in_viewport(page, summary.locator(".ws-errors"), min_height=10)
    page.wait_for_function("() => document.getElementById('save-status').textContent.includes('saved')")
    assert "Choose an answer for" in summary.inner_text(), "autosave must not replace the errors"
    page.screenshot(path=str(ARTIFACTS / f"layout-06-{viewport['width']}-refused.png"))

    # Answer everything, tick "both unacceptable" without a reason: refused, and said so at the reason.
    for i in range(7):
        page.locator("fieldset.criterion").nth(i).locator("label.option").nth(1).click()
    assert summary.inner_text().strip() == "", "each fix clears its message"
    page.check("#both-unacceptable")
    page.click("#submit-button")
    reason_error = page.locator("#errors-unacceptable_reason .error")
    assert "Say why both responses are unacceptable" in reason_error.inner_text()
    assert in_viewport(page, reason_error, min_height=10)
    assert "Say why both responses are unacceptable" in summary.inner_text()
    assert page.evaluate("document.activeElement.id") == "unacceptable-reason"
    page.fill("#unacceptable-reason", "Both promise outcomes they cannot know.")
    with page.expect_navigation():
        page.click("#submit-button")
    assert not re.search(r"Not submitted", page.inner_text("main"))
    context.close()


def test_without_javascript_the_server_explains_a_refused_submit_at_the_criterion_and_the_bar(
    browser, live_server, long_study, clinician
):
    context, page = open_pair(browser, live_server, clinician, LAPTOP, java_script_enabled=False)
    page.check("#both-unacceptable")
    with page.expect_navigation():
        page.click("#submit-button")
    summary = page.locator("#error-summary .ws-errors")
    assert "Choose an answer for" in summary.inner_text()
    assert "Say why both responses are unacceptable" in summary.inner_text()
    assert in_viewport(page, summary, min_height=10)
    assert "Choose an answer for" in page.locator("fieldset.criterion").first.locator(".criterion-errors").inner_text()
    page.screenshot(path=str(ARTIFACTS / "layout-07-laptop-server-refused.png"))
    context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_my_pairs_lists_answers_and_skips_and_a_skip_can_be_taken_back(
    browser, live_server, long_study, clinician, viewport
):
    context, page = open_pair(browser, live_server, clinician, viewport)
    for i in range(7):
        page.locator("fieldset.criterion").nth(i).locator("label.option").first.click()
    with page.expect_navigation():
        page.click("#submit-button")
    page.click("details.skip summary")
    page.fill("#skip-reason", "I know this person")
    with page.expect_navigation():
        page.click("details.skip button[type=submit]")
    page.goto(f"{live_server.url}/workspace/{long_study.slug}/done")
    main = page.inner_text("main")
    assert "Help-seeker" in main and "Empathy: Response 1 better" in main and "I know this person" in main
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / f"layout-08-{viewport['width']}-my-pairs.png"), full_page=True)
    assert axe_serious_violations(page) == []
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Take back and rate")).click()
    assert "/workspace/pair/" in page.url and page.locator("fieldset.criterion").count() == 7
    context.close()
