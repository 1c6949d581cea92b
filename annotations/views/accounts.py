"""Account pages: accept an invitation, admins' audit log (with CSV and JSON Lines export) and invitations,
a study's members for its owners, each user's own account (password, API tokens), one-time password reset
links, and failed-login lockouts for admins and study owners."""

import io
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse, reverse_lazy
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from annotations.lockout import lockouts_active
from annotations.models import Invitation, Profile, Study, StudyMembership
from annotations.permissions import lockout_usernames_visible_to
from annotations.plain import error_text
from annotations.services import accounts as account_services
from annotations.views.common import study_for

AUDIT_PAGE_SIZE = 100


def _parse_specialties(raw: str) -> tuple[str, ...]:
    return tuple(item.strip()[:100] for item in raw.split(",") if item.strip())[:20]


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Anyone holding an open invitation link chooses a username and password here."""
    invitation = account_services.invitation_usable(token)
    if invitation is None:
        return render(
            request,
            "accounts/invitation_invalid.html",
            {"reason": account_services.invitation_refusal(token)},
            status=404,
        )
    errors: list[str] = []
    if request.method == "POST":
        password = request.POST.get("password", "")
        if password != request.POST.get("password_confirm", ""):
            errors.append("The two passwords differ.")
        else:
            details = None
            if invitation.role == Profile.Role.CLINICIAN:
                years = request.POST.get("years_of_practice", "").strip()
                details = account_services.ClinicianDetails(
                    licence_type=request.POST.get("licence_type", "").strip()[:100],
                    years_of_practice=int(years) if years.isdigit() else None,
                    specialties=_parse_specialties(request.POST.get("specialties", "")),
                )
            try:
                user = account_services.invitation_accept(
                    token=token, username=request.POST.get("username", "").strip(), password=password, details=details
                )
            except ValidationError as exc:
                errors.extend(exc.messages)
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, "Welcome. Your account is ready.")
                return redirect("home")
    return render(
        request,
        "accounts/invitation_accept.html",
        {
            "invitation": invitation,
            "errors": errors,
            "is_clinician": invitation.role == Profile.Role.CLINICIAN,
            "username": request.POST.get("username", ""),
        },
    )


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


def _audit_filters(request: HttpRequest) -> dict[str, str]:
    return {key: request.GET.get(key, "").strip()[:200] for key in ("action", "study", "actor", "since", "until")}


def _parse_when(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value) or parse_datetime(value + "T00:00:00+00:00")
    except ValueError:
        return None
    return parsed


def _audit_events(filters: dict[str, str]):
    return account_services.audit_events_filtered(
        action=filters["action"],
        study_slug=filters["study"],
        actor=filters["actor"],
        since=_parse_when(filters["since"]),
        until=_parse_when(filters["until"]),
    )


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    _require(request, "annotations.view_audit")
    filters = _audit_filters(request)
    page = Paginator(_audit_events(filters), AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({key: value for key, value in filters.items() if value})
    return render(request, "accounts/audit_log.html", {"page": page, "filters": filters, "query": query})


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(events):
    """Stream CSV row by row so a large log is never held in memory."""
    header = io.StringIO()
    account_services.audit_csv_write([], header)
    yield header.getvalue()
    for event in events.iterator(chunk_size=2000):
        buffer = io.StringIO()
        account_services.audit_csv_write([event], buffer)
        yield buffer.getvalue().split("\r\n", 1)[1]


@login_required
def audit_export(request: HttpRequest, fmt: str) -> StreamingHttpResponse:
    _require(request, "annotations.view_audit")
    filters = _audit_filters(request)
    events = _audit_events(filters)
    account_services.audit_export_record(
        actor=request.user, fmt=fmt, filters={k: v for k, v in filters.items() if v}, count=events.count()
    )
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_lines(events), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    else:
        response = StreamingHttpResponse(
            account_services.audit_json_lines(events.iterator(chunk_size=2000)), content_type="application/x-ndjson"
        )
        response["Content-Disposition"] = 'attachment; filename="audit-log.jsonl"'
    return response


@login_required
def invitation_list(request: HttpRequest) -> HttpResponse:
    _require(request, "annotations.invite_users")
    if request.method == "POST":
        study = None
        slug = request.POST.get("study", "").strip()
        if slug:
            study = Study.objects.filter(slug=slug).first()
        try:
            if slug and study is None:
                raise ValidationError({"study": f"No study with the slug “{slug}”."})
            days = int(request.POST.get("days") or account_services.DEFAULT_INVITATION_DAYS)
            invitation = account_services.invitation_create(
                email=request.POST.get("email", "").strip(),
                role=request.POST.get("role", ""),
                study=study,
                valid_for=timedelta(days=min(max(days, 1), 90)),
                actor=request.user,
            )
        except (ValidationError, ValueError) as exc:
            text = error_text(exc) if isinstance(exc, ValidationError) else "The number of days must be a number."
            messages.error(request, f"Could not create the invitation: {text}")
        else:
            link = request.build_absolute_uri(reverse("invitation-accept", args=[invitation.token]))
            messages.success(request, f"Invitation for {invitation.email} (send this link; it is shown once): {link}")
        return redirect("invitation-list")
    invitations = list(Invitation.objects.select_related("study").order_by("-created_at")[:200])
    now = timezone.now()
    for invitation in invitations:
        invitation.state = account_services.invitation_state(invitation, now)
    return render(
        request,
        "accounts/invitations.html",
        {"invitations": invitations, "roles": Profile.Role.choices, "studies": Study.objects.order_by("slug")},
    )


def _invitation_link(request: HttpRequest, invitation: Invitation) -> str:
    return request.build_absolute_uri(reverse("invitation-accept", args=[invitation.token]))


def _quota_from(raw: str) -> int | None:
    """A quota field: empty means none; anything else must be a whole number (the service checks the range)."""
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise ValidationError({"quota": "Enter the quota as a whole number of pairs, or leave it empty."})
    return int(raw)


def _people_context(request: HttpRequest, study: Study, can_manage: bool) -> dict:
    members = list(
        StudyMembership.objects.filter(study=study).select_related("user").order_by("role", "user__username")
    )
    now = timezone.now()
    invitations = [
        {
            "invitation": invitation,
            "state": account_services.invitation_state(invitation, now),
            "link": _invitation_link(request, invitation) if can_manage else "",
        }
        for invitation in account_services.invitations_of_study(study=study)[:500]
    ]
    counts = {state: 0 for state in ("pending", "accepted", "expired", "revoked")}
    for row in invitations:
        counts[row["state"]] += 1
    return {
        "study": study,
        "members": members,
        "clinicians": [m for m in members if m.role == StudyMembership.Role.CLINICIAN],
        "team": [m for m in members if m.role != StudyMembership.Role.CLINICIAN],
        # The last owner cannot be removed (the service refuses it), so the page does not offer it.
        "owners": sum(1 for m in members if m.role == StudyMembership.Role.OWNER),
        "invitations": invitations,
        "invitation_counts": counts,
        "can_manage": can_manage,
        # view_members means admin or a researcher of this study: either may reset its clinicians' passwords.
        "can_reset": True,
        "roles": StudyMembership.Role.choices,
        "invite_roles": [(Profile.Role.CLINICIAN, "Clinician (rates pairs)"), (Profile.Role.RESEARCHER, "Researcher")],
        "default_days": account_services.DEFAULT_INVITATION_DAYS,
        "study_quota": study.quota_per_rater,
        "new_link": request.session.pop("people_new_link", None),
    }


@login_required
def study_members(request: HttpRequest, slug: str) -> HttpResponse:
    """The study's People page: members, invitations and their state; owners and admins manage them here."""
    study = study_for(request, slug, "annotations.view_members")
    can_manage = request.user.has_perm("annotations.manage_members", study)
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied
        try:
            membership = account_services.study_member_add(
                study=study,
                username=request.POST.get("username", "").strip()[:150],
                role=request.POST.get("role", ""),
                actor=request.user,
                quota=_quota_from(request.POST.get("quota", "")),
            )
        except ValidationError as exc:
            messages.error(request, error_text(exc))
        else:
            messages.success(request, f"{membership.user.get_username()} is now a {membership.role} of this study.")
        return redirect("study-members", slug=slug)
    return render(request, "studies/people.html", _people_context(request, study, can_manage))


