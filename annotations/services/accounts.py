"""Accounts: invitations, account creation, role and membership changes, API tokens, failed-login audit.

Every write runs in one transaction with its audit row, so both commit or neither does.
Passwords and tokens never reach an audit row or a log line.
"""

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotations.models import AuditEvent, Invitation, Profile, Rater, Study, StudyMembership
from annotations.services.audit import audit_record
from annotations.services.studies import membership_set

DEFAULT_INVITATION_DAYS = 7

# Which study roles an account of each platform role may hold.
_ALLOWED_STUDY_ROLES = {
    Profile.Role.ADMIN: {StudyMembership.Role.OWNER, StudyMembership.Role.RESEARCHER},
    Profile.Role.RESEARCHER: {StudyMembership.Role.OWNER, StudyMembership.Role.RESEARCHER},
    Profile.Role.CLINICIAN: {StudyMembership.Role.CLINICIAN},
}


@dataclass(frozen=True)
class ClinicianDetails:
    """Shown in reports only in aggregate."""

    licence_type: str = ""
    years_of_practice: int | None = None
    specialties: tuple[str, ...] = ()


def _role_of(user: AbstractBaseUser) -> str | None:
    profile = getattr(user, "profile", None)
    if profile is not None:
        return profile.role
    return Profile.Role.ADMIN if user.is_superuser else None


def _account_build(
    *,
    username: str,
    email: str,
    role: str,
    password: str | None,
    details: ClinicianDetails | None,
) -> AbstractBaseUser:
    """Create the user, profile and (for clinicians) rater. Caller holds the transaction."""
    user_model = get_user_model()
    if role not in Profile.Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if user_model.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": "This username is taken."})
    user = user_model(username=username, email=email)
    user.full_clean(exclude=["password"])
    if password is None:
        user.set_unusable_password()
    else:
        validate_password(password, user=user)
        user.set_password(password)
    if role == Profile.Role.ADMIN:
        user.is_staff = True
    user.save()
    details = details or ClinicianDetails()
    profile = Profile(
        user=user,
        role=role,
        licence_type=details.licence_type if role == Profile.Role.CLINICIAN else "",
        years_of_practice=details.years_of_practice if role == Profile.Role.CLINICIAN else None,
        specialties=list(details.specialties) if role == Profile.Role.CLINICIAN else [],
    )
    profile.full_clean(exclude=["user"])
    profile.save()
    if role == Profile.Role.CLINICIAN:
        clinician_rater_ensure(user=user)
    return user


@transaction.atomic
def account_create(
    *,
    username: str,
    email: str,
    role: str,
    actor: AbstractBaseUser | None,
    password: str | None = None,
    details: ClinicianDetails | None = None,
) -> AbstractBaseUser:
    """An account made by an admin (page, API or manage.py). Without a password the account cannot log in yet."""
    user = _account_build(username=username, email=email, role=role, password=password, details=details)
    audit_record(
        actor=actor,
        action="account.create",
        obj=user,
        data={"username": username, "role": role, "via": "admin"},
        actor_label="" if actor else "manage.py",
    )
    return user


