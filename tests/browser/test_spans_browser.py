"""Marked passages and guidelines in Chromium at 1366x900 and 390x844: a passage marked by keyboard (sentences in a
dialog) and by mouse (select, then the control by the selection), both surviving reload and revision; the
guidelines shown before the first pair and linked from the pair page; the researcher's editor with its preview;
axe-core finds no serious or critical violation on any of these pages."""

import re

import pytest

from annotations.models import Assignment, Span, Study
from annotations.services.assignment import assignment_next, rater_for_user
from annotations.services.rating import RatingInput, criteria_in_page_order, rating_submit
from annotations.services.spans import SpanInput, span_create
from tests.browser.conftest import ARTIFACTS, axe_serious_violations
from tests.browser.test_pair_layout import LAPTOP, PHONE, long_study, open_pair  # noqa: F401 (fixture)
from tests.browser.test_workspace_browser import log_in, wait_for_pair
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PAIR_URL = re.compile(r"/workspace/pair/([0-9a-f-]{36})/$")
CLOSERS = ".!?…\"'”’)]"


def sentences(text: str) -> list[tuple[int, int]]:
    """The same sentences static/js/spans.js offers in its dialog."""
    found: list[tuple[int, int]] = []

    def push(s: int, e: int) -> None:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            found.append((s, e))

    start, i = 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            push(start, i)
            start = i = i + 1
            continue
        if ch in ".!?…":
            j = i + 1
            while j < len(text) and text[j] in CLOSERS:
                j += 1
            if j >= len(text) or text[j].isspace():
                push(start, j)
                start = j
            i = j
            continue
        i += 1
    push(start, len(text))
    return found


def assignment_of(page) -> Assignment:
    match = PAIR_URL.search(page.url)
    assert match, page.url
    return Assignment.objects.select_related("comparison__response_first", "comparison__response_second").get(
        public_id=match.group(1)
    )


def shown_text(assignment: Assignment, side: int) -> str:
    comparison = assignment.comparison
    left, right = (
        (comparison.response_first, comparison.response_second)
        if assignment.left_is_first is not False
        else (comparison.response_second, comparison.response_first)
    )
    return (left if side == 1 else right).content


def drag_select(page, side: int, phrase: str) -> None:
    """Select `phrase` in a response with the mouse: press at the left edge of its first character, release at
    the right edge of its last, as a person drags."""
    rects = page.evaluate(
        """([side, phrase]) => {
            const root = document.querySelector(`#response-${side} .spans-raw`);
            const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
            let node, offset = 0;
            const full = root.textContent, at = full.indexOf(phrase);
            const charRect = (index) => {
                const w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
                let n, o = 0;
                while ((n = w.nextNode())) {
                    if (index < o + n.data.length) {
                        const r = document.createRange();
                        r.setStart(n, index - o); r.setEnd(n, index - o + 1);
                        const b = r.getBoundingClientRect();
                        return {left: b.left, right: b.right, y: b.top + b.height / 2};
                    }
                    o += n.data.length;
                }
                return null;
            };
            root.closest('.response').scrollTop = 0;
            const first = charRect(at), last = charRect(at + phrase.length - 1);
            return {first, last};
        }""",
        [side, phrase],
    )
    page.mouse.move(rects["first"]["left"] + 1, rects["first"]["y"])
    page.mouse.down()
    page.mouse.move((rects["first"]["left"] + rects["last"]["right"]) / 2, rects["last"]["y"], steps=4)
    page.mouse.move(rects["last"]["right"] - 1, rects["last"]["y"], steps=2)
    page.mouse.up()


def announced(page, text: str) -> None:
    """The live region (role=status) says `text` (it is filled just after the change, so screen readers hear it)."""
    page.wait_for_function("t => document.getElementById('span-live').textContent.includes(t)", arg=text)


