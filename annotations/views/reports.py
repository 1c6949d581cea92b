"""Report pages for researchers: agreement and results per study and criterion, downloads, printable view."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse

from annotations.models import JobStatus, ReportSnapshot, Study
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
from annotations.views.report_pdf import report_pdf

FILTER_FIELDS = ("criterion", "rater", "kind", "from", "to", "min_gold_accuracy", "resamples", "seed")

# (keys into the reliability dict, label, the count's key, what the count counts, which reading scale)
RELIABILITY_ROWS = [
    (("alpha", "nominal"), "Krippendorff's α, nominal (A / tie / B)", "n_pairable_values", "ratings", "alpha"),
    (("alpha", "ordinal"), "Krippendorff's α, ordinal", "n_pairable_values", "ratings", "alpha"),
    (("alpha", "interval"), "Krippendorff's α, interval", "n_pairable_values", "ratings", "alpha"),
    (("fleiss_kappa",), "Fleiss' κ", "n_items", "comparisons", "kappa"),
    (("gwet_ac1",), "Gwet's AC1", "n_items", "comparisons", "kappa"),
    (("gwet_ac2_ordinal",), "Gwet's AC2, ordinal weights", "n_items", "comparisons", "kappa"),
    (("mean_pairwise", "kappa"), "Mean pairwise Cohen's κ", "n_rater_pairs", "clinician pairs", "kappa"),
    (
        ("mean_pairwise", "kappa_quadratic"),
        "Mean pairwise quadratic-weighted κ",
        "n_rater_pairs",
        "clinician pairs",
        "kappa",
    ),
    (("percent_agreement",), "Percent agreement", "n_pairs", "rating pairs", None),
    (("percent_agreement_without_ties",), "Percent agreement, ties left out", "n_pairs", "rating pairs", None),
]
N_LABELS = {
    "ratings": "clinician ratings of comparisons rated by two or more clinicians",
    "comparisons": "comparisons rated by two or more clinicians",
    "clinician pairs": "pairs of clinicians sharing at least 10 comparisons",
    "rating pairs": "pairs of clinicians' ratings of the same comparison",
}
KIND_LABELS = {
    "clinician": ("platform clinician", "platform clinicians"),
    "external": ("imported rater", "imported raters"),
    "judge": ("AI judge", "AI judges"),
}


# The methods section of the page, the printable report and the PDF: one text for all three.
METHODS = [
    (
        "Data",
        "Every submitted rating of the study's comparisons (platform clinicians and imported external raters) and "
        "every AI judgment, one value per criterion, stored in canonical order (negative favours the comparison's "
        "first response, positive its second, 0 a tie). Calibration practice and excluded comparisons never count. "
        "Platform clinicians and imported raters together are the clinicians; AI judges are compared with them, "
        "never pooled with them.",
    ),
    (
        "Intervals",
        "Every interval is a 95% percentile interval over prompt-level cluster bootstrap resamples: prompts are "
        "drawn with replacement and every comparison of a drawn prompt comes along, so comparisons that share a "
        "prompt are not treated as independent (Efron & Tibshirani 1993; Field & Welsh 2007). Differences are "
        "taken on the same resamples as both terms. Shares of counts (position bias, safety recall) use Wilson "
        "score intervals (Wilson 1927).",
    ),
    (
        "Krippendorff's α",
        "Computed from the coincidence matrix of all pairable clinician values (Krippendorff 2004, 2011), "
        "nominal on the choice A / tie / B (the protocol's unit), and ordinal and interval on the scale. Read "
        "with Krippendorff's cut-offs: 0.800 or more reliable, 0.667 to 0.800 for tentative conclusions only.",
    ),
    (
        "Cohen's κ, Fleiss' κ, Gwet's AC1 and AC2",
        "Cohen's κ (Cohen 1960; quadratic weights, Cohen 1968) for every pair of raters, averaged over pairs "
        "sharing at least 10 comparisons; Fleiss' κ (Fleiss 1971) over the comparisons with the most common number "
        "of raters; Gwet's AC1 and ordinally weighted AC2 (Gwet 2008, 2014). Readings use the Landis & Koch (1977) "
        "benchmarks; κ depends on how often each answer occurs (Feinstein & Cicchetti 1990), AC1 less so.",
    ),
    (
        "Percent agreement",
        "The share of pairs of clinicians' ratings of the same comparison that give the same choice, with ties, "
        "and with ties left out.",
    ),
    (
        "AI judges against clinicians",
        "Each judge's κ and percent agreement with each clinician, averaged, against the clinicians' mean with each "
        "other; pooled percent agreement over all co-rated comparison pairs; the alternative annotator test "
        "(Calderon, Reichart & Dror 2025) at a false discovery level of 0.05; position-swap consistency when the "
        "judge saw both orders; length preference by logistic regression on the log length ratio; on safety, "
        "recall of the clinicians' safety concerns.",
    ),
    (
        "Win rates and head-to-heads",
        "A system's win rate against one opponent is its wins over all answers, ties counted as not won; its "
        "average win rate is the mean over its opponents (the research's headline figure). Shares are per rating. "
        "Sign tests (two-sided exact binomial test on wins against losses, ties left out; Dixon & Mood 1946) are "
        "given per rating and per comparison (each comparison's majority), since ratings of one comparison are "
        "not independent. p-values below 0.001 are written < 0.001.",
    ),
    (
        "Position bias",
        "Per rater, the share of decisive ratings that favour the response shown on the left, with a binomial test "
        "against 50%. It needs the order each rater saw, which the platform records; imported ratings carry none.",
    ),
]
REFERENCES = [
    "Calderon N, Reichart R, Dror R (2025). The alternative annotator test for LLM-as-a-judge. ACL 2025.",
    "Cohen J (1960). A coefficient of agreement for nominal scales. Educ Psychol Meas 20:37–46.",
    "Cohen J (1968). Weighted kappa. Psychol Bull 70:213–220.",
    "Dixon WJ, Mood AM (1946). The statistical sign test. J Am Stat Assoc 41:557–566.",
    "Efron B, Tibshirani RJ (1993). An Introduction to the Bootstrap. Chapman & Hall.",
    "Feinstein AR, Cicchetti DV (1990). High agreement but low kappa. J Clin Epidemiol 43:543–549.",
    "Field CA, Welsh AH (2007). Bootstrapping clustered data. J R Stat Soc B 69:369–390.",
    "Fleiss JL (1971). Measuring nominal scale agreement among many raters. Psychol Bull 76:378–382.",
    "Gwet KL (2008). Computing inter-rater reliability and its variance in the presence of high agreement. "
    "Br J Math Stat Psychol 61:29–48.",
    "Gwet KL (2014). Handbook of Inter-Rater Reliability, 4th ed. Advanced Analytics.",
    "Krippendorff K (2004). Content Analysis: An Introduction to Its Methodology, 2nd ed. Sage (pp. 241–243).",
    "Krippendorff K (2011). Computing Krippendorff's alpha-reliability. University of Pennsylvania.",
    "Landis JR, Koch GG (1977). The measurement of observer agreement for categorical data. Biometrics 33:159–174.",
    "Wilson EB (1927). Probable inference, the law of succession, and statistical inference. J Am Stat Assoc "
    "22:209–212.",
]


def p_value_text(value: float | None) -> str:
    """A p-value as a paper writes it: "< 0.001" below a thousandth, else three decimals."""
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def alpha_reading(value: float | None) -> str:
    """Krippendorff (2004, p. 241): α ≥ 0.800 to rely on data, 0.667 ≤ α < 0.800 for tentative conclusions."""
    if value is None:
        return "not computed"
    if value >= report_charts.ALPHA_RELIABLE:
        return "reliable (α ≥ 0.800)"
    if value >= report_charts.ALPHA_TENTATIVE:
        return "tentative conclusions only (0.667 to 0.800)"
    return "too low for conclusions (below 0.667)"


def kappa_reading(value: float | None) -> str:
    """Landis & Koch (1977) benchmarks, used here for κ and AC1."""
    if value is None:
        return "not computed"
    for upper, words in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if value < upper or (upper > 0 and value <= upper):
            return f"{words} agreement"
    return "almost perfect agreement"


def reading(scale: str | None, value: float | None) -> str:
    if scale == "alpha":
        return alpha_reading(value)
    if scale == "kappa":
        return kappa_reading(value)
    return ""


def kind_count_text(counts: dict[str, int]) -> str:
    """ "2 platform clinicians, 4 imported raters, 1 AI judge": the three kinds, always all three."""
    return ", ".join(
        f"{counts.get(kind, 0)} {KIND_LABELS[kind][0 if counts.get(kind, 0) == 1 else 1]}" for kind in KIND_LABELS
    )


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
    key: str,
    entry: dict[str, Any],
    meta: dict[str, Any] | None,
    systems: list[str],
    items_url: str = "",
    rater_kinds: dict[str, str] | None = None,
) -> dict[str, Any]:
    reliability = entry["reliability"]
    criterion_items = f"{items_url}?{urlencode([('criterion', key)])}" if items_url else ""
    rows = []
    for keys, label, count_key, counted, scale in RELIABILITY_ROWS:
        stat = _dig(reliability, keys)
        text = _percent if keys[0].startswith("percent") else _number
        n = stat.get(count_key, reliability.get(count_key))
        rows.append(
            {
                "label": label,
                "estimate": text(stat["estimate"]),
                "raw": stat["estimate"],
                "interval": _interval(stat, text),
                "n": n,
                "n_label": N_LABELS[counted],
                "n_short": counted,
                "reading": reading(scale, stat["estimate"]),
            }
        )
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
                "kind": "judge",
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
    pair_groups = []
    groups = {"clinicians": entry["results"]["clinicians"], **dict(sorted(entry["results"]["judges"].items()))}
    for group, results in groups.items():
        pairs = []
        for pair in sorted(results["pairs"], key=lambda p: (p["system"], p["opponent"])):
            per_rating, per_comparison = pair["per_rating"], pair["per_comparison"]
            pairs.append(
                {
                    "system": pair["system"],
                    "opponent": pair["opponent"],
                    "url": f"{criterion_items}&{urlencode([('system', pair['system']), ('system', pair['opponent'])])}"
                    if criterion_items
                    else "",
                    "n": per_rating["n"],
                    "n_comparisons": per_comparison.get("n"),
                    "shares": per_rating["shares_percent"],
                    "win_rate": _percent(per_rating["win_rate"]["estimate"]),
                    "win_rate_interval": _interval(per_rating["win_rate"], _percent),
                    "p_rating": p_value_text(per_rating["sign_test_p_value"]),
                    "p_comparison": p_value_text(per_comparison["sign_test_p_value"]),
                }
            )
        if pairs:
            label = "Clinicians (platform and imported)" if group == "clinicians" else f"AI judge {group}"
            pair_groups.append({"group": group, "label": label, "pairs": pairs})
    kinds = rater_kinds or {}
    heatmap = report_charts.kappa_heatmap(entry, criterion_items)
    win_chart = report_charts.win_rate_chart(entry["results"], systems, criterion_items)
    bias_chart = report_charts.position_bias_chart(entry["position_bias"])
    clinician_labels = reliability["cohen_kappa_matrix"]["raters"]
    return {
        "key": key,
        "title": meta["title"] if meta else key,
        "version": meta["version"] if meta else None,
        "n_ratings": entry["n_ratings"],
        "n_items": entry["n_items"],
        "n_prompts": entry["n_prompts"],
        "n_clinician_ratings": reliability["n_ratings"],
        "n_clinicians": reliability["n_raters"],
        "clinician_kinds": " and ".join(
            f"{n} {KIND_LABELS[kind][0 if n == 1 else 1]}"
            for kind in ("clinician", "external")
            for n in [sum(1 for label in clinician_labels if kinds.get(label, "clinician") == kind)]
        ),
        # Who is who in the heatmap and charts: the three kinds, each named.
        "kind_names": [
            (KIND_LABELS[kind][1][0].upper() + KIND_LABELS[kind][1][1:], names)
            for kind in KIND_LABELS
            for names in [
                [label for label in clinician_labels if kinds.get(label, "clinician") == kind]
                if kind != "judge"
                else sorted(entry["judges"])
            ]
            if names
        ],
        "reliability_rows": rows,
        "alpha": reliability["alpha"]["nominal"],
        "disputed_url": f"{criterion_items}&disagreement=1&sort=disagreement" if criterion_items else "",
        "items_url": criterion_items,
        "heatmap": heatmap,
        "heatmap_reason": None
        if heatmap["n_raters"] >= 2
        else "Needs two or more raters who rated the same comparisons on this criterion.",
        "heatmap_links": [cell for cell in heatmap["cells"] if cell["url"]],
        "win_chart": win_chart,
        "win_reason": None
        if win_chart["rows"]
        else "No win rates: they need clinician or judge ratings of comparisons between two systems.",
        "bias_chart": bias_chart,
        "bias_reason": _bias_reason(bias_chart),
        "judges": judges,
        "pair_groups": pair_groups,
    }


def _bias_reason(chart: dict[str, Any]) -> str | None:
    """Why a position-bias chart has nothing to draw: the side each response was shown on is known only for
    ratings made here (the platform records it) and for judges run here; imported ratings carry none."""
    if any(row["estimate"] is not None for row in chart["rows"]):
        return None
    unknown = sum(row.get("n_unknown_side") or 0 for row in chart["rows"])
    return (
        "No position bias to show: it needs decisive ratings from raters who saw the two responses side by side "
        "with the order recorded (platform clinicians, judges run here)"
        + (f"; {_plural(unknown, 'rating')} here were imported without the side shown." if unknown else ".")
    )


def _best_judge(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The judge whose pooled percent agreement with the clinicians is highest, beside the clinicians' own
    pooled agreement with each other and the difference (same resamples). Reports computed before pooled
    agreement existed fall back to the mean pairwise percent agreement."""
    best = None
    for label, judged in entry["judges"].items():
        if "pooled_agreement" in judged:
            pooled = judged["pooled_agreement"]
            judge, clinicians, difference = (
                pooled["judge_clinician"],
                pooled["clinician_clinician"],
                pooled["difference"],
            )
            basis = "pooled over co-rated comparison pairs"
        else:
            against = judged["against_clinicians"]["percent_agreement"]
            judge, clinicians, difference = (
                against["judge_clinician_mean"],
                against["clinician_clinician_mean"],
                against["difference"],
            )
            basis = "mean over rater pairs"
        if judge["estimate"] is None:
            continue
        if best is None or judge["estimate"] > best["raw"]:
            best = {
                "label": label,
                "raw": judge["estimate"],
                "judge": _percent(judge["estimate"]),
                "judge_interval": _interval(judge, _percent),
                "clinicians": _percent(clinicians["estimate"]),
                "clinicians_interval": _interval(clinicians, _percent),
                "difference": _points(difference["estimate"]),
                "difference_interval": _interval(difference, _points),
                "basis": basis,
                "n_item_pairs": judge.get("n_item_pairs"),
            }
    return best


