"""A clinician in Chromium: calibration with feedback, three pairs by keyboard alone, a reload mid-pair that
loses nothing, a revision; then the database holds exactly those ratings, canonically oriented. The core again
at a phone-sized viewport, and axe-core finds no serious or critical problem on the pair page."""

import re

import pytest

from annotations.models import Assignment, AuditEvent, Comparison, Rating, StudyMembership
from annotations.services.rating import comparison_mark_gold
from tests.browser.conftest import ARTIFACTS, axe_serious_violations
from tests.conftest import PASSWORD
from tests.workspace.conftest import build_study

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
KEYS = ("empathy", "safety", "overall")
PAIR_URL = re.compile(r"/workspace/pair/([0-9a-f-]{36})/$")


@pytest.fixture
def keyboard_study(researcher, clinician):
    study = build_study(owner=researcher, prompts=3, overlap_k=1, calibration_size=1)
    gold = Comparison.objects.filter(study=study).order_by("id").first()
    comparison_mark_gold(comparison=gold, expected={"safety": -1, "overall": -1}, actor=researcher)
    StudyMembership.objects.create(study=study, user=clinician, role=StudyMembership.Role.CLINICIAN)
    return study


def log_in(page, base_url, username):
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/workspace/")


def current_assignment(page) -> Assignment:
    match = PAIR_URL.search(page.url)
    assert match, page.url
    return Assignment.objects.get(public_id=match.group(1))


def canonical(displayed: dict[str, int], assignment: Assignment) -> dict[str, int]:
    return {k: v if assignment.left_is_first else -v for k, v in displayed.items()}


def wait_for_pair(page, previous_url=None):
    page.wait_for_function(
        "u => location.href !== u && /\\/workspace\\/pair\\/[^/]+\\/$/.test(location.pathname)", arg=previous_url or ""
    )
    page.wait_for_selector("fieldset.criterion.current")


def press_all(page, keys):
    for key in keys:
        page.keyboard.press(key)


