"""The safety queue (its own "Safety" tab; the progress page shows the count and links here): every flagged
pair with both responses, every rater's reasons and spans, and the actions on it. Researchers only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from annotations.models import SafetyReview, Study
from annotations.services.safety import (
    QUEUE_STATUSES,
    response_exports_set,
    safety_counts,
    safety_history,
    safety_note_save,
    safety_pair,
    safety_pairs_load,
    safety_queue,
    safety_review_set,
)
from annotations.views.common import error_dict, study_for

PER_PAGE = 10
STATUS_LABELS = {"open": "To review", "reviewed": "Reviewed", "all": "All"}


def _back(request: HttpRequest, study: Study, comparison_id: int) -> HttpResponse:
    """Back to where the form was: the pair's page, or the queue (with its status filter and page)."""
    if request.POST.get("back") == "list":
        status = request.POST.get("status", "")
        page = request.POST.get("page", "")
        query = "&".join(
            part
            for part in (
                f"status={status}" if status in QUEUE_STATUSES else "",
                f"page={page}" if page.isdigit() else "",
            )
            if part
        )
        url = reverse("study-safety", kwargs={"slug": study.slug})
        return redirect(f"{url}?{query}#pair-{comparison_id}" if query else f"{url}#pair-{comparison_id}")
    return redirect("study-safety-pair", slug=study.slug, comparison_id=comparison_id)


def _report(request: HttpRequest, exc: ValidationError) -> None:
    for field, texts in error_dict(exc).items():
        messages.error(request, f"Not saved ({'pair' if field == '__all__' else field}): {' '.join(texts)}")


@login_required
def study_safety(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    status = request.GET.get("status", "") or "open"
    errors: dict[str, list[str]] = {}
    try:
        queue = safety_queue(study=study, status=status)
    except ValidationError as exc:
        errors, status = error_dict(exc), "open"
        queue = safety_queue(study=study, status=status)
    page = Paginator(queue, PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "study": study,
        "status": status,
        "statuses": [(s, STATUS_LABELS[s]) for s in QUEUE_STATUSES],
        "errors": errors,
        "counts": safety_counts(study=study),
        "page": page,
        "pairs": safety_pairs_load(comparisons=list(page.object_list)),
        "can_manage": request.user.has_perm("annotations.manage_study", study),
        "back": "list",
    }
    return render(request, "studies/safety_list.html", context, status=400 if errors else 200)


@login_required
def study_safety_pair(request: HttpRequest, slug: str, comparison_id: int) -> HttpResponse:
    study = study_for(request, slug)
    try:
        pair = safety_pair(study=study, comparison_id=comparison_id)
    except ValidationError:
        raise Http404("No such flagged pair.") from None
    context = {
        "study": study,
        "pair": pair,
        "history": safety_history(study=study, comparison=pair.comparison),
        "can_manage": request.user.has_perm("annotations.manage_study", study),
        "back": "pair",
    }
    return render(request, "studies/safety_pair.html", context)


@login_required
@require_POST
def study_safety_review(request: HttpRequest, slug: str, comparison_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    status = request.POST.get("review_status", SafetyReview.Status.REVIEWED)
    try:
        safety_review_set(
            study=study,
            comparison_id=comparison_id,
            status=status,
            actor=request.user,
            note=request.POST["note"] if "note" in request.POST else None,
        )
    except ValidationError as exc:
        _report(request, exc)
    else:
        messages.success(
            request,
            f"Comparison {comparison_id} marked reviewed."
            if status == SafetyReview.Status.REVIEWED
            else f"Comparison {comparison_id} is open for review again.",
        )
    return _back(request, study, comparison_id)


@login_required
@require_POST
def study_safety_note(request: HttpRequest, slug: str, comparison_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    try:
        safety_note_save(
            study=study, comparison_id=comparison_id, note=request.POST.get("note", ""), actor=request.user
        )
    except ValidationError as exc:
        _report(request, exc)
    else:
        messages.success(request, f"Note saved on comparison {comparison_id}.")
    return _back(request, study, comparison_id)


@login_required
@require_POST
def study_response_exports(request: HttpRequest, slug: str, comparison_id: int, response_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    excluded = request.POST.get("excluded") == "1"
    try:
        response = response_exports_set(
            study=study,
            response_id=response_id,
            excluded=excluded,
            actor=request.user,
            reason=f"safety queue, comparison {comparison_id}",
        )
    except ValidationError as exc:
        _report(request, exc)
    else:
        messages.success(
            request,
            f"Response {response.external_id} is excluded from new exports: its comparisons are left out."
            if excluded
            else f"Response {response.external_id} is included in new exports again.",
        )
    return _back(request, study, comparison_id)


urlpatterns = [
    path("studies/<slug:slug>/safety/", study_safety, name="study-safety"),
    path("studies/<slug:slug>/safety/<int:comparison_id>/", study_safety_pair, name="study-safety-pair"),
    path("studies/<slug:slug>/safety/<int:comparison_id>/review", study_safety_review, name="study-safety-review"),
    path("studies/<slug:slug>/safety/<int:comparison_id>/note", study_safety_note, name="study-safety-note"),
    path(
        "studies/<slug:slug>/safety/<int:comparison_id>/responses/<int:response_id>/exports",
        study_response_exports,
        name="study-response-exports",
    ),
]