def _leading_system(entry: dict[str, Any], items_url: str) -> dict[str, Any] | None:
    rates = entry["results"]["clinicians"]["average_win_rate"]
    present = [(system, rate) for system, rate in rates.items() if rate["estimate"] is not None]
    if not present:
        return None
    system, rate = max(present, key=lambda item: (item[1]["estimate"], item[0]))
    return {
        "system": system,
        "win_rate": _percent(rate["estimate"]),
        "interval": _interval(rate, _percent),
        "n_opponents": rate.get("n_opponents"),
        "url": f"{items_url}&{urlencode([('system', system)])}" if items_url else "",
    }


def summary_rows(criteria: list[dict[str, Any]], report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per criterion, in the study's order: α with its interval and reading, clinicians' percent
    agreement, the best judge's agreement beside the clinicians', and the leading system's win rate."""
    rows = []
    for c in criteria:
        entry = report["criteria"][c["key"]]
        reliability = entry["reliability"]
        alpha, agreement = reliability["alpha"]["nominal"], reliability["percent_agreement"]
        rows.append(
            {
                "key": c["key"],
                "title": c["title"],
                "alpha": _number(alpha["estimate"]),
                "alpha_raw": alpha,
                "alpha_interval": _interval(alpha),
                "alpha_reading": alpha_reading(alpha["estimate"]),
                "alpha_reason": None
                if alpha["estimate"] is not None
                else "needs two or more clinicians on the same comparisons, with some variation",
                "n_items": reliability["n_items"],
                "n_clinicians": reliability["n_raters"],
                "agreement": _percent(agreement["estimate"]),
                "agreement_interval": _interval(agreement, _percent),
                "n_pairs": agreement.get("n_pairs"),
                "judge": _best_judge(entry),
                "leader": _leading_system(entry, c["items_url"]),
                "disputed_url": c["disputed_url"],
            }
        )
    return rows


def summary_charts(rows: list[dict[str, Any]], report: dict[str, Any], criteria: list[dict[str, Any]]) -> dict:
    """The forest plot of α and the clinicians' win-rate chart, as matplotlib figures (for SVG and PDF)."""
    forest_rows, links = [], {}
    for row in rows:
        alpha = row["alpha_raw"]
        forest_rows.append(
            {
                "title": row["title"],
                "estimate": alpha["estimate"],
                "ci_low": alpha["ci_low"],
                "ci_high": alpha["ci_high"],
                "url": row["disputed_url"],
                "value_text": f"{row['alpha']} ({row['alpha_interval']})" if row["alpha_interval"] else row["alpha"],
                "empty_reason": "not computed: " + (row["alpha_reason"] or ""),
            }
        )
        if row["disputed_url"]:
            links[row["disputed_url"]] = f"{row['title']}: α {row['alpha']}, open the most disputed comparisons"
    systems = report.get("systems", [])
    win_rows = []
    for c in criteria:
        rates = report["criteria"][c["key"]]["results"]["clinicians"]["average_win_rate"]
        per_system = {}
        for system, rate in rates.items():
            url = f"{c['items_url']}&{urlencode([('system', system)])}" if c["items_url"] else ""
            per_system[system] = {**rate, "url": url}
            if url and rate["estimate"] is not None:
                links[url] = f"{c['title']}: {system} wins {_percent(rate['estimate'])}, open its comparisons"
        win_rows.append({"title": c["title"], "systems": per_system})
    return {
        "forest": report_charts.forest_figure(forest_rows),
        "win": report_charts.win_rate_figure(win_rows, systems),
        "links": links,
        "win_rows": win_rows,
        "has_win_rates": any(v["estimate"] is not None for r in win_rows for v in r["systems"].values()),
    }


def kind_counts(document: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Raters in the report per kind (platform clinicians, imported raters, AI judges), with their ratings where
    the snapshot recorded them (`counts_by_kind`, added with result version 2)."""
    kinds = document.get("rater_kinds") or {}
    raters: dict[str, list[str]] = {kind: [] for kind in KIND_LABELS}
    for rater in report.get("raters", []):
        kind = kinds.get(rater["label"]) or ("judge" if rater["is_judge"] else "clinician")
        raters.setdefault(kind, []).append(rater["label"])
    by_kind = document.get("counts_by_kind") or {}
    return {
        "raters": {kind: len(labels) for kind, labels in raters.items()},
        "labels": raters,
        "ratings": {kind: (by_kind.get(kind) or {}).get("ratings") for kind in KIND_LABELS},
        "text": kind_count_text({kind: len(labels) for kind, labels in raters.items()}),
        "rows": [
            {
                "kind": kind,
                "label": KIND_LABELS[kind][1],
                "raters": len(raters[kind]),
                "ratings": (by_kind.get(kind) or {}).get("ratings"),
                "comparisons": (by_kind.get(kind) or {}).get("comparisons"),
                "names": raters[kind],
            }
            for kind in KIND_LABELS
        ],
    }


def adjudication_text(adjudication: Any) -> str:
    """The adjudicated-items count in words, whatever shape the snapshot recorded it in (a number, or a dict
    with a count); empty when the report has none."""
    if adjudication is None:
        return ""
    count = adjudication
    if isinstance(adjudication, dict):
        count = next(
            (adjudication[k] for k in ("n_items", "n_adjudicated", "adjudicated", "n", "count") if k in adjudication),
            None,
        )
    if not isinstance(count, int):
        return ""
    return f"{_plural(count, 'disputed comparison')} resolved by an adjudicator"


def filters_text(filters: dict[str, Any] | None, titles: dict[str, str]) -> str:
    """The report's filters in words, criteria by title: "criteria Empathy, Safety; from 2026-01-01", or "none"."""
    f = filters or {}
    parts = []
    if f.get("criteria"):
        parts.append("criteria " + ", ".join(titles.get(key, key) for key in f["criteria"]))
    if f.get("raters"):
        parts.append("raters " + ", ".join(f["raters"]))
    if f.get("rater_kinds"):
        parts.append("only " + " and ".join(KIND_LABELS[k][1] for k in f["rater_kinds"] if k in KIND_LABELS))
    if f.get("date_from"):
        parts.append(f"rated from {f['date_from']}")
    if f.get("date_to"):
        parts.append(f"rated until {f['date_to']}")
    if f.get("min_gold_accuracy") is not None:
        parts.append(f"clinicians with gold accuracy below {f['min_gold_accuracy']} left out")
    return "; ".join(parts) or "none"


def report_document_context(
    *, study: Study, shown: ReportSnapshot | None, baseline: str | None = None, charts: bool = True
) -> dict[str, Any]:
    """Everything the page, the printable report and the PDF show of one computed snapshot (None: nothing yet).
    `charts=False` leaves out the SVG markup (the PDF draws the same matplotlib figures itself)."""
    document = report_document(study=study, snapshot=shown) if shown else None
    report = document["report"] if document else None
    criteria_meta = {c["key"]: c for c in (document or {}).get("criteria") or []}
    # The stored report is jsonb, which does not keep key order: the criteria list carries the study's order.
    order = [key for key in criteria_meta if key in (report or {}).get("criteria", {})]
    items_url = reverse("study-items", args=[study.slug])
    rater_kinds = (document or {}).get("rater_kinds") or {}
    criteria = [
        _criterion_context(
            key, report["criteria"][key], criteria_meta.get(key), report["systems"], items_url, rater_kinds
        )
        for key in order
    ]
    summary = summary_rows(criteria, report) if report else []
    # The page shows the charts as SVG (cached per snapshot: drawing them takes a few hundred milliseconds);
    # the PDF draws the matplotlib figures themselves.
    figures = summary_charts(summary, report, criteria) if report and summary and not charts else None
    forest_svg, win_svg = _summary_svgs(shown, summary, report, criteria) if report and summary and charts else ("", "")
    position_bias_all = report_charts.position_bias_chart((report or {}).get("position_bias_all_criteria", {}))
    return {
        "study": study,
        "shown": shown,
        "document": document,
        "report": report,
        "criteria": criteria,
        "summary": summary,
        "figures": figures,
        "forest_svg": forest_svg,
        "win_svg": win_svg,
        "kinds": kind_counts(document, report) if report else None,
        "adjudication": adjudication_text((document or {}).get("adjudication")),
        "methods": METHODS,
        "references": REFERENCES,
        "position_bias_all": position_bias_all,
        "position_bias_reason": _bias_reason(position_bias_all) if report else None,
        "filters_text": filters_text((document or {}).get("filters"), {c.key: c.title for c in study_criteria(study)}),
        "shares": [
            {**row, "title": criteria_meta.get(row["criterion"], {}).get("title", row["criterion"])}
            for row in (shares_table(report, baseline=baseline, criteria_order=order) if report else [])
        ],
        "baseline": baseline,
        "systems": (report or {}).get("systems", []),
    }


CHART_CACHE_SECONDS = 3600


def _summary_svgs(
    shown: ReportSnapshot, summary: list[dict[str, Any]], report: dict[str, Any], criteria: list[dict[str, Any]]
) -> tuple[str, str]:
    """The forest plot and win-rate chart as inline SVG, drawn once per snapshot and process-shared cache."""
    key = f"report-summary-svg:v1:{shown.pk}:{shown.fingerprint}"
    cached = cache.get(key)
    if cached is None:
        figures = summary_charts(summary, report, criteria)
        forest = report_charts.figure_svg(
            figures["forest"],
            prefix="forest",
            title="Krippendorff's α per criterion with 95% intervals",
            links=figures["links"],
        )
        win = (
            report_charts.figure_svg(
                figures["win"],
                prefix="winrates",
                title="Clinicians' average win rate per system and criterion with 95% intervals",
                links=figures["links"],
            )
            if figures["has_win_rates"]
            else ""
        )
        cached = (forest, win)
        cache.set(key, cached, CHART_CACHE_SECONDS)
    return cached


def report_pdf_for(*, study: Study, snapshot: ReportSnapshot) -> bytes:
    """The PDF of one computed snapshot: the page's summary, charts, methods and provenance (views/report_pdf.py).
    One function for the page's download, the API and the command."""
    return report_pdf(report_document_context(study=study, shown=snapshot, charts=False))


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
    return {
        **report_document_context(study=study, shown=shown, baseline=request.GET.get("baseline") or None),
        "snapshot": snapshot,
        "computing": snapshot is not None and snapshot.status in (JobStatus.QUEUED, JobStatus.RUNNING),
        "failed": snapshot is not None and snapshot.status == JobStatus.FAILED,
        "limit_message": limit_message,
        "stale": shown is not None and (snapshot is None or shown.pk != snapshot.pk),
        "filters": params.filters,
        "criterion_choices": study_criteria(study),
        "kind_choices": [(kind, labels[1]) for kind, labels in KIND_LABELS.items()],
        "rater_choices": [
            {**choice, "kind_label": KIND_LABELS.get(choice["kind"], (choice["kind"],))[0]}
            for choice in report_rater_choices(study=study)
        ],
        "query": filter_query(request.GET),
        # The status of this one snapshot: polling it never queues another computation as ratings arrive.
        "status_url": reverse("study-report-status", args=[study.slug, snapshot.pk]) if snapshot else "",
        "printable": printable,
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
    if file_format not in ("csv", "json", "pdf"):
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
    if file_format == "pdf":
        response = HttpResponse(report_pdf_for(study=study, snapshot=snapshot), content_type="application/pdf")
    elif file_format == "csv":
        response = HttpResponse(report_csv(document["report"]), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(document, indent=2), content_type="application/json")
    audit_download(actor=request.user, kind=f"report_{file_format}", study=study, obj=snapshot, data={"file": filename})
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