def test_a_clinician_rates_with_the_keyboard_alone(browser, live_server, keyboard_study, clinician):
    base = live_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, base, clinician.username)
    assert "Rate next" in page.inner_text("main")
    page.screenshot(path=str(ARTIFACTS / "01-my-studies.png"), full_page=True)
    page.focus("button.ws-next")
    page.keyboard.press("Enter")
    wait_for_pair(page)

    # Calibration: answer "About the same" on all three with keys, submit with Enter, read the feedback.
    assert "Calibration pair" in page.inner_text("h1")
    calibration = current_assignment(page)
    press_all(page, ["2", "2", "2", "Enter"])
    page.wait_for_url(re.compile(r"/feedback$"))
    feedback = page.inner_text("main")
    assert "Calibration feedback" in feedback and "Expected:" in feedback and "Better when:" in feedback
    page.screenshot(path=str(ARTIFACTS / "02-calibration-feedback.png"), full_page=True)
    expected = {"empathy": 0, "safety": 0, "overall": 0}
    page.keyboard.press("Enter")  # "Continue" has the focus
    wait_for_pair(page)

    # Pair 1: digits choose and advance; Enter submits.
    first = current_assignment(page)
    page.keyboard.press("?")
    assert page.is_visible("dialog#help")
    page.screenshot(path=str(ARTIFACTS / "03-help-overlay.png"))
    page.keyboard.press("Escape")
    assert not page.is_visible("dialog#help")
    press_all(page, ["1", "3", "1"])
    page.screenshot(path=str(ARTIFACTS / "04-pair-answered.png"), full_page=True)
    page.keyboard.press("Enter")
    wait_for_pair(page, page.url)
    answers = {first.pk: {"empathy": -1, "safety": 1, "overall": -1}}

    # Pair 2: answer one criterion, reload mid-pair, and the answer and focus come back.
    second = current_assignment(page)
    page.keyboard.press("3")
    page.wait_for_function("() => document.getElementById('save-status').textContent.includes('saved')")
    page.reload()
    page.wait_for_selector("fieldset.criterion.current")
    assert page.is_checked("input[name=v_empathy][value='1']")
    assert page.evaluate("document.activeElement.name") == "v_safety"  # the first unanswered criterion
    press_all(page, ["2", "r"])
    page.keyboard.type("Warmer, and it names the risk.")
    page.keyboard.press("Escape")
    page.keyboard.press("j")  # from safety down to overall
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_for_pair(page, page.url)
    answers[second.pk] = {"empathy": 1, "safety": 0, "overall": 1}

    # Pair 3: arrow keys within a criterion, j/k between criteria; Enter on an incomplete form jumps back.
    third = current_assignment(page)
    page.keyboard.press("ArrowRight")  # empathy -> second option
    page.keyboard.press("ArrowRight")  # -> third option
    page.keyboard.press("j")
    page.keyboard.press("Enter")  # safety unanswered: no submission, focus stays there
    assert page.evaluate("document.activeElement.name") == "v_safety"
    assert current_assignment(page).pk == third.pk
    press_all(page, ["1", "2", "Enter"])
    wait_for_pair(page, page.url)
    answers[third.pk] = {"empathy": 1, "safety": -1, "overall": 0}

    # Revise pair 1 from "My submitted pairs".
    page.goto(f"{base}/workspace/{keyboard_study.slug}/done")
    page.screenshot(path=str(ARTIFACTS / "05-submitted-pairs.png"), full_page=True)
    page.goto(f"{base}/workspace/pair/{first.public_id}/")
    page.wait_for_selector("fieldset.criterion.current")
    assert page.is_checked("input[name=v_safety][value='1']")
    press_all(page, ["2", "2", "3", "Enter"])
    page.wait_for_url(f"{base}/workspace/{keyboard_study.slug}/done")
    answers[first.pk] = {"empathy": 0, "safety": 0, "overall": 1}
    context.close()

    # The database holds exactly the expected ratings, canonical orientation, plus the revision in the audit log.
    stored = {}
    for assignment_id, key, value in Rating.objects.values_list("assignment_id", "criterion__key", "value"):
        stored.setdefault(assignment_id, {})[key] = value
    want = {calibration.pk: canonical(expected, calibration)}
    for assignment in Assignment.objects.filter(pk__in=answers):
        want[assignment.pk] = canonical(answers[assignment.pk], assignment)
    assert stored == want
    assert Assignment.objects.get(pk=second.pk).rationale == "Warmer, and it names the risk."
    assert AuditEvent.objects.filter(action="rating.revise", object_id=str(first.pk)).count() == 1
    timed = Assignment.objects.get(pk=second.pk)
    assert timed.total_seconds > 0 and 0 < timed.active_seconds <= timed.total_seconds + 1


def test_phone_viewport_and_accessibility(browser, live_server, keyboard_study, clinician):
    base = live_server.url
    # bypass_csp only so that axe-core can be injected; the app's own pages never need it.
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, bypass_csp=True)
    page = context.new_page()
    log_in(page, base, clinician.username)
    page.focus("button.ws-next")
    page.keyboard.press("Enter")
    wait_for_pair(page)
    violations = axe_serious_violations(page)
    assert violations == [], violations
    # Stacked on a narrow screen: Response 2 sits below Response 1, and the page does not scroll sideways.
    boxes = [page.locator("article.response").nth(i).bounding_box() for i in range(2)]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / "06-phone-pair.png"), full_page=True)

    calibration = current_assignment(page)
    page.locator("input[name=v_empathy][value='-1']").check()  # a tap on the big target
    page.wait_for_function("() => document.getElementById('save-status').textContent.includes('saved')")
    page.reload()
    page.wait_for_selector("fieldset.criterion.current")
    assert page.is_checked("input[name=v_empathy][value='-1']")
    press_all(page, ["1", "1", "Enter"])
    page.wait_for_url(re.compile(r"/feedback$"))
    page.screenshot(path=str(ARTIFACTS / "07-phone-feedback.png"), full_page=True)
    page.keyboard.press("Enter")
    wait_for_pair(page)
    violations = axe_serious_violations(page)  # the plain (non-calibration) pair page too
    assert violations == [], violations
    context.close()
    values = dict(Rating.objects.filter(assignment=calibration).values_list("criterion__key", "value"))
    assert values == canonical({"empathy": -1, "safety": -1, "overall": -1}, calibration)
