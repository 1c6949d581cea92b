from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST
from kombu import Connection

from annotations import selectors
from annotations.models import ScreeningHit, Study
from annotations.permissions import is_admin, is_clinician, studies_visible_to
from annotations.plain import error_text
from annotations.selectors_history import HISTORY_KINDS, history_line, study_history_events
from annotations.services.comparisons import comparisons_build, responses_screen, screening_hit_resolve
from annotations.services.importing import ImportFailed, import_study_file
from annotations.services.studies import study_close, study_close_effects, study_create, study_criteria, study_open
from annotations.views.common import study_for


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if is_clinician(request.user) and not is_admin(request.user):
        return redirect("workspace-home")
    return redirect("study-list")


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    if is_clinician(request.user) and not is_admin(request.user):
        raise PermissionDenied
    if request.method == "POST":
        if not request.user.has_perm("annotations.create_study"):
            raise PermissionDenied
        try:
            study = study_create(
                slug=request.POST.get("slug", "").strip(),
                title=request.POST.get("title", "").strip(),
                scale_points=int(request.POST.get("scale_points") or 3),
                overlap_k=int(request.POST.get("overlap_k") or 3),
                owner=request.user,
            )
        except (ValidationError, ValueError) as exc:
            text = error_text(exc) if isinstance(exc, ValidationError) else "Scale and overlap must be whole numbers."
            messages.error(request, f"Could not create the study: {text}")
            return redirect("study-list")
        return redirect("study-detail", slug=study.slug)
    studies = studies_visible_to(request.user).order_by("-created_at")
    return render(
        request,
        "studies/list.html",
        {"studies": studies, "can_create": request.user.has_perm("annotations.create_study")},
    )


@login_required
def study_detail(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    recent = study_history_events(study=study, kind="lifecycle")[:5]
    context = {
        "study": study,
        "recent_history": [history_line(event) for event in recent],
        "can_manage": request.user.has_perm("annotations.manage_study", study),
        "overview": selectors.study_overview(study=study),
        "criteria": study_criteria(study),
        "hits": selectors.screening_hits_open(study=study)[:200],
        "systems": study.systems.order_by("name"),
    }
    return render(request, "studies/detail.html", context)


@login_required
@require_POST
def study_import(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a file to import.")
        return redirect("study-detail", slug=slug)
    try:
        summary = import_study_file(study=study, stream=upload, filename=upload.name, actor=request.user)
    except ImportFailed as exc:
        messages.error(request, str(exc))
        return redirect("study-detail", slug=slug)
    responses_screen(study=study)
    messages.success(request, summary.describe())
    return redirect("study-detail", slug=slug)


@login_required
@require_POST
def study_build_comparisons(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    try:
        budget = int(request.POST["budget"]) if request.POST.get("budget") else None
        created = comparisons_build(
            study=study,
            strategy=request.POST.get("strategy", "all_pairs"),
            reference_system=request.POST.get("reference_system") or None,
            budget=budget,
            seed=int(request.POST.get("seed") or 0),
            actor=request.user,
        )
    except (ValidationError, ValueError) as exc:
        text = error_text(exc) if isinstance(exc, ValidationError) else "Budget and seed must be whole numbers."
        messages.error(request, f"Could not build comparisons: {text}")
        return redirect("study-detail", slug=slug)
    messages.success(request, f"Created {created} comparisons.")
    return redirect("study-detail", slug=slug)


@login_required
@require_POST
def study_open_view(request: HttpRequest, slug: str) -> HttpResponse:
    """Open a draft study, or reopen a closed one."""
    study = study_for(request, slug, "annotations.manage_study")
    reopening = study.status == Study.Status.CLOSED
    try:
        study_open(study=study, actor=request.user, override_screening=request.POST.get("override") == "1")
    except ValidationError as exc:
        messages.error(request, f"Could not {'reopen' if reopening else 'open'} the study: {error_text(exc)}")
    else:
        messages.success(
            request,
            "The study is open again: clinicians can rate." if reopening else "The study is open: clinicians can rate.",
        )
    return redirect("study-detail", slug=slug)


@login_required
def study_close_view(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: what closing does, with a confirm button. POST with confirm=yes: close the study."""
    study = study_for(request, slug, "annotations.manage_study")
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        if study.status == Study.Status.CLOSED:
            messages.info(request, "The study was already closed.")
        else:
            study_close(study=study, actor=request.user)
            messages.success(request, "The study is closed. You can reopen it from this page.")
        return redirect("study-detail", slug=slug)
    if request.method == "POST":
        # A close without the confirmation (an old form, a script) lands on the page that asks for it.
        return redirect("study-close", slug=slug)
    if study.status == Study.Status.CLOSED:
        messages.info(request, "The study is already closed.")
        return redirect("study-detail", slug=slug)
    context = {
        "study": study,
        "effects": study_close_effects(study=study),
        "can_manage": True,
    }
    return render(request, "studies/close_confirm.html", context)


HISTORY_PAGE_SIZE = 50


@login_required
def study_history(request: HttpRequest, slug: str) -> HttpResponse:
    """Who changed what in the study and when, in plain words, from its audit rows."""
    study = study_for(request, slug)
    kind = request.GET.get("kind", "changes")
    if kind not in HISTORY_KINDS:
        kind = "changes"
    page = Paginator(study_history_events(study=study, kind=kind), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "study": study,
        "page": page,
        "lines": [history_line(event) for event in page.object_list],
        "kind": kind,
        "kinds": HISTORY_KINDS.items(),
    }
    return render(request, "studies/history.html", context)


@login_required
@require_POST
def screening_resolve(request: HttpRequest, slug: str, hit_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    hit = get_object_or_404(ScreeningHit, pk=hit_id, response__study=study)
    try:
        screening_hit_resolve(hit=hit, resolution=request.POST.get("resolution", ""), actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect("study-detail", slug=slug)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachability: 200 when both answer, 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        with Connection(settings.CELERY_BROKER_URL, transport_options=transport_options, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)


urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("studies/", study_list, name="study-list"),
    path("studies/<slug:slug>/", study_detail, name="study-detail"),
    path("studies/<slug:slug>/import", study_import, name="study-import"),
    path("studies/<slug:slug>/comparisons/build", study_build_comparisons, name="study-build-comparisons"),
    path("studies/<slug:slug>/open", study_open_view, name="study-open"),
    path("studies/<slug:slug>/close", study_close_view, name="study-close"),
    path("studies/<slug:slug>/history/", study_history, name="study-history"),
    path("studies/<slug:slug>/screening/<int:hit_id>/resolve", screening_resolve, name="screening-resolve"),
]
