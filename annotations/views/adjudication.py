"""The Disputes page: items whose clinicians disagree, per criterion, and the researcher's decision on each.
Researchers of the study (and admins) only; clinicians get 404 like for any study they may not see."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from annotations.models import Comparison, Study, System
from annotations.services.adjudication import (
    DECISIONS,
    STATUSES,
    adjudication_decide,
    adjudication_withdraw,
    decision_label,
    dispute_detail,
    dispute_ratings,
    dispute_summary,
    disputed_items,
    next_unresolved,
)
from annotations.services.studies import study_criteria
from annotations.views.common import error_dict, study_for

PER_PAGE = 25
STATUS_LABELS = {"unresolved": "Not yet adjudicated", "adjudicated": "Adjudicated", "all": "All"}


def _filters(request: HttpRequest) -> dict[str, str]:
    return {
        "criterion": request.GET.get("criterion", ""),
        "status": request.GET.get("status", "") or "unresolved",
        "system": request.GET.get("system", ""),
    }


def _posted_query(request: HttpRequest) -> str:
    """The list's filters carried through a form post, rebuilt from the known keys only."""
    posted = QueryDict(request.POST.get("filter_query", ""))
    return urlencode([(k, posted.get(k, "")) for k in ("criterion", "status", "system") if posted.get(k)])


def _item_url(study: Study, comparison_id: int, criterion_key: str, query: str = "") -> str:
    url = reverse(
        "study-dispute", kwargs={"slug": study.slug, "comparison_id": comparison_id, "criterion": criterion_key}
    )
    return f"{url}?{query}" if query else url


