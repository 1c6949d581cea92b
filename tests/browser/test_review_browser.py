"""A researcher adjudicates a disputed item and works through the safety queue, at desktop (1366x900) and phone
(390x844) sizes, with axe-core clean and no sideways scrolling on the phone."""

import pytest
from django.utils import timezone

from annotations.models import Adjudication, Assignment, Rater, SafetyReview, Span
from tests.adjudication.conftest import split_rule
from tests.browser.conftest import ARTIFACTS, axe_serious_violations
from tests.exports.conftest import build_rated_study

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


def _flag(data):
    first, second = data.comparisons[:2]
    Assignment.objects.filter(comparison=first, rater__label="rater-a").update(
        both_unacceptable=True, unacceptable_reason="Both ignore the mention of pills."
    )
    marked = Assignment.objects.get(comparison=second, rater__label="rater-b")
    Span.objects.create(
        assignment=marked,
        response=second.response_first,
        start=0,
        end=12,
        label="unsafe",
        note="Minimises the risk",
        quote=second.response_first.content[:12],
    )
    rater, _ = Rater.objects.get_or_create(kind=Rater.Kind.EXTERNAL, label="rater-skip")
    Assignment.objects.create(
        study=data.study,
        comparison=data.comparisons[2],
        rater=rater,
        status=Assignment.Status.SKIPPED,
        skip_reason="Talks about self-harm; needs a supervisor.",
        submitted_at=timezone.now(),
    )


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_researcher_adjudicates_and_reviews_the_safety_queue(browser, live_server, client, study, researcher, size):
    from playwright.sync_api import expect

    data = build_rated_study(study, prompts=4, vote_rule=split_rule)
    _flag(data)
    client.force_login(researcher, backend="django.contrib.auth.backends.ModelBackend")
    context = browser.new_context(viewport=SIZES[size], bypass_csp=True, is_mobile=size == "phone")
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()

    def check(name):
        page.screenshot(path=str(ARTIFACTS / f"review-{name}-{size}.png"), full_page=True)
        assert axe_serious_violations(page) == []
        if size == "phone":
            assert page.evaluate("document.documentElement.scrollWidth") <= SIZES["phone"]["width"]

    page.goto(f"{live_server.url}/studies/{study.slug}/progress")
    expect(page.get_by_role("heading", name="Safety queue (3)")).to_be_visible()
    check("progress")
    page.get_by_role("navigation", name="Study sections").get_by_role("link", name="Disputes").click()
    expect(page.get_by_role("heading", name="Disputed items per criterion")).to_be_visible()
    expect(page.locator("#dispute-count")).to_have_text("8 items")
    check("disputes")
    page.get_by_role("link", name="Review the next unresolved item").click()
    expect(page.get_by_role("heading", name="Every rating on Empathy")).to_be_visible()
    check("dispute-item")
    page.get_by_role("radio", name="Response 2").check()
    page.get_by_label("Reason").fill("Stays with the feeling instead of advising.")
    page.get_by_role("button", name="Save and go to the next unresolved").click()
    expect(page.get_by_text("Decision saved for comparison")).to_be_visible()
    expect(page.get_by_role("heading", name="Every rating on Safety")).to_be_visible()
    assert Adjudication.objects.get().value == 1

    page.get_by_role("navigation", name="Study sections").get_by_role("link", name="Safety").click()
    expect(page.get_by_text("Minimises the risk")).to_be_visible()
    expect(page.get_by_text("Talks about self-harm; needs a supervisor.")).to_be_visible()
    expect(page.get_by_text("Both ignore the mention of pills.")).to_be_visible()
    check("safety")
    first = page.locator("article").first
    first.get_by_label("Note").fill("Sent to the clinical lead.")
    first.get_by_role("button", name="Save the note").click()
    expect(page.get_by_text("Note saved on comparison")).to_be_visible()
    page.locator("article").first.get_by_role("button", name="Mark reviewed").click()
    expect(page.get_by_text("marked reviewed")).to_be_visible()
    assert SafetyReview.objects.filter(status="reviewed").count() == 1
    page.locator("article").first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    page.get_by_role("button", name="Exclude Response 1 from exports").click()
    expect(page.get_by_text("is excluded from new exports")).to_be_visible()
    check("safety-pair")
    context.close()
