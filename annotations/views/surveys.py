"""Patient preference survey pages: the researcher's pages under the study (list and create, a survey's share
link and open/close, results with plots, CSV export, derive a weight set) and the public page a respondent
reaches by link, without an account."""

import io

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from annotations.csvsafe import csv_writer
from annotations.lockout import client_address
from annotations.models import Study
from annotations.models.survey import Survey, WeightSet
from annotations.services.audit import audit_download
from annotations.services.surveys import (
    CLOSED_MESSAGE,
    FREE_TEXT_MAX_CHARS,
    IMPORTANCE_MAX,
    IMPORTANCE_MIN,
    METHODS,
    SurveyAlreadyAnswered,
    SurveyNotOpen,
    survey_choice_questions,
    survey_close,
    survey_create,
    survey_criteria,
    survey_form_parse,
    survey_open,
    survey_persona_texts,
    survey_questions_from_text,
    survey_response_submit,
    survey_responses_csv_rows,
    survey_results,
    survey_submission_key_issue,
    weight_set_derive,
)
from annotations.views.common import error_dict, study_for

# Public submissions per client address per minute: enough for a family sharing one network, too few to flood.
SURVEY_POST_LIMIT = getattr(settings, "SURVEY_POST_LIMIT_PER_MINUTE", 10)
THROTTLE_WINDOW_SECONDS = 60
METHOD_LABELS = {
    "mean_importance": "Normalised mean importance",
    "top_priority": "Shares of top priority",
    "borda": "Borda counts from rankings",
}


def _survey_or_404(study: Study, public_id) -> Survey:
    survey = Survey.objects.filter(study=study, public_id=public_id).first()
    if survey is None:
        raise Http404("No such survey.")
    return survey


