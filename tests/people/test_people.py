"""A study's People: invite (with a quota), resend, revoke, set quotas and remove members, by page, API and
manage.py; each change audited; a revoked link refused in words; removal releases leases and keeps ratings."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from annotations.models import Assignment, AuditEvent, Comparison, Invitation, StudyMembership
from annotations.services import accounts as services

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-long-and-unusual-passphrase-93"


def _login(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def _accept(token: str, username: str = "newbie") -> Client:
    client = Client()
    client.post(
        f"/invitations/{token}/",
        {"username": username, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    return client


def _actions(study) -> list[str]:
    return list(AuditEvent.objects.filter(study=study).order_by("id").values_list("action", flat=True))


# Invitations ---------------------------------------------------------------------------------------------------


def test_the_owner_invites_a_clinician_with_a_quota_that_reaches_the_membership(world):
    client = _login(world.researcher)
    response = client.post(
        f"/studies/{world.study.slug}/members/invite",
        {"email": "ana@example.org", "role": "clinician", "quota": "40", "days": "7"},
        follow=True,
    )
    page = response.content.decode()
    invitation = Invitation.objects.get(email="ana@example.org")
    assert invitation.study == world.study and invitation.quota == 40 and invitation.sent_count == 1
    # The link is shown to copy (no email backend is configured), once after the invite and in the table.
    assert f"/invitations/{invitation.token}/" in page
    assert "copy this link and send it to them yourself" in page
    assert 'data-state="pending"' in page
    _accept(invitation.token, "ana")
    membership = StudyMembership.objects.get(study=world.study, user__username="ana")
    assert membership.role == "clinician" and membership.quota == 40
    assert "invitation.create" in _actions(world.study)
    accepted = _login(world.researcher).get(f"/studies/{world.study.slug}/members/").content.decode()
    assert 'data-state="accepted"' in accepted


def test_a_researcher_invitation_makes_a_researcher_member_and_refuses_a_quota(world):
    with pytest.raises(ValidationError) as refused:
        services.invitation_create(email="r@example.org", role="researcher", study=world.study, quota=5, actor=None)
    assert "quota" in refused.value.message_dict
    invitation = services.invitation_create(email="r@example.org", role="researcher", study=world.study, actor=None)
    _accept(invitation.token, "rita")
    assert StudyMembership.objects.get(study=world.study, user__username="rita").role == "researcher"


def test_a_revoked_invitation_cannot_be_accepted_and_says_why(world):
    invitation = services.invitation_create(email="x@example.org", role="clinician", study=world.study, actor=None)
    response = _login(world.researcher).post(
        f"/studies/{world.study.slug}/members/invitations/{invitation.pk}/revoke", follow=True
    )
    assert "its link no longer works" in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    page = Client().get(f"/invitations/{invitation.token}/")
    assert page.status_code == 404
    assert "withdrawn by the study team" in page.content.decode()
    with pytest.raises(ValidationError, match="withdrawn"):
        services.invitation_accept(token=invitation.token, username="late", password=NEW_PASSWORD)
    posted = _accept(invitation.token, "late")
    assert not StudyMembership.objects.filter(user__username="late").exists()
    assert posted is not None
    assert _actions(world.study).count("invitation.revoke") == 1
    # Revoking twice is a no-op (no second audit row); resending a revoked one is refused in words.
    services.invitation_revoke(invitation=invitation, actor=world.researcher)
    assert _actions(world.study).count("invitation.revoke") == 1
    with pytest.raises(ValidationError, match="revoked"):
        services.invitation_resend(invitation=invitation, actor=world.researcher)


def test_resending_extends_an_expired_invitation_and_counts_the_send(world):
    invitation = services.invitation_create(email="y@example.org", role="clinician", study=world.study, actor=None)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert Client().get(f"/invitations/{invitation.token}/").status_code == 404
    assert "expired" in Client().get(f"/invitations/{invitation.token}/").content.decode()
    response = _login(world.researcher).post(
        f"/studies/{world.study.slug}/members/invitations/{invitation.pk}/resend", follow=True
    )
    assert "sent 2 times" in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.sent_count == 2 and invitation.expires_at > timezone.now() + timedelta(days=6)
    assert invitation.last_sent_at is not None
    assert Client().get(f"/invitations/{invitation.token}/").status_code == 200
    event = AuditEvent.objects.get(action="invitation.resend")
    assert event.data["sent_count"] == 2 and event.actor_label == world.researcher.username


def test_an_accepted_invitation_is_neither_resent_nor_revoked(world):
    invitation = services.invitation_create(email="z@example.org", role="clinician", study=world.study, actor=None)
    _accept(invitation.token, "zed")
    with pytest.raises(ValidationError, match="already accepted"):
        services.invitation_resend(invitation=invitation, actor=None)
    with pytest.raises(ValidationError, match="remove the member"):
        services.invitation_revoke(invitation=invitation, actor=None)


@override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
def test_with_an_email_backend_the_link_is_also_emailed(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _login(world.researcher).post(
            f"/studies/{world.study.slug}/members/invite",
            {"email": "mail@example.org", "role": "clinician"},
            follow=True,
        )
    assert "It was emailed to them" in response.content.decode()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["mail@example.org"]
    assert Invitation.objects.get(email="mail@example.org").token in mail.outbox[0].body


def test_bad_invite_input_is_refused_in_words(world):
    client = _login(world.researcher)
    page = client.post(
        f"/studies/{world.study.slug}/members/invite",
        {"email": "not-an-email", "role": "clinician", "quota": "lots"},
        follow=True,
    ).content.decode()
    assert "Could not invite: Enter the quota as a whole number" in page
    assert "{'" not in page and "['" not in page
    page = client.post(
        f"/studies/{world.study.slug}/members/invite", {"email": "not-an-email", "role": "clinician"}, follow=True
    ).content.decode()
    assert "Could not invite: Enter a valid email address." in page
    assert not Invitation.objects.exists()


# Members: quota and removal --------------------------------------------------------------------------------------


def test_the_owner_sets_and_clears_a_clinicians_quota(world):
    client = _login(world.researcher)
    url = f"/studies/{world.study.slug}/members/{world.clinician.pk}/quota"
    client.post(url, {"quota": "25"})
    assert StudyMembership.objects.get(study=world.study, user=world.clinician).quota == 25
    page = client.post(url, {"quota": "0"}, follow=True).content.decode()
    assert "Could not set the quota: A quota is a number of pairs from 1 to 1,000,000" in page
    client.post(url, {"quota": ""})
    assert StudyMembership.objects.get(study=world.study, user=world.clinician).quota is None
    changes = AuditEvent.objects.filter(action="membership.quota").order_by("id")
    assert [(e.data["from"], e.data["to"]) for e in changes] == [(None, 25), (25, None)]
    with pytest.raises(ValidationError, match="Only clinicians"):
        services.membership_quota_set(study=world.study, user=world.researcher, quota=3, actor=None)


def test_removing_a_clinician_asks_first_releases_their_leases_and_keeps_their_ratings(world):
    Comparison.objects.filter(pk=world.comparison.pk).update(active_assignments=1)
    Assignment.objects.filter(pk=world.assignment.pk).update(draft={"values": {"empathy": 1}})
    client = _login(world.researcher)
    url = f"/studies/{world.study.slug}/members/{world.clinician.pk}/remove"
    confirm = client.get(url).content.decode()
    assert "The 1 pair they have in hand goes back to the pool" in confirm
    assert "1 with an unsubmitted draft" in confirm
    assert StudyMembership.objects.filter(study=world.study, user=world.clinician).exists()
    done = client.post(url, follow=True).content.decode()
    assert "1 pair(s) they had in hand went back to the pool" in done
    assert not StudyMembership.objects.filter(study=world.study, user=world.clinician).exists()
    world.assignment.refresh_from_db()
    assert world.assignment.status == Assignment.Status.EXPIRED
    assert world.assignment.draft  # kept on the row, not submitted
    assert Comparison.objects.get(pk=world.comparison.pk).active_assignments == 0
    event = AuditEvent.objects.get(action="membership.remove")
    assert event.data["leases_released"] == 1 and event.data["ratings_kept"] == 0


def test_a_researcher_who_is_not_an_owner_sees_people_but_cannot_change_them(world, django_user_model):
    from tests.conftest import make_user

    helper = make_user(django_user_model, "helper", "researcher")
    StudyMembership.objects.create(study=world.study, user=helper, role="researcher")
    client = _login(helper)
    page = client.get(f"/studies/{world.study.slug}/members/").content.decode()
    assert world.clinician.username in page and "Invite someone" not in page
    assert (
        client.post(
            f"/studies/{world.study.slug}/members/invite", {"email": "a@b.org", "role": "clinician"}
        ).status_code
        == 403
    )


# API and command --------------------------------------------------------------------------------------------------


def test_the_api_invites_resends_revokes_sets_quotas_and_removes(world):
    client = _login(world.researcher)
    base = f"/api/v1/studies/{world.study.slug}"
    created = client.post(
        f"{base}/invitations",
        {"email": "api@example.org", "role": "clinician", "quota": 9},
        content_type="application/json",
    )
    assert created.status_code == 201
    body = created.json()
    assert (
        body["state"] == "pending"
        and body["quota"] == 9
        and body["url"].endswith(f"/invitations/{Invitation.objects.get().token}/")
    )
    assert body["emailed"] is False
    resent = client.post(f"{base}/invitations/{body['id']}/resend", content_type="application/json").json()
    assert resent["sent_count"] == 2
    revoked = client.post(f"{base}/invitations/{body['id']}/revoke", content_type="application/json").json()
    assert revoked["state"] == "revoked"
    refused = client.post(f"{base}/invitations/{body['id']}/resend", content_type="application/json")
    assert refused.status_code == 400 and "revoked" in refused.json()["error"]["details"]["non_field_errors"][0]
    listed = client.get(f"{base}/invitations").json()
    assert [row["state"] for row in listed["results"]] == ["revoked"]
    quota = client.patch(f"{base}/members/{world.clinician.username}", {"quota": 7}, content_type="application/json")
    assert quota.status_code == 200 and quota.json()["quota"] == 7
    bad = client.patch(f"{base}/members/{world.clinician.username}", {"quota": -1}, content_type="application/json")
    assert bad.status_code == 400 and "quota" in bad.json()["error"]["details"]
    assert client.delete(f"{base}/members/{world.clinician.username}").status_code == 204
    assert {
        "invitation.create",
        "invitation.resend",
        "invitation.revoke",
        "membership.quota",
        "membership.remove",
    } <= set(_actions(world.study))


def test_the_study_people_command_does_the_same(world, capsys):
    call_command("study_people", world.study.slug, "invite", "cmd@example.org", "--role", "clinician", "--quota", "3")
    out = capsys.readouterr().out
    invitation = Invitation.objects.get(email="cmd@example.org")
    assert f"/invitations/{invitation.token}/" in out and invitation.quota == 3
    call_command("study_people", world.study.slug, "resend", str(invitation.pk))
    call_command("study_people", world.study.slug, "list")
    listing = capsys.readouterr().out
    assert f"#{invitation.pk} cmd@example.org (clinician, quota 3): pending, sent 2x" in listing
    assert f"{world.clinician.username} (clinician)" in listing
    call_command("study_people", world.study.slug, "revoke", str(invitation.pk))
    call_command("study_people", world.study.slug, "quota", world.clinician.username, "11")
    assert StudyMembership.objects.get(study=world.study, user=world.clinician).quota == 11
    call_command("study_people", world.study.slug, "remove", world.clinician.username)
    assert not StudyMembership.objects.filter(study=world.study, user=world.clinician).exists()
    call_command("study_people", world.study.slug, "history", "--kind", "people")
    history = capsys.readouterr().out
    assert "manage.py: Withdrew the invitation to cmd@example.org" in history
    assert f"manage.py: Removed {world.clinician.username} (clinician) from the study." in history
    with pytest.raises(CommandError, match="A quota is a number of pairs"):
        call_command("study_people", world.study.slug, "invite", "q@example.org", "--role", "clinician", "--quota", "0")
    with pytest.raises(CommandError, match="No study"):
        call_command("study_people", "no-such-study", "list")


def test_removal_keeps_submitted_ratings_and_the_last_owner_stays(world):
    Assignment.objects.filter(pk=world.assignment.pk).update(status=Assignment.Status.SUBMITTED)
    work = services.study_member_remove(study=world.study, user=world.clinician, actor=world.researcher)
    assert (work.leased, work.submitted) == (0, 1)
    assert Assignment.objects.get(pk=world.assignment.pk).status == Assignment.Status.SUBMITTED
    assert AuditEvent.objects.get(action="membership.remove").data["ratings_kept"] == 1
    with pytest.raises(ValidationError, match="at least one owner"):
        services.study_member_remove(study=world.study, user=world.researcher, actor=world.researcher)
    page = _login(world.researcher).get(f"/studies/{world.study.slug}/members/").content.decode()
    assert "The only owner" in page


def test_the_admin_invitations_page_shows_each_state_in_words(world):
    services.invitation_create(email="open@example.org", role="clinician", study=world.study, actor=None)
    gone = services.invitation_create(email="gone@example.org", role="researcher", actor=None)
    services.invitation_revoke(invitation=gone, actor=None)
    page = _login(world.admin).get("/admin-tools/invitations/").content.decode()
    assert "<td>Pending</td>" in page and "<td>Revoked</td>" in page
    assert "No study (an account only)" in page and ">None<" not in page