@transaction.atomic
def invitation_create(
    *,
    email: str,
    role: str,
    actor: AbstractBaseUser | None,
    study: Study | None = None,
    valid_for: timedelta = timedelta(days=DEFAULT_INVITATION_DAYS),
) -> Invitation:
    """An invitation link that expires. With a study, accepting it also adds the account to that study."""
    if role not in Profile.Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if study is not None and role == Profile.Role.ADMIN:
        raise ValidationError({"study": "Admins are not invited into a study."})
    if valid_for <= timedelta(0):
        raise ValidationError({"expires_at": "An invitation must be valid for some time."})
    invitation = Invitation(
        email=email,
        role=role,
        study=study,
        expires_at=timezone.now() + valid_for,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    invitation.full_clean(exclude=["created_by"])
    invitation.save()
    # The token is a credential: the audit row names the invitation, never its token.
    audit_record(
        actor=actor,
        action="invitation.create",
        study=study,
        obj=invitation,
        data={"email": email, "role": role, "expires_at": invitation.expires_at.isoformat()},
        actor_label="" if actor else "manage.py",
    )
    return invitation


def invitation_usable(token: str) -> Invitation | None:
    """The invitation for `token` if it is still open (not accepted, not expired); None otherwise."""
    if not token or len(token) > 64:
        return None
    return (
        Invitation.objects.select_related("study")
        .filter(token=token, accepted_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


@transaction.atomic
def invitation_accept(
    *,
    token: str,
    username: str,
    password: str,
    details: ClinicianDetails | None = None,
) -> AbstractBaseUser:
    """Create the invited account. Raises ValidationError if the link is used, expired or the input is invalid."""
    # Locking the row makes a double submit create one account, not two.
    invitation = (
        Invitation.objects.select_for_update()
        .filter(token=token, accepted_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if invitation is None:
        raise ValidationError("This invitation link is invalid, used or expired.")
    user = _account_build(
        username=username, email=invitation.email, role=invitation.role, password=password, details=details
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    audit_record(
        actor=user,
        action="account.create",
        study=invitation.study,
        obj=user,
        data={"username": username, "role": invitation.role, "via": "invitation", "invitation": invitation.pk},
    )
    if invitation.study is not None:
        study_role = (
            StudyMembership.Role.CLINICIAN
            if invitation.role == Profile.Role.CLINICIAN
            else StudyMembership.Role.RESEARCHER
        )
        membership_set(study=invitation.study, user=user, role=study_role, actor=invitation.created_by)
    return user


@transaction.atomic
def role_change(*, user: AbstractBaseUser, role: str, actor: AbstractBaseUser | None) -> Profile:
    """Change a platform role. Refused while the account holds study roles the new role may not hold."""
    if role not in Profile.Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    profile, _ = Profile.objects.select_for_update().get_or_create(user=user, defaults={"role": role})
    previous = profile.role
    conflicting = StudyMembership.objects.filter(user=user).exclude(role__in=_ALLOWED_STUDY_ROLES[role])
    if conflicting.exists():
        raise ValidationError({"role": "Remove the account's study memberships that conflict with the new role first."})
    profile.role = role
    profile.save(update_fields=["role"])
    user.is_staff = role == Profile.Role.ADMIN or user.is_superuser
    user.save(update_fields=["is_staff"])
    if role == Profile.Role.CLINICIAN:
        clinician_rater_ensure(user=user)
    audit_record(actor=actor, action="role.change", obj=user, data={"from": previous, "to": role})
    return profile


def clinician_rater_ensure(*, user: AbstractBaseUser) -> Rater:
    """The clinician rater of an account (who their ratings belong to), created on first use."""
    rater = Rater.objects.filter(user=user).first()
    if rater is None:
        rater, _ = Rater.objects.get_or_create(
            kind=Rater.Kind.CLINICIAN, label=user.get_username(), defaults={"user": user}
        )
    return rater


@transaction.atomic
def study_member_set(
    *, study: Study, user: AbstractBaseUser, role: str, actor: AbstractBaseUser | None, quota: int | None = None
) -> StudyMembership:
    """Add a member or change their study role (audited). Clinicians rate; researchers and owners run the study."""
    if role not in StudyMembership.Role.values:
        raise ValidationError({"role": f"Unknown study role {role!r}."})
    account_role = _role_of(user)
    if account_role is None or role not in _ALLOWED_STUDY_ROLES[account_role]:
        raise ValidationError({"role": f"A {account_role or 'role-less'} account cannot be a study {role}."})
    # Lock the study so two concurrent demotions cannot both pass the last-owner check.
    Study.objects.select_for_update().get(pk=study.pk)
    current = StudyMembership.objects.filter(study=study, user=user).first()
    if current is not None and current.role == StudyMembership.Role.OWNER and role != StudyMembership.Role.OWNER:
        _ensure_another_owner(study=study, user=user)
    if role == StudyMembership.Role.CLINICIAN:
        clinician_rater_ensure(user=user)
    return membership_set(study=study, user=user, role=role, actor=actor, quota=quota)


@transaction.atomic
def study_member_remove(*, study: Study, user: AbstractBaseUser, actor: AbstractBaseUser | None) -> None:
    """Remove a member (audited). Their past ratings stay; they lose access to the study."""
    Study.objects.select_for_update().get(pk=study.pk)
    membership = StudyMembership.objects.filter(study=study, user=user).first()
    if membership is None:
        raise ValidationError({"user": "Not a member of this study."})
    if membership.role == StudyMembership.Role.OWNER:
        _ensure_another_owner(study=study, user=user)
    membership.delete()
    audit_record(
        actor=actor,
        action="membership.remove",
        study=study,
        obj=user,
        data={"user": user.get_username(), "role": membership.role},
    )


def _ensure_another_owner(*, study: Study, user: AbstractBaseUser) -> None:
    others = StudyMembership.objects.filter(study=study, role=StudyMembership.Role.OWNER).exclude(user=user)
    if not others.exists():
        raise ValidationError({"role": "A study keeps at least one owner."})


@transaction.atomic
def api_token_issue(*, user: AbstractBaseUser) -> Token:
    """The user's API token for scripts (one per user; created on first request)."""
    token, created = Token.objects.get_or_create(user=user)
    if created:
        audit_record(actor=user, action="auth.token_issue", obj=user)
    return token


@transaction.atomic
def api_token_revoke(*, user: AbstractBaseUser) -> bool:
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        audit_record(actor=user, action="auth.token_revoke", obj=user)
    return bool(deleted)


def _client_ip(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")


def login_failed_record(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs) -> None:
    """user_login_failed receiver: one audit row per failed login, naming the username tried, never the password."""
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        actor=None,
        action="auth.login_failed",
        data={"username": username, "ip": _client_ip(request)},
        actor_label=username,
    )


def lockout_record(sender: Any, request: HttpRequest | None = None, username: str = "", **kwargs) -> None:
    """axes user_locked_out receiver."""
    audit_record(
        actor=None,
        action="auth.locked_out",
        data={"username": str(username or "")[:150], "ip": str(kwargs.get("ip_address") or _client_ip(request))},
        actor_label=str(username or "")[:150],
    )


# Reading and exporting the audit log (admins only; permission checked by the caller).

AUDIT_FIELDS = ["id", "created_at", "actor", "action", "study", "object_type", "object_id", "data"]


def audit_events_filtered(
    *,
    action: str = "",
    study_slug: str = "",
    actor: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("actor", "study").order_by("-created_at", "-id")
    if action:
        events = events.filter(action__startswith=action)
    if study_slug:
        events = events.filter(study__slug=study_slug)
    if actor:
        events = events.filter(actor_label=actor)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events


def audit_event_as_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": event.created_at.isoformat(),
        "actor": event.actor_label,
        "action": event.action,
        "study": event.study.slug if event.study_id else "",
        "object_type": event.object_type,
        "object_id": event.object_id,
        "data": event.data,
    }


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ runs as a formula in spreadsheets; usernames in failed logins are attacker-chosen.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def audit_csv_write(events: Iterable[AuditEvent], stream: IO[str]) -> int:
    writer = csv.writer(stream)
    writer.writerow(AUDIT_FIELDS)
    count = 0
    for event in events:
        row = audit_event_as_row(event)
        row["data"] = json.dumps(row["data"], sort_keys=True)
        writer.writerow([_csv_safe(str(row[field])) for field in AUDIT_FIELDS])
        count += 1
    return count


def audit_json_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(audit_event_as_row(event), sort_keys=True) + "\n"


def audit_export_record(*, actor: AbstractBaseUser | None, fmt: str, filters: dict[str, str], count: int) -> None:
    """Exporting the audit log is itself audited (who took a copy, of what)."""
    audit_record(
        actor=actor,
        action="audit.export",
        data={"format": fmt, "filters": filters, "rows": count},
        actor_label="" if actor else "manage.py",
    )