@login_required
def study_disputes(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    filters = _filters(request)
    errors: dict[str, list[str]] = {}
    all_items = disputed_items(study=study)
    try:
        # The summary needs every item anyway; the list narrows it without counting the votes again.
        items = disputed_items(
            study=study,
            criterion_key=filters["criterion"],
            status=filters["status"],
            system=filters["system"],
            candidates=all_items,
        )
    except ValidationError as exc:
        errors = error_dict(exc)
        items = []
    page = Paginator(items, PER_PAGE).get_page(request.GET.get("page"))
    comparisons = Comparison.objects.filter(pk__in=[i.comparison_id for i in page.object_list]).select_related(
        "prompt", "response_first__system", "response_second__system"
    )
    by_id = {c.pk: c for c in comparisons}
    ratings = dispute_ratings(study=study, items=list(page.object_list))
    query = urlencode([(k, v) for k, v in filters.items() if v])
    rows = [
        {
            "item": item,
            "comparison": by_id[item.comparison_id],
            "ratings": ratings.get(item.key, []),
            "url": _item_url(study, item.comparison_id, item.criterion.key, query),
            "decision": decision_label(item.adjudication.value) if item.adjudication else "",
        }
        for item in page.object_list
        if item.comparison_id in by_id
    ]
    first_unresolved = next(
        (
            i
            for i in all_items
            if not i.resolved and (not filters["criterion"] or i.criterion.key == filters["criterion"])
        ),
        None,
    )
    context = {
        "study": study,
        "filters": filters,
        "errors": errors,
        "summary": dispute_summary(study=study, items=all_items),
        "criteria": study_criteria(study),
        "systems": System.objects.filter(study=study).order_by("name").values_list("name", flat=True),
        "statuses": [(s, STATUS_LABELS[s]) for s in STATUSES],
        "page": page,
        "rows": rows,
        "filter_query": query,
        "first_unresolved": (
            _item_url(study, first_unresolved.comparison_id, first_unresolved.criterion.key, query)
            if first_unresolved
            else ""
        ),
        "can_manage": request.user.has_perm("annotations.manage_study", study),
    }
    return render(request, "studies/adjudication_list.html", context, status=400 if errors else 200)


@login_required
def study_dispute(request: HttpRequest, slug: str, comparison_id: int, criterion: str) -> HttpResponse:
    study = study_for(request, slug)
    try:
        detail = dispute_detail(study=study, comparison_id=comparison_id, criterion_key=criterion)
    except ValidationError:
        raise Http404("No such item.") from None
    filters = _filters(request)
    query = urlencode([(k, v) for k, v in filters.items() if v])
    following = next_unresolved(
        study=study,
        after=(comparison_id, detail.criterion.pk),
        criterion_key=filters["criterion"],
        system=filters["system"],
    )
    adjudication = detail.item.adjudication if detail.item else None
    context = {
        "study": study,
        "detail": detail,
        "comparison": detail.comparison,
        "criterion": detail.criterion,
        "adjudication": adjudication,
        "decision_choices": [(key, decision_label(value)) for key, value in DECISIONS.items()],
        "current_choice": next((k for k, v in DECISIONS.items() if adjudication and v == adjudication.value), ""),
        "next_url": (
            _item_url(study, following.comparison_id, following.criterion.key, query)
            if following and (following.comparison_id, following.criterion.pk) != (comparison_id, detail.criterion.pk)
            else ""
        ),
        "list_url": reverse("study-disputes", kwargs={"slug": study.slug}) + (f"?{query}" if query else ""),
        "filter_query": query,
        "can_manage": request.user.has_perm("annotations.manage_study", study),
        "errors": {},
        "form": {},
    }
    return render(request, "studies/adjudication_item.html", context)


@login_required
@require_POST
def study_dispute_decide(request: HttpRequest, slug: str, comparison_id: int, criterion: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    query = _posted_query(request)
    try:
        adjudication_decide(
            study=study,
            comparison_id=comparison_id,
            criterion_key=criterion,
            decision=request.POST.get("decision", ""),
            reason=request.POST.get("reason", ""),
            actor=request.user,
        )
    except ValidationError as exc:
        errors = error_dict(exc)
        for field, texts in errors.items():
            messages.error(request, f"Not saved ({'decision' if field == '__all__' else field}): {' '.join(texts)}")
        return redirect(_item_url(study, comparison_id, criterion, query))
    messages.success(request, f"Decision saved for comparison {comparison_id}.")
    if request.POST.get("then") == "next":
        filters = QueryDict(query)
        following = next_unresolved(
            study=study,
            after=(comparison_id, next((c.pk for c in study_criteria(study) if c.key == criterion), -1)),
            criterion_key=filters.get("criterion", ""),
            system=filters.get("system", ""),
        )
        if following is not None:
            return redirect(_item_url(study, following.comparison_id, following.criterion.key, query))
        messages.success(request, "Every disputed item is adjudicated.")
        return redirect(reverse("study-disputes", kwargs={"slug": study.slug}) + (f"?{query}" if query else ""))
    return redirect(_item_url(study, comparison_id, criterion, query))


@login_required
@require_POST
def study_dispute_withdraw(request: HttpRequest, slug: str, comparison_id: int, criterion: str) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    query = _posted_query(request)
    try:
        withdrawn = adjudication_withdraw(
            study=study,
            comparison_id=comparison_id,
            criterion_key=criterion,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except ValidationError:
        raise Http404("No such item.") from None
    if withdrawn:
        messages.success(request, "Decision withdrawn: the item is unresolved again.")
    return redirect(_item_url(study, comparison_id, criterion, query))


urlpatterns = [
    path("studies/<slug:slug>/disputes/", study_disputes, name="study-disputes"),
    path("studies/<slug:slug>/disputes/<int:comparison_id>/<slug:criterion>/", study_dispute, name="study-dispute"),
    path(
        "studies/<slug:slug>/disputes/<int:comparison_id>/<slug:criterion>/decide",
        study_dispute_decide,
        name="study-dispute-decide",
    ),
    path(
        "studies/<slug:slug>/disputes/<int:comparison_id>/<slug:criterion>/withdraw",
        study_dispute_withdraw,
        name="study-dispute-withdraw",
    ),
]
