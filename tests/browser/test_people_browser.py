"""A researcher runs a study's people and lifecycle in the browser: invites (the link shown to copy), revokes,
sets a quota, removes a clinician after a confirmation, closes after a confirmation, reopens and reads the
history, at desktop (1366×900) and phone (390×844) sizes, with axe-core clean."""

import pytest

from annotations.models import Invitation, Study, StudyMembership
from annotations.services.studies import study_open
from tests.browser.conftest import ARTIFACTS, axe_serious_violations
from tests.security.conftest import world  # noqa: F401  (personas, study s1 with a clinician's lease)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, client, user, **size):
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    # bypass_csp only so that axe-core can be injected; the app's own pages never need it.
    context = browser.new_context(bypass_csp=True, **size)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context


def _fits_phone(page) -> None:
    widest = page.evaluate(
        "() => [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > 391)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, widest


def test_a_researcher_invites_revokes_sets_a_quota_and_removes_a_clinician(browser, live_server, client, world):  # noqa: F811
    from playwright.sync_api import expect

    study = world.study
    context = _context(browser, live_server, client, world.researcher, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/studies/{study.slug}/")
    page.get_by_role("link", name="People", exact=True).click()
    expect(page.get_by_role("heading", name=f"{study.title}: people")).to_be_visible()
    expect(page.get_by_text("No invitations for this study yet.")).to_be_visible()
    page.get_by_label("Email").fill("new.clinician@example.org")
    page.get_by_label("Role", exact=True).select_option("clinician")
    page.get_by_label("Quota (pairs, clinicians only; optional)").first.fill("15")
    page.get_by_role("button", name="Create invitation").click()
    invitation = Invitation.objects.get(email="new.clinician@example.org")
    expect(page.locator("#new-link-url")).to_have_value(f"{live_server.url}/invitations/{invitation.token}/")
    expect(page.get_by_text("copy this link and send it to them yourself")).to_be_visible()
    expect(page.locator('tr[data-state="pending"]')).to_contain_text("new.clinician@example.org")
    page.screenshot(path=str(ARTIFACTS / "people-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []

    page.get_by_role("button", name="Revoke invitation to new.clinician@example.org").click()
    expect(page.locator('tr[data-state="revoked"]')).to_contain_text("new.clinician@example.org")
    # The withdrawn link says so to whoever opens it.
    stranger = browser.new_context().new_page()
    stranger.goto(f"{live_server.url}/invitations/{invitation.token}/")
    expect(stranger.locator("#invitation-reason")).to_contain_text("withdrawn by the study team")
    stranger.context.close()

    page.get_by_label(f"Quota for {world.clinician.username}").fill("12")
    page.get_by_role("button", name=f"Save quota for {world.clinician.username}").click()
    expect(page.get_by_text(f"{world.clinician.username} is asked to rate 12 pairs.")).to_be_visible()
    assert StudyMembership.objects.get(study=study, user=world.clinician).quota == 12

    page.get_by_role("link", name=f"Remove {world.clinician.username}").click()
    expect(page.get_by_role("heading", name=f"Remove {world.clinician.username} from {study.title}?")).to_be_visible()
    expect(page.get_by_text("The 1 pair they have in hand goes back to the pool")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "people-remove-confirm-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []
    page.get_by_role("button", name=f"Remove {world.clinician.username}").click()
    expect(page.get_by_text(f"{world.clinician.username} is removed from this study.")).to_be_visible()
    expect(page.get_by_text("No clinicians yet.")).to_be_visible()
    assert not StudyMembership.objects.filter(study=study, user=world.clinician).exists()
    context.close()

    phone = _context(
        browser, live_server, client, world.researcher, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    small = phone.new_page()
    small.goto(f"{live_server.url}/studies/{study.slug}/members/")
    expect(small.locator('tr[data-state="revoked"]')).to_be_attached()
    small.screenshot(path=str(ARTIFACTS / "people-phone.png"), full_page=True)
    _fits_phone(small)
    assert axe_serious_violations(small) == []
    phone.close()


def test_a_researcher_closes_after_confirming_reopens_and_reads_the_history(browser, live_server, client, world):  # noqa: F811
    from playwright.sync_api import expect

    study = study_open(study=world.study, actor=world.researcher)
    context = _context(browser, live_server, client, world.researcher, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/studies/{study.slug}/")
    page.get_by_role("link", name="Close the study…").click()
    expect(page.get_by_role("heading", name=f"Close “{study.title}”?")).to_be_visible()
    expect(page.locator("#close-consequences")).to_contain_text("Right now 1 pair is in clinicians' hands")
    page.screenshot(path=str(ARTIFACTS / "study-close-confirm-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []
    page.get_by_role("button", name="Close the study").click()
    expect(page.get_by_text("The study is closed. You can reopen it from this page.")).to_be_visible()
    assert Study.objects.get(pk=study.pk).status == Study.Status.CLOSED
    page.get_by_role("button", name="Reopen the study").click()
    expect(page.get_by_text("The study is open again: clinicians can rate.")).to_be_visible()
    expect(page.locator("#lifecycle")).to_contain_text("Reopened the study for rating.")
    page.screenshot(path=str(ARTIFACTS / "study-lifecycle-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []
    page.get_by_role("link", name="History", exact=True).click()
    history = page.locator("#history")
    for line in ("Created the study.", "Opened the study for rating.", "Closed the study", "Reopened the study"):
        expect(history).to_contain_text(line)
    expect(history).to_contain_text(world.researcher.username)
    page.screenshot(path=str(ARTIFACTS / "study-history-desktop.png"), full_page=True)
    assert axe_serious_violations(page) == []
    context.close()

    phone = _context(
        browser, live_server, client, world.researcher, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    small = phone.new_page()
    for name, path in (("study-close-confirm", "close"), ("study-history", "history/"), ("study-overview", "")):
        small.goto(f"{live_server.url}/studies/{study.slug}/{path}")
        small.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
        _fits_phone(small)
        assert axe_serious_violations(small) == [], name
    phone.close()
