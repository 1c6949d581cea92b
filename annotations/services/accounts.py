"""Accounts: invitations, account creation, role and membership changes, passwords and reset links, API tokens,
failed-login audit and lockout clearing.

Every write runs in one transaction with its audit row, so both commit or neither does.
Passwords and tokens never reach an audit row or a log line.
"""

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from annotations.csvsafe import csv_writer
from annotations.lockout import client_address
from annotations.models import (
    ApiToken,
    Assignment,
    AuditEvent,
    Comparison,
    Invitation,
    PasswordResetLink,
    Profile,
    Rater,
    Study,
    StudyMembership,
)
from annotations.services.audit import audit_record
from annotations.services.studies import MAX_QUOTA, membership_set

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


def _quota_check(quota: int | None) -> None:
    if quota is not None and not 1 <= quota <= MAX_QUOTA:
        raise ValidationError({"quota": f"A quota is a number of pairs from 1 to {MAX_QUOTA:,}, or empty for none."})


@transaction.atomic
def invitation_create(
    *,
    email: str,
    role: str,
    actor: AbstractBaseUser | None,
    study: Study | None = None,
    valid_for: timedelta = timedelta(days=DEFAULT_INVITATION_DAYS),
    quota: int | None = None,
) -> Invitation:
    """An invitation link that expires. With a study, accepting it also adds the account to that study
    (with `quota`, pairs a clinician is asked to rate, carried into the membership)."""
    if role not in Profile.Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if study is not None and role == Profile.Role.ADMIN:
        raise ValidationError({"study": "Admins are not invited into a study."})
    if valid_for <= timedelta(0):
        raise ValidationError({"expires_at": "An invitation must be valid for some time."})
    _quota_check(quota)
    if quota is not None and role != Profile.Role.CLINICIAN:
        raise ValidationError({"quota": "Only clinicians rate pairs, so only they get a quota."})
    if quota is not None and study is None:
        raise ValidationError({"quota": "A quota belongs to a study: choose the study too."})
    now = timezone.now()
    invitation = Invitation(
        email=email,
        role=role,
        study=study,
        expires_at=now + valid_for,
        quota=quota,
        sent_count=1,
        last_sent_at=now,
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
        data={"email": email, "role": role, "expires_at": invitation.expires_at.isoformat(), "quota": quota},
        actor_label="" if actor else "manage.py",
    )
    return invitation


class InvitationState:
    """What the People page and the API call an invitation's state (one place decides it)."""

    ACCEPTED = "accepted"
    PENDING = "pending"
    EXPIRED = "expired"
    REVOKED = "revoked"


