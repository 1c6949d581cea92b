"""Report pages for researchers: agreement and results per study and criterion, downloads, printable view."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse

from annotations.models import JobStatus, Study
from annotations.selectors_reports import report_rater_choices
from annotations.services.reports import (
    ReportParams,
    report_csv,
    report_document,
    report_latest_computed,
    report_params_from_query,
    report_request,
    shares_table,
)
from annotations.services.studies import study_criteria
from annotations.views import report_charts
from annotations.views.common import study_for

FILTER_FIELDS = ("criterion", "rater", "from", "to", "min_gold_accuracy", "resamples", "seed")

RELIABILITY_ROWS = [
    (("alpha", "nominal"), "Krippendorff's α, nominal (A / tie / B)", "n_pairable_values"),
    (("alpha", "ordinal"), "Krippendorff's α, ordinal", "n_pairable_values"),
    (("alpha", "interval"), "Krippendorff's α, interval", "n_pairable_values"),
    (("fleiss_kappa",), "Fleiss' κ", "n_items"),
    (("gwet_ac1",), "Gwet's AC1", "n_items"),
    (("gwet_ac2_ordinal",), "Gwet's AC2, ordinal weights", "n_items"),
    (("mean_pairwise", "kappa"), "Mean pairwise Cohen's κ", "n_rater_pairs"),
    (("mean_pairwise", "kappa_quadratic"), "Mean pairwise quadratic-weighted κ", "n_rater_pairs"),
    (("percent_agreement",), "Percent agreement", "n_pairs"),
    (("percent_agreement_without_ties",), "Percent agreement, ties left out", "n_pairs"),
]
JUDGE_FIGURES = [
    ("kappa", "Cohen's κ"),
    ("kappa_quadratic", "Quadratic-weighted κ"),
    ("percent_agreement", "Percent agreement"),
]


def params_from_query(query: QueryDict) -> ReportParams:
    return report_params_from_query(query)


def filter_query(query: QueryDict) -> str:
    """The filter part of a query string, to carry into download, print and API links."""
    return urlencode([(key, value) for key in FILTER_FIELDS for value in query.getlist(key) if value])


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _interval(stat: dict[str, Any], text=_number) -> str:
    if stat.get("ci_low") is None or stat.get("ci_high") is None:
        return ""
    return f"{text(stat['ci_low'])} to {text(stat['ci_high'])}"


def _dig(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        data = data[key]
    return data


def _criterion_context(
    key: str, entry: dict[str, Any], meta: dict[str, Any] | None, systems: list[str]
) -> dict[str, Any]:
    reliability = entry["reliability"]
    rows = []
    for keys, label, count_key in RELIABILITY_ROWS:
        stat = _dig(reliability, keys)
        text = _percent if keys[0].startswith("percent") else _number
        n = stat.get(count_key, reliability.get(count_key))
        rows.append({"label": label, "estimate": text(stat["estimate"]), "interval": _interval(stat, text), "n": n})
    judges = []
    for judge, judged in sorted(entry["judges"].items()):
        figures = []
        for figure, label in JUDGE_FIGURES:
            against = judged["against_clinicians"][figure]
            text = _percent if figure.startswith("percent") else _number
            figures.append(
                {
                    "label": label,
                    "judge": text(against["judge_clinician_mean"]["estimate"]),
                    "judge_interval": _interval(against["judge_clinician_mean"], text),
                    "clinicians": text(against["clinician_clinician_mean"]["estimate"]),
                    "difference": text(against["difference"]["estimate"]),
                    "difference_interval": _interval(against["difference"], text),
                }
            )
        alt = judged["alternative_annotator_test"]
        judges.append(
            {
                "label": judge,
                "n_ratings": judged["n_ratings"],
                "figures": figures,
                "alpha_added": _number(judged["alpha"]["judge_added_minus_clinicians_only"]["nominal"]["estimate"]),
                "alpha_added_interval": _interval(judged["alpha"]["judge_added_minus_clinicians_only"]["nominal"]),
                "alt_passed": alt["passed"],
                "alt_winning_rate": _percent(alt["winning_rate"]),
                "alt_tested": alt["n_humans_tested"],
                "alt_skipped": alt["n_humans_skipped"],
            }
        )
    pairs = []
    groups = {"clinicians": entry["results"]["clinicians"], **dict(sorted(entry["results"]["judges"].items()))}
    for group, results in groups.items():
        for pair in sorted(results["pairs"], key=lambda p: (p["system"], p["opponent"])):
            per_rating, per_comparison = pair["per_rating"], pair["per_comparison"]
            pairs.append(
                {
                    "group": group,
                    "system": pair["system"],
                    "opponent": pair["opponent"],
                    "n": per_rating["n"],
                    "shares": per_rating["shares_percent"],
                    "win_rate": _percent(per_rating["win_rate"]["estimate"]),
                    "win_rate_interval": _interval(per_rating["win_rate"], _percent),
                    "p_rating": _number(per_rating["sign_test_p_value"], 4),
                    "p_comparison": _number(per_comparison["sign_test_p_value"], 4),
                }
            )
    return {
        "key": key,
        "title": meta["title"] if meta else key,
        "version": meta["version"] if meta else None,
        "n_ratings": entry["n_ratings"],
        "n_items": entry["n_items"],
        "n_prompts": entry["n_prompts"],
        "n_clinician_ratings": reliability["n_ratings"],
        "n_clinicians": reliability["n_raters"],
        "reliability_rows": rows,
        "heatmap": report_charts.kappa_heatmap(entry),
        "win_chart": report_charts.win_rate_chart(entry["results"], systems),
        "bias_chart": report_charts.position_bias_chart(entry["position_bias"]),
        "judges": judges,
        "pairs": pairs,
    }


def report_context(
    *, study: Study, request: HttpRequest, params: ReportParams, printable: bool = False
) -> dict[str, Any]:
    snapshot = report_request(study=study, params=params, retry_failed=request.GET.get("retry") == "1")
    shown = snapshot if snapshot.status == JobStatus.SUCCEEDED else report_latest_computed(study=study, params=params)
    document = report_document(study=study, snapshot=shown) if shown else None
    report = document["report"] if document else None
    baseline = request.GET.get("baseline") or None
    criteria_meta = {c["key"]: c for c in (document or {}).get("criteria") or []}
    query = filter_query(request.GET)
    # The stored report is jsonb, which does not keep key order: the criteria list carries the study's order.
    order = [key for key in criteria_meta if key in (report or {}).get("criteria", {})]
    return {
        "study": study,
        "snapshot": snapshot,
        "computing": snapshot.status in (JobStatus.QUEUED, JobStatus.RUNNING),
        "failed": snapshot.status == JobStatus.FAILED,
        "stale": shown is not None and shown.pk != snapshot.pk,
        "shown": shown,
        "document": document,
        "report": report,
        "criteria": [
            _criterion_context(key, report["criteria"][key], criteria_meta.get(key), report["systems"]) for key in order
        ],
        "shares": shares_table(report, baseline=baseline, criteria_order=order) if report else [],
        "baseline": baseline,
        "systems": (report or {}).get("systems", []),
        "filters": params.filters,
        "criterion_choices": study_criteria(study),
        "rater_choices": report_rater_choices(study=study),
        "query": query,
        "status_url": reverse("api-study-report", args=[study.slug]) + (f"?{query}" if query else ""),
        "printable": printable,
        "position_bias_all": report_charts.position_bias_chart((report or {}).get("position_bias_all_criteria", {})),
    }


def _params_or_redirect(request: HttpRequest, study: Study) -> ReportParams | HttpResponse:
    try:
        return params_from_query(request.GET)
    except ValidationError as exc:
        messages.error(request, "; ".join(f"{field}: {' '.join(errs)}" for field, errs in exc.message_dict.items()))
        return redirect("study-report", slug=study.slug)


@login_required
def study_report(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    params = _params_or_redirect(request, study)
    if isinstance(params, HttpResponse):
        return params
    return render(request, "reports/report.html", report_context(study=study, request=request, params=params))


@login_required
def study_report_print(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    params = _params_or_redirect(request, study)
    if isinstance(params, HttpResponse):
        return params
    context = report_context(study=study, request=request, params=params, printable=True)
    return render(request, "reports/print.html", context)


@login_required
def study_report_download(request: HttpRequest, slug: str, file_format: str) -> HttpResponse:
    study = study_for(request, slug)
    if file_format not in ("csv", "json"):
        raise Http404("No such format.")
    params = _params_or_redirect(request, study)
    if isinstance(params, HttpResponse):
        return params
    snapshot = report_request(study=study, params=params)
    if snapshot.status != JobStatus.SUCCEEDED:
        messages.info(request, "The report is still being computed; download it when it is ready.")
        url = reverse("study-report", args=[slug])
        query = filter_query(request.GET)
        return redirect(f"{url}?{query}" if query else url)
    document = report_document(study=study, snapshot=snapshot)
    stamp = snapshot.computed_at.strftime("%Y%m%d-%H%M%S")
    if file_format == "csv":
        response = HttpResponse(report_csv(document["report"]), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(document, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-report-{stamp}.{file_format}"'
    return response


urlpatterns = [
    path("studies/<slug:slug>/reports", study_report, name="study-report"),
    path("studies/<slug:slug>/reports/print", study_report_print, name="study-report-print"),
    path(
        "studies/<slug:slug>/reports/report.<str:file_format>",
        study_report_download,
        name="study-report-download",
    ),
]
