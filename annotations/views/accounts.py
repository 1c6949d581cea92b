"""Account pages: accept an invitation, admins' audit log (with CSV and JSON Lines export) and invitations,
and a study's members for its owners."""

import io
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from annotations.models import Invitation, Profile, Study, StudyMembership
from annotations.services import accounts as account_services
from annotations.views.common import study_for

AUDIT_PAGE_SIZE = 100


def _parse_specialties(raw: str) -> tuple[str, ...]:
    return tuple(item.strip()[:100] for item in raw.split(",") if item.strip())[:20]


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Anyone holding an open invitation link chooses a username and password here."""
    invitation = account_services.invitation_usable(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
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
                raise ValidationError(f"No study {slug!r}.")
            days = int(request.POST.get("days") or account_services.DEFAULT_INVITATION_DAYS)
            invitation = account_services.invitation_create(
                email=request.POST.get("email", "").strip(),
                role=request.POST.get("role", ""),
                study=study,
                valid_for=timedelta(days=min(max(days, 1), 90)),
                actor=request.user,
            )
        except (ValidationError, ValueError) as exc:
            text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            messages.error(request, f"Could not create the invitation: {text}")
        else:
            link = request.build_absolute_uri(reverse("invitation-accept", args=[invitation.token]))
            messages.success(request, f"Invitation for {invitation.email} (send this link; it is shown once): {link}")
        return redirect("invitation-list")
    invitations = Invitation.objects.select_related("study").order_by("-created_at")[:200]
    return render(
        request,
        "accounts/invitations.html",
        {"invitations": invitations, "roles": Profile.Role.choices, "studies": Study.objects.order_by("slug")},
    )


@login_required
def study_members(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.view_members")
    can_manage = request.user.has_perm("annotations.manage_members", study)
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied
        user = get_user_model().objects.filter(username=request.POST.get("username", "").strip()).first()
        try:
            if user is None:
                raise ValidationError("No account with this username.")
            account_services.study_member_set(
                study=study, user=user, role=request.POST.get("role", ""), actor=request.user
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"{user.get_username()} is now a {request.POST.get('role')} of this study.")
        return redirect("study-members", slug=slug)
    members = StudyMembership.objects.filter(study=study).select_related("user").order_by("role", "user__username")
    return render(
        request,
        "accounts/members.html",
        {"study": study, "members": members, "can_manage": can_manage, "roles": StudyMembership.Role.choices},
    )


@login_required
@require_POST
def study_member_remove(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.view_members")
    if not request.user.has_perm("annotations.manage_members", study):
        raise PermissionDenied
    membership = get_object_or_404(StudyMembership, study=study, user_id=user_id)
    try:
        account_services.study_member_remove(study=study, user=membership.user, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("study-members", slug=slug)


urlpatterns = [
    path("invitations/<str:token>/", invitation_accept, name="invitation-accept"),
    path("admin-tools/audit/", audit_log, name="audit-log"),
    path("admin-tools/audit/export.csv", audit_export, {"fmt": "csv"}, name="audit-export-csv"),
    path("admin-tools/audit/export.jsonl", audit_export, {"fmt": "jsonl"}, name="audit-export-json"),
    path("admin-tools/invitations/", invitation_list, name="invitation-list"),
    path("studies/<slug:slug>/members/", study_members, name="study-members"),
    path("studies/<slug:slug>/members/<int:user_id>/remove", study_member_remove, name="study-member-remove"),
]
