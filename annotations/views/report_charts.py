"""Geometry for the report page's server-rendered SVG charts: plain dicts of coordinates for the templates.

Charts are drawn on the server so the page works under a strict CSP (no scripts needed to read it) and
prints as it looks. Positions and colours are SVG presentation attributes, never style="" attributes.
"""

from __future__ import annotations

from typing import Any

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


def kappa_heatmap(criterion_entry: dict[str, Any]) -> dict[str, Any]:
    """Rater-by-rater Cohen's kappa: clinicians from the reliability matrix, judges against each clinician.
    Judge-against-judge cells are not computed by the report and stay empty."""
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
            cells.append(
                {
                    "x": HEATMAP_LABEL + j * CELL,
                    "y": HEATMAP_LABEL + i * CELL,
                    "fill": "#ffffff" if diagonal else _diverging_fill(value),
                    "text": "" if diagonal or value is None else f"{value:.2f}",
                    "text_x": HEATMAP_LABEL + j * CELL + CELL / 2,
                    "text_y": HEATMAP_LABEL + i * CELL + CELL / 2 + 4,
                    "dark": value is not None and abs(value) > 0.55 and not diagonal,
                    "title": f"{row} × {column}: "
                    + ("same rater" if diagonal else "not computed" if value is None else f"κ = {value:.3f}")
                    + (f", {n_items} items" if n_items and not diagonal else ""),
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


def win_rate_chart(results: dict[str, Any], systems: list[str]) -> dict[str, Any]:
    """Average win rate per system (the research's headline metric) with prompt-bootstrap intervals, for
    the clinicians and then each judge."""
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
                }
            )
    return interval_rows(items)