@login_required
def survey_list(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        try:
            survey = survey_create(
                study=study,
                actor=request.user,
                title=request.POST.get("title", ""),
                consent_text=request.POST.get("consent_text", ""),
                introduction=request.POST.get("introduction", ""),
                questions=survey_questions_from_text(request.POST.get("questions", "")),
                ask_ranking="ask_ranking" in request.POST,
                access_code=request.POST.get("access_code", "").strip(),
            )
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            messages.success(request, "Survey created as a draft: open it to start taking answers.")
            return redirect("survey-detail", slug=study.slug, public_id=survey.public_id)
    context = {
        "study": study,
        "surveys": study.surveys.all(),
        "weight_sets": WeightSet.objects.filter(study=study),
        "form": request.POST if request.method == "POST" else {},
        "errors": errors,
    }
    return render(request, "surveys/list.html", context, status=400 if errors else 200)


@login_required
@require_GET
def survey_detail(request: HttpRequest, slug: str, public_id) -> HttpResponse:
    study = study_for(request, slug)
    survey = _survey_or_404(study, public_id)
    context = {
        "study": study,
        "survey": survey,
        "share_url": request.build_absolute_uri(reverse("survey-public", args=[survey.link_token])),
        "criteria": survey_criteria(study),
        "responses": survey.responses.count(),
    }
    return render(request, "surveys/detail.html", context)


@login_required
@require_POST
def survey_status(request: HttpRequest, slug: str, public_id) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    survey = _survey_or_404(study, public_id)
    if request.POST.get("action") == "open":
        survey_open(survey=survey, actor=request.user)
        messages.success(request, "The survey is open: anyone with the link can answer.")
    elif request.POST.get("action") == "close":
        survey_close(survey=survey, actor=request.user)
        messages.success(request, "The survey is closed.")
    else:
        messages.error(request, "Choose open or close.")
    return redirect("survey-detail", slug=study.slug, public_id=survey.public_id)


# Bar charts drawn as SVG in the template: a label column, then the bar area, one row per criterion.
CHART_LABEL_PX = 190
CHART_BAR_PX = 400
CHART_ROW_PX = 32


def _bar_rows(results: dict) -> tuple[list[dict], list[dict], int]:
    """Mean importance and top-priority rows with criterion titles and bar geometry in pixels, and the charts'
    height."""
    titles = {c["key"]: c["title"] for c in results["criteria"]}
    span = IMPORTANCE_MAX - IMPORTANCE_MIN

    def x(value: float | None) -> float:
        return CHART_LABEL_PX + (0.0 if value is None else round(CHART_BAR_PX * (value - IMPORTANCE_MIN) / span, 1))

    importance = [
        {
            **row,
            "title": titles[row["criterion"]],
            "y": index * CHART_ROW_PX,
            "bar_px": x(row["mean"]) - CHART_LABEL_PX,
            "low_x": x(row["low"]),
            "high_x": x(row["high"]),
        }
        for index, row in enumerate(results["importance"])
    ]
    top = [
        {
            **row,
            "title": titles[row["criterion"]],
            "y": index * CHART_ROW_PX,
            "bar_px": round(CHART_BAR_PX * row["share"], 1),
        }
        for index, row in enumerate(results["top_priority"])
    ]
    return importance, top, CHART_ROW_PX * len(importance) + 8


@login_required
def survey_results_page(request: HttpRequest, slug: str, public_id) -> HttpResponse:
    study = study_for(request, slug)
    survey = _survey_or_404(study, public_id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        segment = request.POST.get("segment", "")
        question, _, answer = segment.partition("=")
        try:
            safety_text = request.POST.get("safety_minimum", "").strip()
            safety_minimum = float(safety_text) if safety_text else None
        except ValueError:
            errors = {"safety_minimum": ["Expected a number between 0 and 1."]}
        else:
            try:
                weight_set = weight_set_derive(
                    survey=survey,
                    actor=request.user,
                    name=request.POST.get("name", ""),
                    method=request.POST.get("method", ""),
                    segment_question=question,
                    segment_answer=answer,
                    safety_minimum=safety_minimum,
                )
            except ValidationError as exc:
                errors = error_dict(exc)
            else:
                messages.success(request, f"Weight set “{weight_set.name}” saved: choose it when launching a job.")
                return redirect("survey-results", slug=study.slug, public_id=survey.public_id)
    results = survey_results(survey)
    importance, top, chart_height = _bar_rows(results)
    breakdowns = []
    for block in results["breakdowns"]:
        groups = []
        for group in block["groups"]:
            means = {row["criterion"]: row["mean"] for row in group["importance"]}
            tops = {row["criterion"]: row["count"] for row in group["top_priority"]}
            groups.append(
                {
                    "answer": group["answer"],
                    "n": group["n"],
                    "cells": [(means[c["key"]], tops[c["key"]]) for c in results["criteria"]],
                }
            )
        breakdowns.append({"label": block["label"], "groups": groups})
    segments = [
        (f"{q['key']}={option}", f"{q['label']}: {option}")
        for q in survey_choice_questions(survey)
        for option in q["options"]
    ]
    context = {
        "study": study,
        "survey": survey,
        "results": results,
        "importance": importance,
        "top": top,
        "chart_height": chart_height,
        "chart_label_px": CHART_LABEL_PX,
        "chart_width": CHART_LABEL_PX + CHART_BAR_PX + 60,
        "breakdowns": breakdowns,
        "segments": segments,
        "methods": [(m, METHOD_LABELS[m]) for m in METHODS],
        "weight_sets": WeightSet.objects.filter(survey=survey),
        "personas": survey_persona_texts(survey),
        "form": request.POST if request.method == "POST" else {},
        "errors": errors,
    }
    return render(request, "surveys/results.html", context, status=400 if errors else 200)


@login_required
@require_GET
def survey_responses_csv(request: HttpRequest, slug: str, public_id) -> HttpResponse:
    study = study_for(request, slug)
    survey = _survey_or_404(study, public_id)
    return survey_csv_response(survey, actor=request.user)


def survey_csv_response(survey: Survey, *, actor) -> HttpResponse:
    """The responses as a CSV download (page and API), recorded in the audit log."""
    stream = io.StringIO()
    rows = survey_responses_csv_rows(survey)
    csv_writer(stream).writerows(rows)
    filename = f"{survey.study.slug}-survey-{survey.public_id}.csv"
    audit_download(
        actor=actor,
        kind="survey_responses",
        study=survey.study,
        obj=survey,
        data={"file": filename, "rows": len(rows) - 1},
    )
    response = HttpResponse(stream.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _throttled(request: HttpRequest) -> bool:
    """A fixed one-minute window per client address (annotations.lockout.client_address, so a forged
    X-Forwarded-For buys no fresh window)."""
    key = f"survey-post:{client_address(request)}"
    cache.add(key, 0, THROTTLE_WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, THROTTLE_WINDOW_SECONDS)
        count = 1
    return count > SURVEY_POST_LIMIT


def _public_context(survey: Survey, *, form=None, errors=None) -> dict:
    """The public form, with a fresh submission key, and what the respondent chose before an error."""
    form = form or {}
    errors = errors or {}
    criteria = [
        {
            "key": c.key,
            "title": c.title,
            "question": c.question,
            "selected": form.get(f"importance_{c.key}", ""),
            "rank": form.get(f"rank_{c.key}", ""),
            "errors": errors.get(f"importance_{c.key}", []),
        }
        for c in survey_criteria(survey.study)
    ]
    questions = [
        {**q, "value": form.get(f"answer_{q['key']}", ""), "errors": errors.get(f"answer_{q['key']}", [])}
        for q in survey.questions
    ]
    return {
        "survey": survey,
        "criteria": criteria,
        "questions": questions,
        "scale": [str(n) for n in range(IMPORTANCE_MIN, IMPORTANCE_MAX + 1)],
        "positions": [str(n) for n in range(1, len(criteria) + 1)],
        "submission_key": survey_submission_key_issue(survey),
        "form": form,
        "errors": errors,
        # Templates cannot read a key starting with an underscore.
        "general_errors": errors.get("__all__", []),
        "free_text_max": FREE_TEXT_MAX_CHARS,
    }


def survey_public(request: HttpRequest, link_token: str) -> HttpResponse:
    """The survey a respondent fills in (no account). Draft surveys do not exist to the public."""
    survey = Survey.objects.filter(link_token=link_token).exclude(status=Survey.Status.DRAFT).first()
    if survey is None:
        raise Http404("No such survey.")
    if survey.status == Survey.Status.CLOSED:
        return render(request, "surveys/closed.html", {"survey": survey, "message": CLOSED_MESSAGE}, status=410)
    if request.method == "POST":
        if _throttled(request):
            response = render(
                request,
                "surveys/closed.html",
                {
                    "survey": survey,
                    "message": "Too many answers from your network just now; please try again in a minute.",
                },
                status=429,
            )
            response["Retry-After"] = str(THROTTLE_WINDOW_SECONDS)
            return response
        try:
            survey_response_submit(survey=survey, **survey_form_parse(survey, dict(request.POST.lists())))
        except SurveyAlreadyAnswered:
            return redirect("survey-thanks", link_token=survey.link_token)
        except SurveyNotOpen:
            return render(request, "surveys/closed.html", {"survey": survey, "message": CLOSED_MESSAGE}, status=410)
        except ValidationError as exc:
            context = _public_context(survey, form=request.POST, errors=error_dict(exc))
            return render(request, "surveys/public.html", context, status=400)
        return redirect("survey-thanks", link_token=survey.link_token)
    return render(request, "surveys/public.html", _public_context(survey))


@require_GET
def survey_thanks(request: HttpRequest, link_token: str) -> HttpResponse:
    survey = Survey.objects.filter(link_token=link_token).exclude(status=Survey.Status.DRAFT).first()
    if survey is None:
        raise Http404("No such survey.")
    return render(request, "surveys/thanks.html", {"survey": survey})


urlpatterns = [
    path("studies/<slug:slug>/surveys/", survey_list, name="survey-list"),
    path("studies/<slug:slug>/surveys/<uuid:public_id>/", survey_detail, name="survey-detail"),
    path("studies/<slug:slug>/surveys/<uuid:public_id>/status/", survey_status, name="survey-status"),
    path("studies/<slug:slug>/surveys/<uuid:public_id>/results/", survey_results_page, name="survey-results"),
    path(
        "studies/<slug:slug>/surveys/<uuid:public_id>/responses.csv", survey_responses_csv, name="survey-responses-csv"
    ),
    path("survey/<str:link_token>/", survey_public, name="survey-public"),
    path("survey/<str:link_token>/thanks/", survey_thanks, name="survey-thanks"),
]
