"""Geometry for the report page's server-rendered SVG charts: plain dicts of coordinates for the templates.

Charts are drawn on the server so the page works under a strict CSP (no scripts needed to read it) and
prints as it looks. Positions and colours are SVG presentation attributes, never style="" attributes.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any
from urllib.parse import urlencode

LABEL_WIDTH = 190  # room for a rater or system label left of a chart
PLOT_WIDTH = 420
ROW_HEIGHT = 26
TOP = 24  # room for the axis labels
CELL = 44  # heatmap cell size
HEATMAP_LABEL = 150


def _x(value: float) -> float:
    return round(LABEL_WIDTH + value * PLOT_WIDTH, 1)


def _axis(ticks: tuple[float, ...] = (0, 0.25, 0.5, 0.75, 1.0)) -> list[dict[str, Any]]:
    return [{"x": _x(t), "label": f"{round(t * 100)}%"} for t in ticks]


def interval_rows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Horizontal bars with interval whiskers for shares in [0, 1].

    items: {"label", "estimate", "ci_low", "ci_high", "group"}; a None estimate draws no bar.
    """
    rows = []
    for index, item in enumerate(items):
        y = TOP + index * ROW_HEIGHT
        estimate, low, high = item.get("estimate"), item.get("ci_low"), item.get("ci_high")
        rows.append(
            {
                **item,
                "y": y,
                "text_y": y + ROW_HEIGHT * 0.62,
                "bar_y": y + 5,
                "bar_height": ROW_HEIGHT - 10,
                "bar_width": round(estimate * PLOT_WIDTH, 1) if estimate is not None else None,
                "mid_y": y + ROW_HEIGHT / 2,
                "whisker": None
                if low is None or high is None
                else {"x1": _x(low), "x2": _x(high), "y1": y + 7, "y2": y + ROW_HEIGHT - 7},
                "value_x": _x(1.0) + 8,
            }
        )
    return {
        "width": LABEL_WIDTH + PLOT_WIDTH + 110,
        "height": TOP + len(items) * ROW_HEIGHT + 6,
        "plot_left": LABEL_WIDTH,
        "label_x": LABEL_WIDTH - 8,
        "plot_bottom": TOP + len(items) * ROW_HEIGHT,
        "axis": _axis(),
        "half_x": _x(0.5),
        "rows": rows,
    }


