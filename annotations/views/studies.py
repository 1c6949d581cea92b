from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST
from kombu import Connection

from annotations import selectors
from annotations.models import ScreeningHit
from annotations.permissions import is_admin, is_clinician, studies_visible_to
from annotations.services.comparisons import comparisons_build, responses_screen, screening_hit_resolve
from annotations.services.importing import ImportFailed, import_study_file
from annotations.services.studies import study_close, study_create, study_criteria, study_open
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
            text = " ".join(exc.messages) if isinstance(exc, ValidationError) else "Scale and overlap must be numbers."
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
    context = {
        "study": study,
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
        messages.error(request, f"Could not build comparisons: {exc}")
        return redirect("study-detail", slug=slug)
    messages.success(request, f"Created {created} comparisons.")
    return redirect("study-detail", slug=slug)


@login_required
@require_POST
def study_status(request: HttpRequest, slug: str, action: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    try:
        if action == "open":
            study_open(study=study, actor=request.user, override_screening=request.POST.get("override") == "1")
        else:
            study_close(study=study, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("study-detail", slug=slug)


@login_required
@require_POST
def screening_resolve(request: HttpRequest, slug: str, hit_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    hit = get_object_or_404(ScreeningHit, pk=hit_id, response__study=study)
    try:
        screening_hit_resolve(hit=hit, resolution=request.POST.get("resolution", ""), actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
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
    path("studies/<slug:slug>/open", study_status, {"action": "open"}, name="study-open"),
    path("studies/<slug:slug>/close", study_status, {"action": "close"}, name="study-close"),
    path("studies/<slug:slug>/screening/<int:hit_id>/resolve", screening_resolve, name="screening-resolve"),
]
