"""Invitations, admin-made accounts, roles and memberships: each change is audited in its own transaction."""

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client
from django.utils import timezone

from annotations.models import ApiToken, AuditEvent, Invitation, PasswordResetLink, Profile, Rater, StudyMembership
from annotations.services import accounts as services
from annotations.services.studies import SLUG_UNAVAILABLE
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-long-and-unusual-passphrase-93"


def _login(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_invitation_link_creates_a_clinician_in_the_study(world):
    invitation = services.invitation_create(
        email="erin@example.org", role="clinician", study=world.study, actor=world.admin
    )
    client = Client()
    response = client.post(
        f"/invitations/{invitation.token}/",
        {
            "username": "erin",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "licence_type": "Counselling psychologist",
            "years_of_practice": "9",
            "specialties": "trauma, CBT",
        },
    )
    assert response.status_code == 302
    erin = get_user_model().objects.get(username="erin")
    assert erin.profile.role == Profile.Role.CLINICIAN
    assert erin.profile.specialties == ["trauma", "CBT"]
    assert Rater.objects.filter(user=erin, kind=Rater.Kind.CLINICIAN).exists()
    assert StudyMembership.objects.get(study=world.study, user=erin).role == StudyMembership.Role.CLINICIAN
    assert {"account.create", "membership.set"} <= set(AuditEvent.objects.values_list("action", flat=True))
    # Used once: the link is dead now.
    assert client.get(f"/invitations/{invitation.token}/").status_code == 404


def test_expired_invitation_is_refused(world):
    invitation = services.invitation_create(email="x@example.org", role="researcher", actor=world.admin)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(f"/invitations/{invitation.token}/").status_code == 404
    with pytest.raises(ValidationError):
        services.invitation_accept(token=invitation.token, username="late", password=NEW_PASSWORD)
    assert not get_user_model().objects.filter(username="late").exists()


def test_weak_password_is_refused_and_nothing_is_created(world):
    invitation = services.invitation_create(email="y@example.org", role="researcher", actor=world.admin)
    response = Client().post(
        f"/invitations/{invitation.token}/",
        {"username": "weak", "password": "password", "password_confirm": "password"},
    )
    assert response.status_code == 200
    assert b"too short" in response.content or b"too common" in response.content
    assert not get_user_model().objects.filter(username="weak").exists()
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_audit_row_rolls_back_with_its_change(world):
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.study_member_set(
            study=world.study, user=world.other_clinician, role=StudyMembership.Role.CLINICIAN, actor=world.researcher
        )
        assert AuditEvent.objects.filter(action="membership.set").exists()
        raise RuntimeError("the surrounding work failed")
    assert AuditEvent.objects.count() == before
    assert not StudyMembership.objects.filter(study=world.study, user=world.other_clinician).exists()


def test_failed_change_writes_no_audit_row(world):
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        # The only owner cannot step down.
        services.study_member_set(
            study=world.study, user=world.researcher, role=StudyMembership.Role.RESEARCHER, actor=world.researcher
        )
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("who", "role"),
    [("clinician", StudyMembership.Role.OWNER), ("other_researcher", StudyMembership.Role.CLINICIAN)],
)
def test_study_roles_must_fit_the_account_role(world, who, role):
    with pytest.raises(ValidationError):
        services.study_member_set(study=world.study, user=getattr(world, who), role=role, actor=world.researcher)


def test_role_change_is_audited_and_refused_while_memberships_conflict(world):
    with pytest.raises(ValidationError):
        services.role_change(user=world.clinician, role=Profile.Role.RESEARCHER, actor=world.admin)
    services.role_change(user=world.other_researcher, role=Profile.Role.ADMIN, actor=world.admin)
    event = AuditEvent.objects.get(action="role.change")
    assert event.data == {"from": "researcher", "to": "admin"}
    assert event.actor == world.admin


def test_researcher_member_can_view_but_not_manage_members(world):
    StudyMembership.objects.create(study=world.study, user=world.other_researcher, role=StudyMembership.Role.RESEARCHER)
    client = _login(world.other_researcher)
    assert client.get(f"/api/v1/studies/{world.study.slug}/members").status_code == 200
    response = client.post(
        f"/api/v1/studies/{world.study.slug}/members",
        {"username": world.other_clinician.username, "role": "clinician"},
        content_type="application/json",
    )
    assert response.status_code == 403


def test_clinician_learns_nothing_about_systems_or_other_studies(world):
    client = _login(world.clinician)
    me = client.get("/api/v1/me").json()
    assert me["role"] == "clinician"
    assert [s["study"] for s in me["studies"]] == [world.study.slug]
    assert client.get(f"/api/v1/studies/{world.study.slug}/systems").status_code == 404
    assert client.get("/api/v1/studies/").json()["results"] == []


def test_researcher_lists_only_their_own_studies_and_systems(world):
    client = _login(world.researcher)
    slugs = [s["slug"] for s in client.get("/api/v1/studies/").json()["results"]]
    assert slugs == [world.study.slug]
    systems = client.get(f"/api/v1/studies/{world.study.slug}/systems").json()["results"]
    assert sorted(s["name"] for s in systems) == sorted(world.study.systems.values_list("name", flat=True))