def position_bias_chart(position_bias: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One dot per rater at its share of decisive ratings favouring the left response, Wilson whisker,
    against the 50% line of no bias."""
    items = [
        {
            "label": rater,
            "estimate": bias["share_left"],
            "ci_low": bias["wilson_low"],
            "ci_high": bias["wilson_high"],
            "is_judge": bias["is_judge"],
            "n": bias["n"],
            "p_value": bias["p_value"],
            "n_unknown_side": bias["n_unknown_side"],
        }
        for rater, bias in sorted(position_bias.items(), key=lambda item: (item[1]["is_judge"], item[0]))
    ]
    chart = interval_rows(items)
    for row in chart["rows"]:
        row["dot_x"] = _x(row["estimate"]) if row["estimate"] is not None else None
    return chart


def _diverging_fill(value: float | None) -> str:
    """Red (-1) through white (0) to blue (+1); grey when undefined."""
    if value is None:
        return "#eef0f4"
    value = max(-1.0, min(1.0, value))
    low, high, white = (196, 58, 49), (38, 94, 170), (255, 255, 255)
    end = high if value >= 0 else low
    share = abs(value)
    red, green, blue = (round(w + (e - w) * share) for w, e in zip(white, end, strict=True))
    return f"#{red:02x}{green:02x}{blue:02x}"


def kappa_heatmap(criterion_entry: dict[str, Any], items_url: str = "") -> dict[str, Any]:
    """Rater-by-rater Cohen's kappa: clinicians from the reliability matrix, judges against each clinician.
    Judge-against-judge cells are not computed by the report and stay empty.

    With `items_url` (the item explorer, already filtered to the criterion) every computed cell links to the
    comparisons both raters rated: `rater_label` twice, as the report names them."""
    matrix = criterion_entry["reliability"]["cohen_kappa_matrix"]
    clinicians = list(matrix["raters"])
    judges = sorted(criterion_entry["judges"])
    raters = clinicians + judges
    index = {label: i for i, label in enumerate(clinicians)}

    def cell_value(row: str, column: str) -> tuple[float | None, int | None]:
        if row in index and column in index:
            i, j = index[row], index[column]
            return matrix["kappa"][i][j], matrix["n_items"][i][j]
        if row in index and column in criterion_entry["judges"]:
            row, column = column, row
        if row in criterion_entry["judges"] and column in index:
            pair = criterion_entry["judges"][row]["with_each_clinician"].get(column)
            return (pair["kappa"], pair["n_items"]) if pair else (None, 0)
        return None, None

    cells = []
    for i, row in enumerate(raters):
        for j, column in enumerate(raters):
            value, n_items = cell_value(row, column)
            diagonal = i == j
            linked = bool(items_url) and not diagonal and value is not None and bool(n_items)
            cells.append(
                {
                    "x": HEATMAP_LABEL + j * CELL,
                    "y": HEATMAP_LABEL + i * CELL,
                    "fill": "#ffffff" if diagonal else _diverging_fill(value),
                    "text": "" if diagonal or value is None else f"{value:.2f}",
                    "text_x": HEATMAP_LABEL + j * CELL + CELL / 2,
                    "text_y": HEATMAP_LABEL + i * CELL + CELL / 2 + 4,
                    "dark": value is not None
                    and abs(value) > 0.8
                    and not diagonal,  # white text only where it contrasts
                    "title": f"{row} × {column}: "
                    + ("same rater" if diagonal else "not computed" if value is None else f"κ = {value:.3f}")
                    + (f", {n_items} comparisons rated by both" if n_items and not diagonal else ""),
                    "url": f"{items_url}&{urlencode([('rater_label', row), ('rater_label', column)])}"
                    if linked
                    else "",
                    "n_items": n_items,
                }
            )
    size = HEATMAP_LABEL + len(raters) * CELL + 10
    legend = [
        {"x": HEATMAP_LABEL + k * 30, "fill": _diverging_fill(v), "label": f"{v:g}"}
        for k, v in enumerate((-1, -0.5, 0, 0.5, 1))
    ]
    return {
        "width": max(size + 70, HEATMAP_LABEL + 5 * 30 + 20),  # rotated column labels reach past the grid
        "height": size + 50,
        "cells": cells,
        "row_labels": [
            {"label": r, "y": HEATMAP_LABEL + i * CELL + CELL / 2 + 4, "is_judge": r in judges}
            for i, r in enumerate(raters)
        ],
        "column_labels": [
            {"label": r, "x": HEATMAP_LABEL + j * CELL + CELL / 2, "is_judge": r in judges}
            for j, r in enumerate(raters)
        ],
        "label_x": HEATMAP_LABEL - 6,
        "label_y": HEATMAP_LABEL - 6,
        "legend": legend,
        "legend_y": size + 12,
        "cell": CELL,
        "n_raters": len(raters),
    }


def win_rate_chart(results: dict[str, Any], systems: list[str], items_url: str = "") -> dict[str, Any]:
    """Average win rate per system (the research's headline metric) with prompt-bootstrap intervals, for
    the clinicians and then each judge. With `items_url` each bar links to the comparisons of its system."""
    groups = {"clinicians": results["clinicians"], **dict(sorted(results["judges"].items()))}
    items = []
    for group, group_results in groups.items():
        rates = group_results["average_win_rate"]
        for system in [s for s in systems if s in rates]:
            value = rates[system]
            items.append(
                {
                    "label": system if group == "clinicians" else f"{system} · {group}",
                    "group": group,
                    "estimate": value["estimate"],
                    "ci_low": value["ci_low"],
                    "ci_high": value["ci_high"],
                    "is_judge": group != "clinicians",
                    "n": None,
                    "url": f"{items_url}&{urlencode([('system', system)])}" if items_url else "",
                }
            )
    return interval_rows(items)


# ---- matplotlib charts: the summary's forest plot and win-rate chart, as inline SVG and in the PDF -------
#
# Drawn with matplotlib's object API (Figure + the SVG or PDF canvas, never pyplot's global state), so it is
# safe in threads and needs no display. The SVG is rewritten for the page's Content-Security-Policy: every
# style="" attribute becomes SVG presentation attributes, the <style> element goes, and ids get a per-chart
# prefix so two charts on one page never share a clip path.

ALPHA_TENTATIVE, ALPHA_RELIABLE = 0.667, 0.8  # Krippendorff (2004): tentative conclusions / reliable
SYSTEM_COLOURS = ("#2456a6", "#b5451b", "#2e7d4f", "#7b3fa0", "#8a6d00", "#3d7f91", "#a03a66", "#555e6e")
SYSTEM_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
_FONT = "DejaVu Sans"


# Labels come from imported files: "$" must stay a dollar sign, never start matplotlib's math mode.
CHART_RC = {"text.parse_math": False, "font.family": _FONT, "svg.fonttype": "none"}


def _figure(width_in: float, height_in: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100)
    figure.patch.set_facecolor("white")
    return figure


def forest_figure(rows: list[dict[str, Any]]):
    import matplotlib

    with matplotlib.rc_context(CHART_RC):
        return _forest_figure(rows)


def win_rate_figure(rows: list[dict[str, Any]], systems: list[str]):
    import matplotlib

    with matplotlib.rc_context(CHART_RC):
        return _win_rate_figure(rows, systems)


def _forest_figure(rows: list[dict[str, Any]]):
    """Krippendorff's α (nominal) per criterion with its interval, against Krippendorff's 0.667 and 0.8.

    rows: {"title", "estimate", "ci_low", "ci_high", "url", "empty_reason"}; the first row is drawn on top.
    """
    n = max(len(rows), 1)
    figure = _figure(7.6, 0.9 + 0.42 * n)
    axes = figure.add_axes((0.30, 0.9 / (0.9 + 0.42 * n) * 0.62, 0.52, 0.42 * n / (0.9 + 0.42 * n)))
    values = [v for r in rows for v in (r["estimate"], r["ci_low"], r["ci_high"]) if v is not None]
    low = min([0.0, *values]) - 0.05
    axes.set_xlim(max(low, -1.0), 1.0)
    axes.set_ylim(-0.6, n - 0.4)
    for x, style in ((0.0, ":"), (ALPHA_TENTATIVE, "--"), (ALPHA_RELIABLE, "--")):
        axes.axvline(x, color="#8a4f00" if x else "#9aa1ad", linestyle=style, linewidth=1)
    for index, row in enumerate(rows):
        y = n - 1 - index
        if row["estimate"] is None:
            axes.text(0.02, y, row.get("empty_reason") or "not computed", va="center", fontsize=8, color="#5b6372")
            continue
        if row["ci_low"] is not None and row["ci_high"] is not None:
            axes.plot([row["ci_low"], row["ci_high"]], [y, y], color="#1d2433", linewidth=1.6)
        (dot,) = axes.plot([row["estimate"]], [y], marker="s", markersize=7, color="#2456a6", linestyle="none")
        if row.get("url"):
            dot.set_url(row["url"])
    axes.set_yticks([n - 1 - i for i in range(len(rows))], [r["title"] for r in rows], fontsize=9)
    axes.tick_params(axis="x", labelsize=8)
    axes.set_xlabel("Krippendorff's α, nominal (A / tie / B), with 95% prompt-bootstrap interval", fontsize=8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for index, row in enumerate(rows):
        text = row.get("value_text") or ""
        axes.annotate(text, xy=(1.0, n - 1 - index), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8)
    axes.annotate(
        "dashed lines: 0.667 (tentative) and 0.8 (reliable), Krippendorff 2004",
        xy=(0, 1),
        xycoords="axes fraction",
        xytext=(0, 6),
        textcoords="offset points",
        fontsize=7.5,
        color="#5b6372",
    )
    return figure


def _win_rate_figure(rows: list[dict[str, Any]], systems: list[str]):
    """Clinicians' average win rate of every system per criterion, with intervals, against the 50% line.

    rows: {"title", "systems": {system: {"estimate", "ci_low", "ci_high", "url"}}}; the first row on top."""
    n = max(len(rows), 1)
    height = 1.2 + 0.55 * n
    figure = _figure(7.6, height)
    axes = figure.add_axes((0.30, 0.95 / height, 0.52, 0.55 * n / height))
    axes.set_xlim(0, 1)
    axes.set_ylim(-0.6, n - 0.4)
    axes.axvline(0.5, color="#8a4f00", linestyle="--", linewidth=1)
    offsets = {s: (k - (len(systems) - 1) / 2) * min(0.22, 0.6 / max(len(systems), 1)) for k, s in enumerate(systems)}
    for index, row in enumerate(rows):
        y = n - 1 - index
        for k, system in enumerate(systems):
            value = row["systems"].get(system)
            if not value or value["estimate"] is None:
                continue
            yy = y - offsets[system]
            colour, marker = SYSTEM_COLOURS[k % len(SYSTEM_COLOURS)], SYSTEM_MARKERS[k % len(SYSTEM_MARKERS)]
            if value["ci_low"] is not None and value["ci_high"] is not None:
                axes.plot([value["ci_low"], value["ci_high"]], [yy, yy], color=colour, linewidth=1.3)
            (dot,) = axes.plot([value["estimate"]], [yy], marker=marker, markersize=6, color=colour, linestyle="none")
            if value.get("url"):
                dot.set_url(value["url"])
    axes.set_yticks([n - 1 - i for i in range(len(rows))], [r["title"] for r in rows], fontsize=9)
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"], fontsize=8)
    axes.set_xlabel(
        "Average win rate among clinicians (wins / all answers; a tie is not a win), 95% interval", fontsize=8
    )
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    handles = [
        axes.plot([], [], marker=SYSTEM_MARKERS[k % 8], color=SYSTEM_COLOURS[k % 8], linestyle="none", label=s)[0]
        for k, s in enumerate(systems)
    ]
    if handles:
        axes.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title=None
        )
    return figure


_STYLE_ATTRIBUTE = re.compile(r'\sstyle="([^"]*)"')
_ID = re.compile(r'\sid="([^"]+)"')


def _presentation_attributes(style: str) -> str:
    """`fill: #fff; font: 10px 'DejaVu Sans'` -> ` fill="#fff" font-size="10px" font-family="DejaVu Sans"`."""
    out = []
    for declaration in style.split(";"):
        if ":" not in declaration:
            continue
        name, value = (part.strip() for part in declaration.split(":", 1))
        if name == "font":
            tokens = value.replace("'", "").split()
            size = next((i for i, t in enumerate(tokens) if t.endswith("px")), None)
            if size is None:
                continue
            for token in tokens[:size]:
                if token in ("italic", "oblique"):
                    out.append(f'font-style="{token}"')
                elif token in ("bold", "bolder", "lighter") or token.isdigit():
                    out.append(f'font-weight="{token}"')
            out.append(f'font-size="{tokens[size]}"')
            out.append(f'font-family="{" ".join(tokens[size + 1 :]) or _FONT}, sans-serif"')
        else:
            out.append(f'{name}="{value.replace(chr(34), "")}"')
    return " " + " ".join(out) if out else ""


def figure_svg(figure, *, prefix: str, title: str, links: dict[str, str] | None = None) -> str:
    """The figure as inline SVG markup fit for the page: no style attributes, ids unique to `prefix`, a
    <title>, and links (matplotlib's set_url) named for screen readers from `links` (url -> name)."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    out = io.StringIO()
    with matplotlib.rc_context({**CHART_RC, "svg.hashsalt": prefix}):
        FigureCanvasSVG(figure).print_svg(out, metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)
    svg = _STYLE_ATTRIBUTE.sub(lambda m: _presentation_attributes(m.group(1)), svg)
    svg = _ID.sub(lambda m: f' id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{prefix}-{m.group(1)}"', svg)
    names = {html.escape(url, quote=True): html.escape(name, quote=True) for url, name in (links or {}).items()}

    def link(match: re.Match) -> str:
        url = match.group(1)  # already escaped by matplotlib; a link opens in this tab, not a new one
        label = f' aria-label="{names[url]}"' if url in names else ""
        return f'<a href="{url}" xlink:href="{url}"{label}>'

    svg = re.sub(r'<a xlink:href="([^"]*)"[^>]*>', link, svg)
    head_end = svg.index(">") + 1
    head = svg[:head_end]
    view_box = re.search(r'viewBox="([^"]*)"', head).group(1)
    new_head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'class="chart mpl-chart" viewBox="{view_box}" stroke-linejoin="round" stroke-linecap="butt" '
        f'aria-labelledby="{prefix}-title">'
        f'<title id="{prefix}-title">{html.escape(title)}</title>'
    )
    return new_head + svg[head_end:]
