"""Open, close (after a confirmation that says what closing does) and reopen a study; every change is in its
history, in plain words with who and when, on the page, the API and manage.py."""

import pytest
from django.test import Client

from annotations.models import Assignment, AuditEvent, Study
from annotations.services.assignment import assignment_next
from annotations.services.studies import study_close, study_open

pytestmark = pytest.mark.django_db


def _login(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_closing_asks_first_and_says_what_it_does(world):
    study_open(study=world.study, actor=world.researcher)
    client = _login(world.researcher)
    detail = client.get(f"/studies/{world.study.slug}/").content.decode()
    assert f'href="/studies/{world.study.slug}/close"' in detail and "Close the study…" in detail
    confirm = client.get(f"/studies/{world.study.slug}/close").content.decode()
    assert "No new pairs." in confirm
    assert "Right now 1 pair is in clinicians' hands" in confirm
    assert "reports, the item explorer, exports and AI judging still work" in confirm
    # A post without the confirmation lands on the confirmation page and changes nothing.
    unconfirmed = client.post(f"/studies/{world.study.slug}/close")
    assert unconfirmed.status_code == 302 and unconfirmed["Location"].endswith("/close")
    assert Study.objects.get(pk=world.study.pk).status == Study.Status.OPEN
    closed = client.post(f"/studies/{world.study.slug}/close", {"confirm": "yes"}, follow=True).content.decode()
    assert "The study is closed. You can reopen it from this page." in closed
    assert "Reopen the study" in closed
    study = Study.objects.get(pk=world.study.pk)
    assert study.status == Study.Status.CLOSED and study.closed_at is not None
    # What the page said is what happened: the lease and its draft stay, no new pair is handed out.
    assert Assignment.objects.get(pk=world.assignment.pk).status == Assignment.Status.LEASED
    assert assignment_next(study=study, rater=world.clinician.rater) is None
    event = AuditEvent.objects.get(action="study.close")
    assert event.actor == world.researcher and event.data["leases_open"] == 1


def test_a_closed_study_is_reopened_from_its_page_and_the_history_says_so(world):
    study_open(study=world.study, actor=world.researcher)
    study_close(study=world.study, actor=world.researcher)
    client = _login(world.researcher)
    page = client.post(f"/studies/{world.study.slug}/open", follow=True).content.decode()
    assert "The study is open again" in page
    study = Study.objects.get(pk=world.study.pk)
    assert study.status == Study.Status.OPEN and study.closed_at is None
    assert list(
        AuditEvent.objects.filter(study=study, action__startswith="study.")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["study.create", "study.open", "study.close", "study.reopen"]
    history = client.get(f"/studies/{world.study.slug}/history/?kind=lifecycle").content.decode()
    for sentence in ("Created the study.", "Opened the study for rating.", "Closed the study", "Reopened the study"):
        assert sentence in history
    assert f"<strong>{world.researcher.username}</strong>" in history
    # The overview shows the latest lifecycle changes too.
    assert "Reopened the study for rating." in client.get(f"/studies/{world.study.slug}/").content.decode()
    api = client.get(f"/api/v1/studies/{world.study.slug}/history?kind=lifecycle").json()
    lines = api["results"] if isinstance(api, dict) else api
    assert lines[0]["action"] == "study.reopen" and lines[0]["who"] == world.researcher.username
    assert client.get(f"/api/v1/studies/{world.study.slug}/history?kind=bogus").status_code == 400


def test_closing_twice_or_reopening_twice_records_one_change(world):
    study_open(study=world.study, actor=world.researcher)
    study_close(study=world.study, actor=world.researcher)
    study_close(study=world.study, actor=world.researcher)
    study_open(study=world.study, actor=world.researcher)
    study_open(study=world.study, actor=world.researcher)
    assert AuditEvent.objects.filter(action="study.close").count() == 1
    assert AuditEvent.objects.filter(action="study.reopen").count() == 1


def test_the_default_history_leaves_out_rating_work_and_words_every_row(world):
    study_open(study=world.study, actor=world.researcher)
    assignment_next(study=world.study, rater=world.other_clinician.rater)  # not a member: claims nothing
    from annotations.services.audit import audit_record

    audit_record(actor=None, action="assignment.expire", study=world.study, data={"assignment": 1})
    audit_record(actor=world.researcher, action="screening.resolve", study=world.study, data={"hit": 3, "x": [1, 2]})
    page = _login(world.researcher).get(f"/studies/{world.study.slug}/history/").content.decode()
    assert "assignment.expire" not in page
    assert "Screening resolve. " in page and "Hit: 3" in page and "X: 1, 2" in page
    assert "{'" not in page and "['" not in page
    everything = _login(world.researcher).get(f"/studies/{world.study.slug}/history/?kind=all").content.decode()
    assert 'data-action="assignment.expire"' in everything
    assert "a script or the system" in everything