def answer_all(page) -> None:
    fieldsets = page.locator("fieldset.criterion")
    for i in range(fieldsets.count()):
        fieldsets.nth(i).locator("label.option").nth(1).click()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_a_passage_is_marked_with_the_keyboard_alone(browser, live_server, long_study, clinician, viewport):  # noqa: F811
    Study.objects.filter(pk=long_study.pk).update(span_labels=["unsafe", "dismissive"])
    context, page = open_pair(browser, live_server, clinician, viewport)
    assignment = assignment_of(page)
    text = shown_text(assignment, 2)

    # From the response itself, Tab reaches its "Mark a passage" button; Enter opens the dialog at "From sentence".
    page.focus("#response-2")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('span-open')")
    assert page.evaluate("document.activeElement.dataset.side") == "2"
    page.keyboard.press("Enter")
    assert page.is_visible("dialog#span-dialog")
    assert page.evaluate("document.activeElement.id") == "span-from"
    assert page.inner_text("#span-dialog-title") == "Mark a passage in Response 2"
    page.keyboard.press("ArrowDown")  # from the second sentence
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "span-to"
    page.keyboard.press("ArrowDown")  # to the third
    page.keyboard.press("Tab")  # the label group, at its checked radio ("Unsafe")
    page.keyboard.press("ArrowRight")  # "Dismissive"
    page.keyboard.press("Tab")
    page.keyboard.type("Moves on from the feeling too fast.")
    _, second, third = sentences(text)[:3]
    assert page.inner_text("#span-preview").startswith(text[second[0] : second[0] + 30].split("\n")[0][:20])
    page.screenshot(path=str(ARTIFACTS / f"spans-01-{viewport['width']}-keyboard-dialog.png"))
    assert axe_serious_violations(page) == []
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "span-save"
    page.keyboard.press("Enter")

    page.wait_for_function("() => !document.getElementById('span-dialog').open")
    span = Span.objects.get()
    assert (span.start, span.end) == (second[0], third[1])
    assert span.quote == text[second[0] : third[1]]
    assert (span.label, span.note) == ("dismissive", "Moves on from the feeling too fast.")
    assert span.assignment_id == assignment.pk
    announced(page, "Marked as Dismissive in Response 2")
    # focus returns to the opener (moved by the dialog's close event)
    page.wait_for_function("() => document.activeElement && document.activeElement.classList.contains('span-open')")
    marked = page.locator("#response-2 mark.span-seg")
    assert marked.count() == 1 and marked.first.inner_text() == span.quote
    assert "1 marked passage" in page.inner_text("#response-2 .span-count")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / f"spans-02-{viewport['width']}-keyboard-marked.png"))

    # Reload: the mark is drawn again from the server.
    page.reload()
    wait_for_pair(page, previous_url="")
    assert page.locator("#response-2 mark.span-seg").first.inner_text() == span.quote
    assert page.locator("#response-1 mark.span-seg").count() == 0

    # "m" while reading a response opens the same dialog for it; Escape closes it and focus goes back.
    page.focus("#response-1")
    page.keyboard.press("m")
    assert page.is_visible("dialog#span-dialog")
    assert page.inner_text("#span-dialog-title") == "Mark a passage in Response 1"
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('span-dialog').open")
    # The dialog's close event (which moves focus back to the opener) is a task queued after `open` turns false.
    page.wait_for_function("() => document.activeElement && document.activeElement.dataset.side === '1'")
    assert Span.objects.count() == 1
    context.close()