def invitation_state(invitation: Invitation, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if invitation.accepted_at is not None:
        return InvitationState.ACCEPTED
    if invitation.revoked_at is not None:
        return InvitationState.REVOKED
    if invitation.expires_at <= now:
        return InvitationState.EXPIRED
    return InvitationState.PENDING


def invitation_usable(token: str) -> Invitation | None:
    """The invitation for `token` if it is still open (not accepted, revoked or expired); None otherwise."""
    if not token or len(token) > 64:
        return None
    return (
        Invitation.objects.select_related("study")
        .filter(token=token, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def invitation_refusal(token: str) -> str:
    """Why a link that is not usable is refused, in words the person holding it can act on."""
    invitation = Invitation.objects.filter(token=token).first() if token and len(token) <= 64 else None
    state = invitation_state(invitation) if invitation is not None else None
    if state == InvitationState.REVOKED:
        return "This invitation was withdrawn by the study team. Ask them for a new one if you still expect it."
    if state == InvitationState.ACCEPTED:
        return "This invitation has already been used to create an account. Log in with that account instead."
    if state == InvitationState.EXPIRED:
        return "This invitation has expired. Ask the person who invited you to send it again."
    return "This invitation link is not valid. Check that you copied the whole link."


@transaction.atomic
def invitation_accept(
    *,
    token: str,
    username: str,
    password: str,
    details: ClinicianDetails | None = None,
) -> AbstractBaseUser:
    """Create the invited account. Raises ValidationError if the link is used, revoked, expired or the input
    is invalid."""
    # Locking the row makes a double submit create one account, not two, and orders accept against revoke.
    invitation = (
        Invitation.objects.select_for_update()
        .filter(token=token, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if invitation is None:
        raise ValidationError(invitation_refusal(token), code="invitation_unusable")
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
        quota = invitation.quota if study_role == StudyMembership.Role.CLINICIAN else None
        membership_set(study=invitation.study, user=user, role=study_role, actor=invitation.created_by, quota=quota)
    return user


def _invitation_locked(invitation: Invitation) -> Invitation:
    return Invitation.objects.select_for_update(of=("self",)).select_related("study").get(pk=invitation.pk)


@transaction.atomic
def invitation_resend(
    *, invitation: Invitation, actor: AbstractBaseUser | None, valid_for: timedelta | None = None
) -> Invitation:
    """Send an invitation again: a new expiry counted from now (the link stays the same), one more send.
    Refused once it is accepted or revoked; an expired one comes back to life."""
    locked = _invitation_locked(invitation)
    state = invitation_state(locked)
    if state == InvitationState.ACCEPTED:
        raise ValidationError("This invitation was already accepted; there is nothing to resend.", code="accepted")
    if state == InvitationState.REVOKED:
        raise ValidationError("This invitation was revoked; invite the person again instead.", code="revoked")
    valid_for = valid_for or timedelta(days=DEFAULT_INVITATION_DAYS)
    if valid_for <= timedelta(0):
        raise ValidationError({"expires_at": "An invitation must be valid for some time."})
    now = timezone.now()
    locked.expires_at = now + valid_for
    locked.sent_count = F("sent_count") + 1
    locked.last_sent_at = now
    locked.save(update_fields=["expires_at", "sent_count", "last_sent_at"])
    locked.refresh_from_db(fields=["sent_count"])
    audit_record(
        actor=actor,
        action="invitation.resend",
        study=locked.study,
        obj=locked,
        data={"email": locked.email, "expires_at": locked.expires_at.isoformat(), "sent_count": locked.sent_count},
        actor_label="" if actor else "manage.py",
    )
    return locked


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: AbstractBaseUser | None) -> Invitation:
    """Withdraw an invitation: its link stops working at once. Refused once accepted (remove the member
    instead); revoking twice is a no-op."""
    locked = _invitation_locked(invitation)
    if locked.accepted_at is not None:
        raise ValidationError(
            "This invitation was already accepted; remove the member from the study instead.", code="accepted"
        )
    if locked.revoked_at is not None:
        return locked
    locked.revoked_at = timezone.now()
    locked.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="invitation.revoke",
        study=locked.study,
        obj=locked,
        data={"email": locked.email, "role": locked.role},
        actor_label="" if actor else "manage.py",
    )
    return locked


def invitations_of_study(*, study: Study) -> QuerySet[Invitation]:
    """A study's invitations, newest first (for its People page, the API and the command)."""
    return Invitation.objects.filter(study=study).select_related("created_by").order_by("-created_at", "-pk")


def invitation_email_send(*, invitation: Invitation, link: str) -> bool:
    """Email the link when the deployment configured an email backend; False when it did not (the page then
    shows the link to copy). Sending happens after commit, so a slow mail server never holds a transaction."""
    if not settings.is_overridden("EMAIL_BACKEND"):
        return False
    study_line = f" to the study \u201c{invitation.study.title}\u201d" if invitation.study_id else ""
    body = (
        f"You are invited{study_line} on evalplatform as a {invitation.role}.\n\n"
        f"Open this link to choose a username and password (it expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n"
        f"{link}\n"
    )
    transaction.on_commit(
        lambda: send_mail("Your invitation to evalplatform", body, None, [invitation.email], fail_silently=True)
    )
    return True


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


@dataclass(frozen=True)
class MemberWork:
    """What a member has in hand in a study: what removing them does to it (said before, and after)."""

    leased: int = 0
    submitted: int = 0
    drafts: int = 0


def member_work(*, study: Study, user: AbstractBaseUser) -> MemberWork:
    rater = Rater.objects.filter(user=user).first()
    if rater is None:
        return MemberWork()
    counts = Assignment.objects.filter(study=study, rater=rater).aggregate(
        leased=Count("pk", filter=Q(status=Assignment.Status.LEASED)),
        submitted=Count("pk", filter=Q(status=Assignment.Status.SUBMITTED)),
        drafts=Count("pk", filter=Q(status=Assignment.Status.LEASED) & ~Q(draft={})),
    )
    return MemberWork(leased=counts["leased"], submitted=counts["submitted"], drafts=counts["drafts"])


def _leases_release(*, study: Study, rater: Rater) -> int:
    """End a rater's live leases in a study and give their places back to the pool (as an expiry does).
    The caller holds the transaction. Each row is ended with a conditional update, so a lease that the
    rater submits or skips at the same moment is counted once."""
    released = 0
    rows = Assignment.objects.filter(study=study, rater=rater, status=Assignment.Status.LEASED)
    for pk, comparison_id, purpose in rows.values_list("pk", "comparison_id", "purpose"):
        changed = Assignment.objects.filter(pk=pk, status=Assignment.Status.LEASED).update(
            status=Assignment.Status.EXPIRED
        )
        if not changed:
            continue
        released += 1
        if purpose == Assignment.Purpose.RATING:  # only rating leases hold one of a comparison's k places
            Comparison.objects.filter(pk=comparison_id, active_assignments__gt=0).update(
                active_assignments=F("active_assignments") - 1
            )
    return released


@transaction.atomic
def study_member_remove(*, study: Study, user: AbstractBaseUser, actor: AbstractBaseUser | None) -> MemberWork:
    """Remove a member (audited). They lose access to the study at once. A clinician's pairs in hand are
    released to other clinicians (drafts stay on the released rows, unseen); submitted ratings are kept and
    still count in reports and exports. Returns what was released and kept."""
    Study.objects.select_for_update().get(pk=study.pk)
    membership = StudyMembership.objects.filter(study=study, user=user).first()
    if membership is None:
        raise ValidationError({"user": "Not a member of this study."})
    if membership.role == StudyMembership.Role.OWNER:
        _ensure_another_owner(study=study, user=user)
    work = member_work(study=study, user=user)
    released = 0
    rater = Rater.objects.filter(user=user).first()
    if rater is not None:
        released = _leases_release(study=study, rater=rater)
    membership.delete()
    audit_record(
        actor=actor,
        action="membership.remove",
        study=study,
        obj=user,
        data={
            "user": user.get_username(),
            "role": membership.role,
            "leases_released": released,
            "ratings_kept": work.submitted,
        },
        actor_label="" if actor else "manage.py",
    )
    return MemberWork(leased=released, submitted=work.submitted, drafts=work.drafts)


@transaction.atomic
def membership_quota_set(
    *, study: Study, user: AbstractBaseUser, quota: int | None, actor: AbstractBaseUser | None
) -> StudyMembership:
    """Set (or clear, with None) a clinician's personal quota: the pairs they are asked to rate in this study.
    Without one, the study's per-rater quota applies, if any."""
    _quota_check(quota)
    membership = StudyMembership.objects.select_for_update().filter(study=study, user=user).first()
    if membership is None:
        raise ValidationError({"user": "Not a member of this study."})
    if membership.role != StudyMembership.Role.CLINICIAN:
        raise ValidationError({"quota": "Only clinicians rate pairs, so only they get a quota."})
    previous = membership.quota
    if previous == quota:
        return membership
    membership.quota = quota
    membership.save(update_fields=["quota"])
    audit_record(
        actor=actor,
        action="membership.quota",
        study=study,
        obj=membership,
        data={"user": user.get_username(), "from": previous, "to": quota},
        actor_label="" if actor else "manage.py",
    )
    return membership


def _ensure_another_owner(*, study: Study, user: AbstractBaseUser) -> None:
    others = StudyMembership.objects.filter(study=study, role=StudyMembership.Role.OWNER).exclude(user=user)
    if not others.exists():
        raise ValidationError({"role": "A study keeps at least one owner."})


# Members are added by username; whether a name is unknown, inactive or of a role the study role does not fit,
# the answer is the same, so the form cannot be used to probe which accounts exist or what role they hold.
MEMBER_NOT_ADDABLE = "No account with that username can be added to this study in that role."


@transaction.atomic
def study_member_add(
    *, study: Study, username: str, role: str, actor: AbstractBaseUser | None, quota: int | None = None
) -> StudyMembership:
    """Add a member (or change a member's role) by username, refusing every ineligible name alike."""
    if role not in StudyMembership.Role.values:
        raise ValidationError({"role": f"Unknown study role {role!r}."})
    user = get_user_model().objects.filter(username=username, is_active=True).select_related("profile").first()
    account_role = _role_of(user) if user is not None else None
    if account_role is None or role not in _ALLOWED_STUDY_ROLES[account_role]:
        raise ValidationError({"username": MEMBER_NOT_ADDABLE})
    return study_member_set(study=study, user=user, role=role, actor=actor, quota=quota)


# Passwords ------------------------------------------------------------------------------------------------------


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@transaction.atomic
def password_change(*, user: AbstractBaseUser, password: str) -> None:
    """A user sets their own new password (the caller has checked the old one). Validators apply; audited."""
    validate_password(password, user=user)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(actor=user, action="auth.password_change", obj=user)


@transaction.atomic
def password_reset_link_create(
    *, user: AbstractBaseUser, actor: AbstractBaseUser, valid_for: timedelta | None = None
) -> tuple[PasswordResetLink, str]:
    """A one-time link for `user` to set a new password. Returns the row and the token, which is shown once:
    only its SHA-256 is stored. The caller checks the actor may reset this user's password."""
    valid_for = valid_for or timedelta(hours=settings.PASSWORD_RESET_LINK_HOURS)
    token = secrets.token_urlsafe(32)
    link = PasswordResetLink.objects.create(
        user=user, token_hash=_sha256(token), expires_at=timezone.now() + valid_for, created_by=actor
    )
    audit_record(
        actor=actor,
        action="auth.password_reset_link",
        obj=user,
        data={"user": user.get_username(), "link": link.pk, "expires_at": link.expires_at.isoformat()},
    )
    return link, token


def password_reset_link_usable(token: str) -> PasswordResetLink | None:
    """The open (unused, unexpired) link for `token`, or None."""
    if not token or len(token) > 64:
        return None
    return (
        PasswordResetLink.objects.select_related("user")
        .filter(token_hash=_sha256(token), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


@transaction.atomic
def password_reset_link_use(*, token: str, password: str) -> AbstractBaseUser:
    """Set a new password through a reset link, once. Its API tokens are revoked and its lockouts cleared, since
    a reset often follows a lost or shared password. Raises ValidationError for a dead link or a weak password."""
    # Locking the row makes a double submit use the link once.
    link = (
        PasswordResetLink.objects.select_for_update()
        .select_related("user")
        .filter(token_hash=_sha256(token or ""), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if link is None:
        raise ValidationError("This password reset link is invalid, used or expired.")
    user = link.user
    validate_password(password, user=user)
    user.set_password(password)
    user.save(update_fields=["password"])
    link.used_at = timezone.now()
    link.save(update_fields=["used_at"])
    revoked = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    AccessAttempt.objects.filter(username=user.get_username()).delete()
    audit_record(actor=user, action="auth.password_reset", obj=user, data={"link": link.pk, "tokens_revoked": revoked})
    return user


# API tokens -----------------------------------------------------------------------------------------------------

# Writing last_used_at on every request would turn each API read into a write; once a minute is enough to tell
# a live token from a forgotten one.
TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=1)


@transaction.atomic
def api_token_issue(
    *, user: AbstractBaseUser, name: str = "", valid_for: timedelta | None = None
) -> tuple[ApiToken, str]:
    """A new API token for `user`. Returns the row and the key, which is shown once: only its SHA-256 is stored."""
    valid_for = valid_for or timedelta(days=settings.API_TOKEN_DAYS)
    if valid_for <= timedelta(0):
        raise ValidationError({"expires_at": "A token must be valid for some time."})
    key = secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name.strip()[:100],
        prefix=key[:8],
        key_hash=_sha256(key),
        expires_at=timezone.now() + valid_for,
    )
    token.full_clean(exclude=["user"])
    token.save()
    audit_record(
        actor=user,
        action="auth.token_issue",
        obj=user,
        data={
            "token": token.pk,
            "prefix": token.prefix,
            "name": token.name,
            "expires_at": token.expires_at.isoformat(),
        },
    )
    return token, key


def api_token_authenticate(*, key: str) -> ApiToken | None:
    """The live (unrevoked, unexpired) token for `key`, with its user; notes when it was last used."""
    if not key or len(key) > 200:
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=_sha256(key), revoked_at__isnull=True, expires_at__gt=now)
        .first()
    )
    if token is None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_LAST_USED_RESOLUTION:
        # Conditional, so concurrent requests with one token write it once.
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - TOKEN_LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: AbstractBaseUser) -> bool:
    """Revoke one token (its owner, from their page or the API). False if it was already revoked."""
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if changed:
        audit_record(
            actor=actor,
            action="auth.token_revoke",
            obj=token.user,
            data={"token": token.pk, "prefix": token.prefix, "name": token.name},
        )
    return bool(changed)


@transaction.atomic
def api_tokens_revoke_all(*, user: AbstractBaseUser, actor: AbstractBaseUser) -> int:
    """Revoke every live token of `user`; returns how many."""
    live = list(ApiToken.objects.select_for_update().filter(user=user, revoked_at__isnull=True))
    for token in live:
        api_token_revoke(token=token, actor=actor)
    return len(live)


def api_tokens_of(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The user's tokens, live ones first, newest first (for their page and the API; keys are never stored)."""
    return ApiToken.objects.filter(user=user).order_by(F("revoked_at").asc(nulls_first=True), "-created_at")


# Lockouts -------------------------------------------------------------------------------------------------------


@transaction.atomic
def lockout_clear(*, username: str, ip_address: str, actor: AbstractBaseUser) -> int:
    """Forget a (username, address) pair's failed logins, so it may log in at once (audited). The caller checks
    the actor may see this lockout."""
    deleted, _ = AccessAttempt.objects.filter(username=username, ip_address=ip_address).delete()
    audit_record(
        actor=actor,
        action="auth.lockout_clear",
        data={"username": username[:150], "ip": ip_address[:45], "attempt_rows": deleted},
    )
    return deleted


def _client_ip(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return getattr(request, "axes_ip_address", None) or client_address(request)


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


def audit_csv_write(events: Iterable[AuditEvent], stream: IO[str]) -> int:
    writer = csv_writer(stream)  # usernames in failed logins are attacker-chosen: formulas are defused
    writer.writerow(AUDIT_FIELDS)
    count = 0
    for event in events:
        row = audit_event_as_row(event)
        row["data"] = json.dumps(row["data"], sort_keys=True)
        writer.writerow([str(row[field]) for field in AUDIT_FIELDS])
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
