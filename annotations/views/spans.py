"""Marked passages on the pair page: create and remove (static/js/spans.js calls these with fetch and the CSRF
token; the remove buttons also work as plain forms without JavaScript).

Thin: find the clinician's own pair (404 otherwise), call the span service, answer JSON for the page's script
or redirect back to the pair with a message. Spans are addressed by side (1 or 2), never by a response id.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from annotations.models import Assignment, Rater
from annotations.selectors_spans import spans_for_rater
from annotations.services.spans import SpanInput, span_create, span_delete
from annotations.views.common import error_dict
from annotations.views.workspace import own_assignment


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _rater(request: HttpRequest, assignment: Assignment) -> Rater:
    rater = assignment.rater
    rater.user = request.user  # the rater is this account: no query when the audit row names it
    return rater


def _refused(request: HttpRequest, assignment: Assignment, exc: ValidationError) -> HttpResponse:
    errors = error_dict(exc, "span")
    if _wants_json(request):
        return JsonResponse({"errors": errors}, status=400)
    messages.error(request, " ".join(m for msgs in errors.values() for m in msgs))
    return redirect("workspace-pair", public_id=assignment.public_id)


@login_required
@require_POST
def workspace_span_create(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    assignment = own_assignment(request, public_id)
    post = request.POST
    data = SpanInput(
        side=post.get("side"),
        start=post.get("start"),
        end=post.get("end"),
        label=post.get("label"),
        note=post.get("note", ""),
        quote=post.get("quote"),
    )
    try:
        span, created = span_create(assignment=assignment, rater=_rater(request, assignment), data=data)
    except ValidationError as exc:
        return _refused(request, assignment, exc)
    if _wants_json(request):
        return JsonResponse(
            {"span": span, "created": created, "spans": spans_for_rater(assignment=assignment)},
            status=201 if created else 200,
        )
    messages.success(request, f"Marked a passage of Response {span['side']} as {span['label']}.")
    return redirect("workspace-pair", public_id=assignment.public_id)


@login_required
@require_POST
def workspace_span_delete(request: HttpRequest, public_id: uuid.UUID, span_id: int) -> HttpResponse:
    assignment = own_assignment(request, public_id)
    try:
        span_delete(assignment=assignment, rater=_rater(request, assignment), span_id=span_id)
    except ValidationError as exc:
        if getattr(exc, "code", None) == "not_found":
            raise Http404("No such marked passage.") from None
        return _refused(request, assignment, exc)
    if _wants_json(request):
        return JsonResponse({"deleted": span_id, "spans": spans_for_rater(assignment=assignment)})
    messages.success(request, "Removed the marked passage.")
    return redirect("workspace-pair", public_id=assignment.public_id)


urlpatterns = [
    path("workspace/pair/<uuid:public_id>/spans", workspace_span_create, name="workspace-span-create"),
    path(
        "workspace/pair/<uuid:public_id>/spans/<int:span_id>/delete",
        workspace_span_delete,
        name="workspace-span-delete",
    ),
]