def test_admin_exports_the_audit_log_as_csv_and_json_lines(world):
    services.lockout_record(None, username='=HYPERLINK("http://evil")', ip_address="10.0.0.1")
    client = _login(world.admin)
    csv_text = b"".join(client.get("/admin-tools/audit/export.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert {"study.create", "auth.locked_out"} <= {row["action"] for row in rows}
    assert all(not row["actor"].startswith("=") for row in rows)  # no spreadsheet formulas
    lines = b"".join(client.get("/admin-tools/audit/export.jsonl?action=study.").streaming_content).decode()
    events = [json.loads(line) for line in lines.splitlines()]
    assert events and all(event["action"].startswith("study.") for event in events)
    assert AuditEvent.objects.filter(action="audit.export", actor=world.admin).count() == 2
    api = client.get("/api/v1/audit-events?action=auth.").json()
    assert api["count"] == 1 and api["results"][0]["action"] == "auth.locked_out"


def test_audit_events_cannot_be_edited_or_deleted(world):
    event = AuditEvent.objects.first()
    event.action = "tampered"
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()


# Passwords: change your own; a one-time reset link from a researcher or admin ---------------------------------


def test_a_user_changes_their_own_password_from_the_top_bar_audited(researcher):
    client = _login(researcher)
    assert 'href="/accounts/me/"' in client.get("/studies/").content.decode()
    assert 'href="/accounts/me/password/"' in client.get("/accounts/me/").content.decode()
    weak = client.post(
        "/accounts/me/password/",
        {"old_password": PASSWORD, "new_password1": "password", "new_password2": "password"},
    )
    assert weak.status_code == 200 and b"too short" in weak.content
    changed = client.post(
        "/accounts/me/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert changed.status_code == 302
    assert client.get("/accounts/me/").status_code == 200  # this session survives the change
    researcher.refresh_from_db()
    assert researcher.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action="auth.password_change", actor=researcher).count() == 1


def _reset_link(client: Client, user, next_url: str = "/accounts/me/") -> str:
    response = client.post(f"/accounts/{user.pk}/reset-link", {"next": next_url}, follow=True)
    text = response.content.decode()
    return text.split("/accounts/reset/", 1)[1].split("/", 1)[0]


def test_a_researcher_makes_a_one_time_reset_link_for_a_clinician_of_their_study(world):
    services.api_token_issue(user=world.clinician)
    token = _reset_link(_login(world.researcher), world.clinician, f"/studies/{world.study.slug}/members/")
    link = PasswordResetLink.objects.get(user=world.clinician)
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in " ".join(str(event.data) for event in AuditEvent.objects.all())

    visitor = Client()
    assert visitor.get(f"/accounts/reset/{token}/").status_code == 200
    weak = visitor.post(f"/accounts/reset/{token}/", {"new_password1": "password", "new_password2": "password"})
    assert weak.status_code == 200 and b"too short" in weak.content
    done = visitor.post(f"/accounts/reset/{token}/", {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    world.clinician.refresh_from_db()
    assert world.clinician.check_password(NEW_PASSWORD)
    assert not ApiToken.objects.filter(user=world.clinician, revoked_at__isnull=True).exists()
    assert visitor.get(f"/accounts/reset/{token}/").status_code == 404  # used once
    assert {"auth.password_reset_link", "auth.password_reset"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


def test_an_expired_reset_link_is_refused(world):
    token = _reset_link(_login(world.admin), world.clinician)
    PasswordResetLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().post(
        f"/accounts/reset/{token}/", {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 404
    world.clinician.refresh_from_db()
    assert not world.clinician.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(
    ("who", "whom", "status"),
    [
        ("researcher", "clinician", 302),
        ("other_researcher", "clinician", 404),  # not a clinician of their studies
        ("researcher", "other_researcher", 404),  # researchers reset clinicians only
        ("clinician", "other_clinician", 404),
        ("admin", "other_researcher", 302),  # admins reset anyone
    ],
)
def test_reset_links_are_made_by_the_clinicians_researchers_and_by_admins(world, who, whom, status):
    response = _login(getattr(world, who)).post(f"/accounts/{getattr(world, whom).pk}/reset-link")
    assert response.status_code == status
    assert PasswordResetLink.objects.exists() == (status == 302)


# Member forms and study slugs reveal nothing about accounts or studies one cannot see ---------------------------


def test_adding_a_member_says_the_same_for_unknown_inactive_and_ineligible_usernames(world, django_user_model):
    django_user_model.objects.create_user(username="gone", password=PASSWORD, is_active=False)
    client = _login(world.researcher)
    url = f"/api/v1/studies/{world.study.slug}/members"
    answers = {}
    for username in ("no-such-person", "gone", world.other_researcher.username, world.admin.username):
        response = client.post(url, {"username": username, "role": "clinician"}, content_type="application/json")
        assert response.status_code == 400
        answers[username] = response.json()["error"]
        page = client.post(
            f"/studies/{world.study.slug}/members/", {"username": username, "role": "clinician"}, follow=True
        )
        assert [str(message) for message in page.context["messages"]] == [services.MEMBER_NOT_ADDABLE]
    assert len({json.dumps(answer, sort_keys=True) for answer in answers.values()}) == 1
    assert services.MEMBER_NOT_ADDABLE in json.dumps(answers["no-such-person"])
    assert not StudyMembership.objects.filter(study=world.study, user=world.other_researcher).exists()


@pytest.mark.parametrize("taken", ["s1", "s2"])  # s1 is the researcher's own study; s2 they cannot see
def test_a_taken_slug_is_refused_alike_whether_or_not_its_study_is_visible(world, taken):
    client = _login(world.researcher)
    response = client.post("/api/v1/studies/", {"slug": taken, "title": "Mine"}, content_type="application/json")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == SLUG_UNAVAILABLE
    page = client.post("/studies/", {"slug": taken, "title": "Mine"}, follow=True)
    assert [str(m) for m in page.context["messages"]] == [f"Could not create the study: {SLUG_UNAVAILABLE}"]
    assert client.get(f"/api/v1/studies/{'s2'}/").status_code == 404
