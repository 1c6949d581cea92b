"""The researcher's gold page for one comparison: answer it as a clinician would (the pair page's controls),
explain the answers, and keep it as a gold check or a calibration item; or unmark it.

Researchers only: the page names the systems. The pair is shown in canonical order (first response on the
left), so the answers given here are the canonical expected values."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from annotations.models import Comparison, Study
from annotations.services.gold import (
    GoldKind,
    comparison_gold_clear,
    comparison_gold_set,
    gold_answer_clean,
    gold_answers_given,
)
from annotations.services.rating import criteria_in_page_order, scale_options
from annotations.views.common import error_dict, study_for


def _comparison(study: Study, comparison_id: int) -> Comparison:
    return get_object_or_404(
        Comparison.objects.select_related("prompt", "response_first__system", "response_second__system"),
        pk=comparison_id,
        study=study,
    )


def _page(
    request: HttpRequest,
    study: Study,
    comparison: Comparison,
    *,
    values: dict[str, Any],
    explanation: str,
    kind: str,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    errors = errors or {}
    criteria = [
        {
            "key": c.key,
            "title": c.title,
            "question": c.question,
            "better_when": c.better_when,
            "worse_when": c.worse_when,
            "chosen": _as_int(values.get(c.key)),
            "errors": errors.get(c.key, []),
        }
        for c in criteria_in_page_order(study)
    ]
    first, second = comparison.response_first, comparison.response_second
    return render(
        request,
        "items/gold.html",
        {
            "study": study,
            "comparison": comparison,
            "criteria": criteria,
            "scale": _scale_labels(study, first.system.name, second.system.name),
            "explanation": explanation,
            "kind": kind,
            "kinds": GoldKind.CHOICES,
            "errors": errors,
            "error_list": [m for messages_ in errors.values() for m in messages_],
            "given": gold_answers_given(comparison=comparison),
            "back": reverse("study-items", kwargs={"slug": study.slug}) + f"#item-{comparison.pk}",
        },
        status=status,
    )


def _scale_labels(study: Study, first: str, second: str) -> list[dict[str, Any]]:
    """The pair page's scale, with the responses named as this page shows them (first left, second right)."""
    options = scale_options(study.scale_points)
    for option in options:
        option["label"] = (
            option["label"].replace("Response 1", f"First ({first})").replace("Response 2", f"Second ({second})")
        )
    return options


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@login_required
def comparison_gold(request: HttpRequest, slug: str, comparison_id: int) -> HttpResponse:
    study = study_for(request, slug)
    comparison = _comparison(study, comparison_id)
    if request.method != "POST":
        kind = GoldKind.CALIBRATION if comparison.is_calibration else GoldKind.GOLD
        return _page(
            request,
            study,
            comparison,
            values=dict(comparison.gold_expected or {}),
            explanation=comparison.gold_explanation,
            kind=kind,
        )
    study = study_for(request, slug, "annotations.manage_study")
    keys = [c.key for c in criteria_in_page_order(study)]
    values = {key: request.POST.get(f"v_{key}") for key in keys if request.POST.get(f"v_{key}") not in (None, "")}
    explanation = request.POST.get("explanation", "")
    kind = request.POST.get("kind", GoldKind.GOLD)
    try:
        answer = gold_answer_clean(study=study, values=values, explanation=explanation, kind=kind)
        comparison_gold_set(comparison=comparison, answer=answer, actor=request.user)
    except ValidationError as exc:
        errors = error_dict(exc, "comparison")
        return _page(
            request, study, comparison, values=values, explanation=explanation, kind=kind, errors=errors, status=400
        )
    label = "a calibration item" if kind == GoldKind.CALIBRATION else "a gold item"
    messages.success(request, f"Comparison {comparison.pk} is now {label} with your answers.")
    return redirect("comparison-gold", slug=study.slug, comparison_id=comparison.pk)


@login_required
@require_POST
def comparison_gold_unmark(request: HttpRequest, slug: str, comparison_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    comparison = _comparison(study, comparison_id)
    comparison_gold_clear(comparison=comparison, actor=request.user)
    messages.success(
        request, f"Comparison {comparison.pk} is no longer gold; it joins the regular pairs. Answers given stay."
    )
    return redirect("comparison-gold", slug=study.slug, comparison_id=comparison.pk)


urlpatterns = [
    path("studies/<slug:slug>/items/<int:comparison_id>/gold/", comparison_gold, name="comparison-gold"),
    path(
        "studies/<slug:slug>/items/<int:comparison_id>/gold/unmark",
        comparison_gold_unmark,
        name="comparison-gold-unmark",
    ),
]