def test_a_passage_is_marked_by_mouse_and_survives_reload_and_revision(
    browser,
    live_server,
    long_study,  # noqa: F811
    clinician,
):
    context, page = open_pair(browser, live_server, clinician, LAPTOP)
    assignment = assignment_of(page)
    text = shown_text(assignment, 1)
    phrase = "replaying the argument with my sister"
    assert phrase in text

    drag_select(page, 1, phrase)
    page.wait_for_selector("#span-float:not([hidden])")
    page.screenshot(path=str(ARTIFACTS / "spans-03-1366-mouse-selected.png"))
    assert page.inner_text(".span-open[data-side='1']").startswith("Mark the selected text")
    page.click("#span-float")
    assert page.is_visible("dialog#span-dialog")
    assert page.is_checked("#span-use-selection")
    assert page.inner_text("#span-preview") == phrase
    page.fill("#span-note", "Takes sides.")
    page.click("#span-save")
    page.wait_for_function("() => !document.getElementById('span-dialog').open")
    span = Span.objects.get()
    start = text.index(phrase)
    assert (span.start, span.end, span.quote, span.label) == (start, start + len(phrase), phrase, "unsafe")
    assert page.locator("#response-1 mark.span-seg").first.inner_text() == phrase
    assert page.is_hidden("#span-float")
    page.screenshot(path=str(ARTIFACTS / "spans-04-1366-mouse-marked.png"))
    assert axe_serious_violations(page) == []

    # A second passage overlapping the first, marked the same way, then reload: both are there.
    drag_select(page, 1, "argument with my sister and I")
    page.click("#span-float")
    page.click("#span-save")
    page.wait_for_function("() => !document.getElementById('span-dialog').open")
    assert Span.objects.count() == 2
    page.reload()
    wait_for_pair(page, previous_url="")
    assert "2 marked passages" in page.inner_text("#response-1 .span-count")
    assert page.locator("#response-1 mark.span-multi").count() == 1

    # Submit, then revise from "My submitted pairs": the marks are there, one is removed, the answers saved.
    answer_all(page)
    page.click("#submit-button")
    page.wait_for_url(lambda url: assignment.public_id.hex not in url.replace("-", ""))
    page.goto(f"{live_server.url}/workspace/{long_study.slug}/done")
    page.click(f"a[href$='{assignment.public_id}/']")
    page.wait_for_selector("#response-1 mark.span-seg")
    assert page.inner_text("h1") == "Revise your answers"
    page.click("#response-1 .span-list-box summary")
    page.locator("#response-1 .span-remove").first.click()
    page.wait_for_function("() => document.querySelectorAll('#response-1 .span-item').length === 1")
    announced(page, "Removed the mark")
    assert Span.objects.count() == 1
    page.click("#submit-button")
    page.wait_for_url(f"{live_server.url}/workspace/{long_study.slug}/done")
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED
    assert Span.objects.filter(assignment=assignment).count() == 1
    context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_guidelines_come_before_the_first_pair_and_are_linked_from_the_pair_page(
    browser,
    live_server,
    long_study,  # noqa: F811
    clinician,
    viewport,
):
    Study.objects.filter(pk=long_study.pk).update(
        guidelines="## How to rate\n\nRead **both** responses before answering.\n\n- Mark unsafe passages.\n- Skip a "
        "pair outside your expertise, and say why."
    )
    context = browser.new_context(viewport=viewport, bypass_csp=True)
    page = context.new_page()
    log_in(page, live_server.url, clinician.username)
    assert page.locator("button.ws-next").count() == 0
    assert axe_serious_violations(page) == []
    page.click("a.ws-guidelines-first")
    page.wait_for_selector("h1:has-text('Guidelines for rating')")
    assert "Read both responses before answering." in page.inner_text(".guidelines-text")
    assert page.locator(".rubric > li").count() == 7
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / f"guidelines-01-{viewport['width']}-before-first-pair.png"), full_page=True)
    assert axe_serious_violations(page) == []
    page.locator("button.ws-start").click()
    wait_for_pair(page)
    pair_url = page.url

    page.click("a.ws-guidelines-link")
    page.wait_for_selector("a.guidelines-back")
    page.click("a.guidelines-back")
    page.wait_for_url(pair_url)
    page.goto(f"{live_server.url}/workspace/")
    assert page.locator("button.ws-next").count() == 1, "read once: rating goes straight on"
    context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_researcher_writes_guidelines_with_a_preview(browser, live_server, long_study, researcher, viewport):  # noqa: F811
    context = browser.new_context(viewport=viewport, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", researcher.username)
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
    page.goto(f"{live_server.url}/studies/{long_study.slug}/guidelines")
    page.fill("#guidelines-text", "## Before you start\n\nBe **kind** and *careful*.")
    page.fill("#span-labels", "unsafe\nvalidating\ndismissive")
    page.click("button[value=preview]")
    page.wait_for_selector(".guidelines-preview strong")
    assert page.inner_text(".guidelines-preview h2 + .guidelines-text h3") == "Before you start"
    page.click("button[value=save]")
    page.wait_for_selector(".message.success")
    long_study.refresh_from_db()
    assert long_study.span_labels == ["unsafe", "validating", "dismissive"]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / f"guidelines-02-{viewport['width']}-editor.png"), full_page=True)
    assert axe_serious_violations(page) == []
    context.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_researchers_see_marked_passages_in_the_item_explorer(
    browser,
    live_server,
    long_study,  # noqa: F811
    clinician,
    researcher,
    viewport,
):
    rater = rater_for_user(user=clinician)
    assignment = assignment_next(study=long_study, rater=rater)
    span, _ = span_create(
        assignment=assignment,
        rater=rater,
        data=SpanInput(side=1, start=0, end=24, label="unsafe", note="Too quick to reassure."),
    )
    keys = [c.key for c in criteria_in_page_order(long_study)]
    rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(keys, 1)))
    context = browser.new_context(viewport=viewport, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", researcher.username)
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
    page.goto(f"{live_server.url}/studies/{long_study.slug}/items/")
    box = page.locator(f"#item-{assignment.comparison_id} .item-spans")
    assert "Too quick to reassure." in box.inner_text() and span["quote"][:20] in box.inner_text()
    box.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"spans-05-{viewport['width']}-item-explorer.png"))
    assert axe_serious_violations(page) == []
    context.close()