def _manage_members(request: HttpRequest, slug: str) -> Study:
    study = study_for(request, slug, "annotations.view_members")
    if not request.user.has_perm("annotations.manage_members", study):
        raise PermissionDenied
    return study


@login_required
@require_POST
def study_invite(request: HttpRequest, slug: str) -> HttpResponse:
    """Invite a clinician or researcher into this study; the link is shown to copy (and emailed if configured)."""
    study = _manage_members(request, slug)
    try:
        role = request.POST.get("role", "")
        if role not in (Profile.Role.CLINICIAN, Profile.Role.RESEARCHER):
            raise ValidationError({"role": "Choose clinician or researcher."})
        days = request.POST.get("days", "").strip() or str(account_services.DEFAULT_INVITATION_DAYS)
        if not days.isdigit() or not 1 <= int(days) <= 90:
            raise ValidationError({"days": "An invitation is valid for 1 to 90 days."})
        invitation = account_services.invitation_create(
            email=request.POST.get("email", "").strip()[:254],
            role=role,
            study=study,
            valid_for=timedelta(days=int(days)),
            quota=_quota_from(request.POST.get("quota", "")),
            actor=request.user,
        )
    except ValidationError as exc:
        messages.error(request, f"Could not invite: {error_text(exc)}")
        return redirect("study-members", slug=slug)
    link = _invitation_link(request, invitation)
    emailed = account_services.invitation_email_send(invitation=invitation, link=link)
    request.session["people_new_link"] = {"email": invitation.email, "link": link, "emailed": emailed}
    return redirect("study-members", slug=slug)


