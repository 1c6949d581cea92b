"""Guidelines: the researcher writes them (Markdown, with a preview) and sets the span labels on one page; the
clinician reads them with the rubric before the first pair and from a link on every pair page."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from annotations.models import Assignment
from annotations.services.guidelines import (
    MAX_GUIDELINES_LENGTH,
    guidelines_for_clinician,
    guidelines_html,
    guidelines_mark_read,
    study_guidelines_update,
)
from annotations.services.rating import criteria_in_page_order
from annotations.views.common import error_dict, study_for
from annotations.views.workspace import clinician_study


def _back_to_pair(request: HttpRequest, study_id: int) -> str | None:
    """The clinician's own pair to return to, if the link from the pair page named one."""
    raw = request.GET.get("pair", "")
    try:
        public_id = uuid.UUID(raw)
    except ValueError:
        return None
    exists = Assignment.objects.filter(public_id=public_id, rater__user=request.user, study_id=study_id).exists()
    return str(public_id) if exists else None


@login_required
def workspace_guidelines(request: HttpRequest, slug: str) -> HttpResponse:
    """The clinician's guidelines page: the researcher's guidelines, the rubric and the span labels."""
    study = clinician_study(request, slug)
    guidelines_mark_read(study=study, user=request.user, session=request.session)
    context = {
        "study": study,
        "guidelines": guidelines_for_clinician(study=study),
        "criteria": criteria_in_page_order(study),
        "span_labels": study.span_labels or ["unsafe"],
        "back_to_pair": _back_to_pair(request, study.pk),
        "starting": request.GET.get("start") == "1",
    }
    return render(request, "workspace/guidelines.html", context)


@login_required
def study_guidelines(request: HttpRequest, slug: str) -> HttpResponse:
    """Edit the guidelines and span labels: Preview re-renders the page with the text as clinicians will see it;
    Save stores it (audited)."""
    study = study_for(request, slug)
    can_edit = request.user.has_perm("annotations.manage_study", study)
    text = study.guidelines
    labels_text = "\n".join(study.span_labels or ["unsafe"])
    errors: dict[str, list[str]] = {}
    preview = None
    status = 200
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        text = request.POST.get("guidelines", "")
        labels_text = request.POST.get("span_labels", "")
        if request.POST.get("action") == "preview":
            preview = guidelines_html(text)
        else:
            try:
                study_guidelines_update(study=study, actor=request.user, guidelines=text, span_labels=labels_text)
            except ValidationError as exc:
                errors = error_dict(exc, "guidelines")
                status = 400
            else:
                messages.success(
                    request, "Guidelines and span labels saved. Clinicians see them before their next pair."
                )
                return redirect("study-guidelines", slug=study.slug)
    elif text:
        preview = guidelines_html(text)
    context = {
        "study": study,
        "can_edit": can_edit,
        "text": text,
        "labels_text": labels_text,
        "preview": preview,
        "errors": errors,
        "max_length": MAX_GUIDELINES_LENGTH,
        "criteria": criteria_in_page_order(study),
    }
    return render(request, "studies/guidelines.html", context, status=status)


urlpatterns = [
    path("workspace/<slug:slug>/guidelines", workspace_guidelines, name="workspace-guidelines"),
    path("studies/<slug:slug>/guidelines", study_guidelines, name="study-guidelines"),
]
