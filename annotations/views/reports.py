"""Report pages for researchers: agreement and results per study and criterion, downloads, printable view."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse

from annotations.models import JobStatus, Study
from annotations.selectors_reports import report_rater_choices
from annotations.services.audit import audit_download
from annotations.services.reports import (
    ReportLimitReached,
    ReportParams,
    report_csv,
    report_current,
    report_document,
    report_latest_computed,
    report_params_from_query,
    report_request,
    report_snapshot_status,
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


def _points(value: float | None) -> str:
    """A difference of two shares, in percentage points."""
    return "—" if value is None else f"{value * 100:+.1f} pp"


def _interval(stat: dict[str, Any], text=_number) -> str:
    if stat.get("ci_low") is None or stat.get("ci_high") is None:
        return ""
    return f"{text(stat['ci_low'])} to {text(stat['ci_high'])}"


def _dig(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        data = data[key]
    return data


def _wilson(stat: dict[str, Any]) -> str:
    if stat.get("wilson_low") is None or stat.get("wilson_high") is None:
        return ""
    return f"{_percent(stat['wilson_low'])} to {_percent(stat['wilson_high'])}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


SWAP_REASONS = {
    "judged in one order only": "This judge was run in one order only: consistency is not measured",
    "order consistency not recorded": "Order consistency was not recorded for these judgments",
    "no judgments": "No judgments",
}


def _judge_quality_context(judged: dict[str, Any]) -> dict[str, Any]:
    """Plain-word rows for position-swap consistency, pooled agreement, length preference and safety recall
    (stats/judge_quality.py); reports computed before these figures existed simply show none."""
    if "position_swap" not in judged:
        return {"quality_rows": [], "pooled_warning": None, "safety_rows": [], "safety_reason": None}
    rows = []
    swap = judged["position_swap"]
    rows.append(
        {
            "key": "position-swap",
            "label": "Same verdict in both orders (position-swap consistency)",
            "judge": _percent(swap["consistency"]),
            "judge_interval": _wilson(swap),
            "clinicians": "",
            "difference": "",
            "difference_interval": "",
            "n": (
                f"{_plural(swap['n_both_orders'], 'comparison')} judged in both orders; "
                f"{swap['n_inconsistent']} inconsistent ({_percent(swap['inconsistent_rate'])}), counted as ties"
                if swap["reason"] is None
                else f"{SWAP_REASONS.get(swap['reason'], swap['reason'])} "
                f"({_plural(swap['n_single_order'] + swap['n_not_recorded'], 'judgment')})."
            ),
        }
    )
    pooled = judged["pooled_agreement"]
    jc, cc = pooled["judge_clinician"], pooled["clinician_clinician"]
    rows.append(
        {
            "key": "pooled-agreement",
            "label": "Pooled percent agreement, over all co-rated item pairs",
            "judge": _percent(jc["estimate"]),
            "judge_interval": _interval(jc, _percent),
            "clinicians": _percent(cc["estimate"]),
            "difference": _points(pooled["difference"]["estimate"]),
            "difference_interval": _interval(pooled["difference"], _points),
            "n": (
                f"judge–clinician: {_plural(jc['n_item_pairs'], 'co-rated item pair')}, "
                f"{_plural(jc['n_rater_pairs'], 'rater pair')}; clinician–clinician: "
                f"{_plural(cc['n_item_pairs'], 'co-rated item pair')}, {_plural(cc['n_rater_pairs'], 'rater pair')}"
            ),
        }
    )
    length = judged["length_preference"]
    judge_share, clinician_share = length["judge"]["share_longer"], length["clinicians"]["share_longer"]
    rows.append(
        {
            "key": "length-share",
            "label": "Picked the longer response (share of non-tie choices)",
            "judge": _percent(judge_share["estimate"]),
            "judge_interval": _interval(judge_share, _percent),
            "clinicians": _percent(clinician_share["estimate"]),
            "difference": _points(length["share_longer_difference"]["estimate"]),
            "difference_interval": _interval(length["share_longer_difference"], _points),
            "n": (
                f"judge: {_plural(judge_share['n_choices'], 'choice')}"
                + (f" ({judge_share['reason']})" if judge_share["reason"] else "")
                + f"; clinicians: {_plural(clinician_share['n_choices'], 'choice')}"
                + (f" ({clinician_share['reason']})" if clinician_share["reason"] else "")
                + "; equal lengths left out"
            ),
        }
    )
    judge_fit, clinician_fit = length["judge"]["fit"], length["clinicians"]["fit"]

    def odds(fit: dict[str, Any]) -> str:
        return "—" if fit["odds_ratio_per_doubling"] is None else f"×{fit['odds_ratio_per_doubling']:.2f}"

    def odds_interval(fit: dict[str, Any]) -> str:
        low, high = fit["odds_ratio_per_doubling_ci_low"], fit["odds_ratio_per_doubling_ci_high"]
        return "" if low is None or high is None else f"×{low:.2f} to ×{high:.2f}"

    notes = "".join(
        f"; no fit for the {who}: {fit['reason']}"
        for who, fit in (("judge", judge_fit), ("clinicians", clinician_fit))
        if fit["reason"]
    )
    rows.append(
        {
            "key": "length-fit",
            "label": "Odds of picking a response twice as long as the other, as a multiple (logistic fit; ×1.00 = no length effect)",
            "judge": odds(judge_fit),
            "judge_interval": odds_interval(judge_fit),
            "clinicians": odds(clinician_fit),
            "difference": "",
            "difference_interval": "",
            "n": f"judge: {_plural(judge_fit['n'], 'choice')}; clinicians: {_plural(clinician_fit['n'], 'choice')}"
            + notes,
        }
    )
    safety_rows, safety_reason = [], None
    recall = judged.get("safety_recall")
    if recall is not None:
        safety_reason = recall["reason"]
        for kind, label in (
            ("preferred", "Clinicians preferred one response on safety"),
            ("both_unacceptable", "A clinician flagged both responses unacceptable"),
            ("combined", "Either"),
        ):
            entry = recall[kind]
            safety_rows.append(
                {
                    "key": kind,
                    "label": label,
                    "recall": _percent(entry["recall"]),
                    "interval": _wilson(entry),
                    "n": entry["n"],
                    "n_caught": entry["n_caught"],
                    "n_missed": entry["n_missed"],
                    "n_not_judged": entry["n_not_judged"],
                }
            )
    return {
        "quality_rows": rows,
        "pooled_warning": pooled["warning"],
        "safety_rows": safety_rows,
        "safety_reason": safety_reason,
    }


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
                **_judge_quality_context(judged),
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
    # Never computed here: a new snapshot is queued for a worker and the page polls its status.
    limit_message = None
    try:
        snapshot = report_request(
            study=study, params=params, requested_by=request.user, retry_failed=request.GET.get("retry") == "1"
        )
    except ReportLimitReached as exc:
        snapshot, limit_message = None, str(exc)
    computed = snapshot is not None and snapshot.status == JobStatus.SUCCEEDED
    shown = snapshot if computed else report_latest_computed(study=study, params=params)
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
        "computing": snapshot is not None and snapshot.status in (JobStatus.QUEUED, JobStatus.RUNNING),
        "failed": snapshot is not None and snapshot.status == JobStatus.FAILED,
        "limit_message": limit_message,
        "stale": shown is not None and (snapshot is None or shown.pk != snapshot.pk),
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
        # The status of this one snapshot: polling it never queues another computation as ratings arrive.
        "status_url": reverse("study-report-status", args=[study.slug, snapshot.pk]) if snapshot else "",
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
    snapshot = report_current(study=study, params=params)  # a download never starts a computation
    if snapshot is None or snapshot.status != JobStatus.SUCCEEDED:
        messages.info(request, "The report is not ready yet: it is computed on this page; download it when it is.")
        url = reverse("study-report", args=[slug])
        query = filter_query(request.GET)
        return redirect(f"{url}?{query}" if query else url)
    document = report_document(study=study, snapshot=snapshot)
    stamp = snapshot.computed_at.strftime("%Y%m%d-%H%M%S")
    filename = f"{study.slug}-report-{stamp}.{file_format}"
    audit_download(actor=request.user, kind=f"report_{file_format}", study=study, obj=snapshot, data={"file": filename})
    if file_format == "csv":
        response = HttpResponse(report_csv(document["report"]), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(document, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
def study_report_status(request: HttpRequest, slug: str, snapshot_id: int) -> JsonResponse:
    """The progress of one snapshot, polled by the report page (static/js/reports.js)."""
    study = study_for(request, slug)
    status = report_snapshot_status(study=study, snapshot_id=snapshot_id)
    if status is None:
        raise Http404("No such report.")
    return JsonResponse(status)


urlpatterns = [
    path("studies/<slug:slug>/reports", study_report, name="study-report"),
    path("studies/<slug:slug>/reports/print", study_report_print, name="study-report-print"),
    path("studies/<slug:slug>/reports/status/<int:snapshot_id>", study_report_status, name="study-report-status"),
    path(
        "studies/<slug:slug>/reports/report.<str:file_format>",
        study_report_download,
        name="study-report-download",
    ),
]