def _study_invitation(study: Study, invitation_id: int) -> Invitation:
    return get_object_or_404(Invitation, pk=invitation_id, study=study)


@login_required
@require_POST
def study_invitation_resend(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    study = _manage_members(request, slug)
    invitation = _study_invitation(study, invitation_id)
    try:
        invitation = account_services.invitation_resend(invitation=invitation, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
        return redirect("study-members", slug=slug)
    link = _invitation_link(request, invitation)
    emailed = account_services.invitation_email_send(invitation=invitation, link=link)
    request.session["people_new_link"] = {"email": invitation.email, "link": link, "emailed": emailed}
    messages.success(
        request,
        f"The invitation to {invitation.email} is valid again until {invitation.expires_at:%Y-%m-%d %H:%M} UTC "
        f"(sent {invitation.sent_count} times).",
    )
    return redirect("study-members", slug=slug)


@login_required
@require_POST
def study_invitation_revoke(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    study = _manage_members(request, slug)
    invitation = _study_invitation(study, invitation_id)
    try:
        account_services.invitation_revoke(invitation=invitation, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"The invitation to {invitation.email} is revoked: its link no longer works.")
    return redirect("study-members", slug=slug)


@login_required
@require_POST
def study_member_quota(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    study = _manage_members(request, slug)
    membership = get_object_or_404(StudyMembership.objects.select_related("user"), study=study, user_id=user_id)
    try:
        quota = _quota_from(request.POST.get("quota", ""))
        account_services.membership_quota_set(study=study, user=membership.user, quota=quota, actor=request.user)
    except ValidationError as exc:
        messages.error(request, f"Could not set the quota: {error_text(exc)}")
    else:
        who = membership.user.get_username()
        if quota is None:
            messages.success(request, f"{who} has no personal quota now; the study's default applies.")
        else:
            messages.success(request, f"{who} is asked to rate {quota} pairs.")
    return redirect("study-members", slug=slug)


@login_required
def study_member_remove(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    """GET: a confirmation page saying what removing this member does to their work. POST: remove them."""
    study = _manage_members(request, slug)
    membership = get_object_or_404(StudyMembership.objects.select_related("user"), study=study, user_id=user_id)
    if request.method != "POST":
        work = account_services.member_work(study=study, user=membership.user)
        return render(
            request, "accounts/member_remove_confirm.html", {"study": study, "membership": membership, "work": work}
        )
    try:
        work = account_services.study_member_remove(study=study, user=membership.user, actor=request.user)
    except ValidationError as exc:
        messages.error(request, f"Could not remove {membership.user.get_username()}: {error_text(exc)}")
    else:
        text = f"{membership.user.get_username()} is removed from this study."
        if membership.role == StudyMembership.Role.CLINICIAN:
            text += (
                f" {work.leased} pair(s) they had in hand went back to the pool; "
                f"their {work.submitted} submitted rating set(s) are kept."
            )
        messages.success(request, text)
    return redirect("study-members", slug=slug)


# My account: password and API tokens -------------------------------------------------------------------------


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own page: change password, list API tokens, issue and revoke them."""
    new_key = request.session.pop("new_api_token", None)
    return render(
        request,
        "accounts/account.html",
        {
            "tokens": account_services.api_tokens_of(user=request.user)[:100],
            "new_key": new_key,
            "token_days": settings.API_TOKEN_DAYS,
            "now": timezone.now(),
            "can_view_lockouts": request.user.has_perm("annotations.view_lockouts"),
        },
    )


@login_required
@require_POST
def account_token_create(request: HttpRequest) -> HttpResponse:
    token, key = account_services.api_token_issue(user=request.user, name=request.POST.get("name", "")[:100])
    # Shown once, on the next page only: the session carries it across the redirect, then forgets it.
    request.session["new_api_token"] = {"key": key, "prefix": token.prefix}
    return redirect("account")


@login_required
@require_POST
def account_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(account_services.api_tokens_of(user=request.user), pk=token_id)
    if account_services.api_token_revoke(token=token, actor=request.user):
        messages.success(request, f"Token {token.prefix}… is revoked.")
    return redirect("account")


class AuditedPasswordChangeView(PasswordChangeView):
    """Django's password change (old password, validators), saved through the audited service."""

    template_name = "registration/password_change.html"
    success_url = reverse_lazy("account")

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        account_services.password_change(user=form.user, password=form.cleaned_data["new_password1"])
        # Changing the password ends the user's other sessions; keep this one.
        update_session_auth_hash(self.request, form.user)
        messages.success(self.request, "Your password is changed.")
        return redirect(self.get_success_url())


# Password reset links --------------------------------------------------------------------------------------------


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


@login_required
@require_POST
def password_reset_link_create(request: HttpRequest, user_id: int) -> HttpResponse:
    """A researcher (for the clinicians of their studies) or an admin (for anyone) makes a one-time link."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not request.user.has_perm("annotations.reset_password", user):
        raise Http404("No such account.")
    _, token = account_services.password_reset_link_create(user=user, actor=request.user)
    link = request.build_absolute_uri(reverse("password-reset", args=[token]))
    messages.success(
        request,
        f"Password reset link for {user.get_username()} (send it to them; it is shown once, works once and "
        f"expires in {settings.PASSWORD_RESET_LINK_HOURS} hours): {link}",
    )
    return redirect(_safe_next(request, reverse("home")))


def password_reset(request: HttpRequest, token: str) -> HttpResponse:
    """Anyone holding an open reset link sets a new password here (Django's validators apply)."""
    link = account_services.password_reset_link_usable(token)
    if link is None:
        return render(request, "registration/password_reset_invalid.html", status=404)
    form = SetPasswordForm(link.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            account_services.password_reset_link_use(token=token, password=form.cleaned_data["new_password1"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Your password is set. Log in with it now.")
            return redirect("login")
    return render(request, "registration/password_reset.html", {"form": form, "username": link.user.get_username()})


# Lockouts ----------------------------------------------------------------------------------------------------------


def _visible_lockouts(request: HttpRequest):
    usernames = lockout_usernames_visible_to(request.user)
    return lockouts_active(usernames=usernames)


@login_required
def lockout_list(request: HttpRequest) -> HttpResponse:
    """Paused logins: admins see every pair, study owners those of their studies' members; either may lift one."""
    _require(request, "annotations.view_lockouts")
    lockouts = _visible_lockouts(request)
    accounts = {
        user.get_username(): user
        for user in get_user_model().objects.filter(username__in={lockout.username for lockout in lockouts})
    }
    rows = [
        {
            "lockout": lockout,
            "account": accounts.get(lockout.username),
            "can_reset": lockout.username in accounts
            and request.user.has_perm("annotations.reset_password", accounts[lockout.username]),
        }
        for lockout in lockouts
    ]
    return render(request, "accounts/lockouts.html", {"rows": rows})


@login_required
@require_POST
def lockout_clear(request: HttpRequest) -> HttpResponse:
    _require(request, "annotations.view_lockouts")
    username = request.POST.get("username", "")[:150]
    ip_address = request.POST.get("ip_address", "")[:45]
    visible = {(lockout.username, lockout.ip_address) for lockout in _visible_lockouts(request)}
    if (username, ip_address) not in visible:
        messages.error(request, "That login is not paused (any more).")
        return redirect("lockout-list")
    account_services.lockout_clear(username=username, ip_address=ip_address, actor=request.user)
    messages.success(request, f"Logins for {username} from {ip_address} may continue now.")
    return redirect("lockout-list")


urlpatterns = [
    path("invitations/<str:token>/", invitation_accept, name="invitation-accept"),
    path("admin-tools/audit/", audit_log, name="audit-log"),
    path("admin-tools/audit/export.csv", audit_export, {"fmt": "csv"}, name="audit-export-csv"),
    path("admin-tools/audit/export.jsonl", audit_export, {"fmt": "jsonl"}, name="audit-export-json"),
    path("admin-tools/invitations/", invitation_list, name="invitation-list"),
    path("studies/<slug:slug>/members/", study_members, name="study-members"),
    path("studies/<slug:slug>/members/invite", study_invite, name="study-invite"),
    path(
        "studies/<slug:slug>/members/invitations/<int:invitation_id>/resend",
        study_invitation_resend,
        name="study-invitation-resend",
    ),
    path(
        "studies/<slug:slug>/members/invitations/<int:invitation_id>/revoke",
        study_invitation_revoke,
        name="study-invitation-revoke",
    ),
    path("studies/<slug:slug>/members/<int:user_id>/quota", study_member_quota, name="study-member-quota"),
    path("studies/<slug:slug>/members/<int:user_id>/remove", study_member_remove, name="study-member-remove"),
    path("accounts/me/", account, name="account"),
    path("accounts/me/password/", AuditedPasswordChangeView.as_view(), name="password-change"),
    path("accounts/me/tokens/new", account_token_create, name="account-token-create"),
    path("accounts/me/tokens/<int:token_id>/revoke", account_token_revoke, name="account-token-revoke"),
    path("accounts/<int:user_id>/reset-link", password_reset_link_create, name="password-reset-link-create"),
    path("accounts/reset/<str:token>/", password_reset, name="password-reset"),
    path("accounts/lockouts/", lockout_list, name="lockout-list"),
    path("accounts/lockouts/clear", lockout_clear, name="lockout-clear"),
]
