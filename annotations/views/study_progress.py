"""The researcher's workspace page for a study: progress, below-k, leases, clinicians, gold; the safety queue's
count with a link to its own page (annotations/views/safety.py)."""

import json

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from annotations.models import Comparison, Profile, Study, StudyMembership
from annotations.plain import error_text
from annotations.services.assignment import (
    clinician_assign,
    leases_expire,
    study_workspace_configure,
    workspace_progress,
)
from annotations.services.rating import comparison_mark_gold
from annotations.services.safety import safety_counts, safety_pairs_load, safety_queue
from annotations.services.studies import MAX_QUOTA
from annotations.views.common import study_for

QUOTA_FIELD = forms.IntegerField(
    min_value=0,
    max_value=MAX_QUOTA,
    required=False,
    error_messages={
        "invalid": "The quota must be a whole number of pairs.",
        "min_value": "The quota cannot be negative.",
        "max_value": f"The quota is at most {MAX_QUOTA:,} pairs.",
    },
)


@login_required
def study_progress(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    clinicians = (
        StudyMembership.objects.filter(study=study, role=StudyMembership.Role.CLINICIAN)
        .select_related("user")
        .order_by("user__username")
    )
    context = {
        "study": study,
        "progress": workspace_progress(study=study),
        "safety": safety_counts(study=study),
        # The first few pairs still to review; the queue itself, with its actions, is the Safety tab.
        "safety_pairs": safety_pairs_load(comparisons=list(safety_queue(study=study, status="open")[:5])),
        "clinicians": clinicians,
        "can_manage": request.user.has_perm("annotations.manage_study", study),
        "rationale_modes": Study.RationaleMode.choices,
    }
    return render(request, "studies/progress.html", context)


@login_required
@require_POST
def study_clinician_add(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    username = request.POST.get("username", "").strip()
    user = get_user_model().objects.filter(username=username, profile__role=Profile.Role.CLINICIAN).first()
    if user is None:
        messages.error(request, f"No clinician account named “{username}”.")
        return redirect("study-progress", slug=slug)
    try:
        quota = QUOTA_FIELD.clean(request.POST.get("quota"))
    except ValidationError as exc:
        messages.error(request, f"Could not add {username}: {' '.join(exc.messages)}")
        return redirect("study-progress", slug=slug)
    try:
        clinician_assign(study=study, user=user, actor=request.user, quota=quota)
    except (ValueError, ValidationError) as exc:
        messages.error(request, f"Could not add {username}: {error_text(exc)}")
        return redirect("study-progress", slug=slug)
    messages.success(request, f"{username} can now rate in this study.")
    return redirect("study-progress", slug=slug)


@login_required
@require_POST
def study_leases_expire(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    expired = leases_expire(study=study)
    messages.success(request, f"Returned {expired} expired lease(s) to the pool.")
    return redirect("study-progress", slug=slug)


@login_required
@require_POST
def study_gold_mark(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    try:
        comparison = Comparison.objects.get(study=study, pk=int(request.POST.get("comparison", "0")))
        raw = request.POST.get("expected", "").strip()
        expected = json.loads(raw) if raw else None
        if expected is not None and not isinstance(expected, dict):
            raise ValidationError("Expected an object mapping criterion keys to values, or nothing to unmark.")
        comparison_mark_gold(comparison=comparison, expected=expected, actor=request.user)
    except (ValueError, Comparison.DoesNotExist, ValidationError) as exc:
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, f"Could not mark the comparison: {text}")
        return redirect("study-progress", slug=slug)
    messages.success(request, "Gold comparison saved." if expected else "Gold mark removed.")
    return redirect("study-progress", slug=slug)


@login_required
@require_POST
def study_workspace_settings(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    post = request.POST
    try:
        study_workspace_configure(
            study=study,
            actor=request.user,
            overlap_k=int(post.get("overlap_k") or study.overlap_k),
            lease_minutes=int(post.get("lease_minutes") or study.lease_minutes),
            quota_per_rater=int(post["quota_per_rater"]) if post.get("quota_per_rater") else None,
            one_prompt_per_rater=post.get("one_prompt_per_rater") == "1",
            space_prompts=post.get("space_prompts") == "1",
            min_shared_per_rater_pair=int(post.get("min_shared_per_rater_pair") or 0),
            calibration_size=int(post.get("calibration_size") or 0),
            gold_rate=float(post.get("gold_rate") or 0),
            rationale_mode=post.get("rationale_mode") or study.rationale_mode,
            rationale_required=post.get("rationale_required") == "1",
            rationale_min_length=int(post.get("rationale_min_length") or 0),
        )
    except (ValueError, ValidationError) as exc:
        messages.error(request, f"Could not save the settings: {error_text(exc)}")
        return redirect("study-progress", slug=slug)
    messages.success(request, "Workspace settings saved.")
    return redirect("study-progress", slug=slug)


urlpatterns = [
    path("studies/<slug:slug>/progress", study_progress, name="study-progress"),
    path("studies/<slug:slug>/clinicians/add", study_clinician_add, name="study-clinician-add"),
    path("studies/<slug:slug>/leases/expire", study_leases_expire, name="study-leases-expire"),
    path("studies/<slug:slug>/gold", study_gold_mark, name="study-gold-mark"),
    path("studies/<slug:slug>/workspace-settings", study_workspace_settings, name="study-workspace-settings"),
]
