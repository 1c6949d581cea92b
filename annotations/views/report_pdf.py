"""The report as a PDF for a paper's supplement: the summary, the same charts, the methods and the provenance.

matplotlib's PdfPages writes it (text pages and the figures of the page's summary), so it runs on the web
process or a worker with no browser, no network and no extra dependency.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

PAGE = (8.27, 11.69)  # A4, inches
MARGIN_X, TOP, LINE = 0.08, 0.95, 0.0165  # figure fractions
WRAP = 100  # characters per line at 9 pt


class _TextPages:
    """Lines of text laid out on A4 pages, a new page when one is full."""

    def __init__(self, pdf: Any) -> None:
        self.pdf, self.figure, self.y = pdf, None, TOP

    def _page(self) -> None:
        from matplotlib.figure import Figure

        if self.figure is not None:
            self.pdf.savefig(self.figure)
        self.figure, self.y = Figure(figsize=PAGE), TOP

    def line(self, text: str, *, size: float = 9, bold: bool = False, gap: float = 1.0, indent: float = 0) -> None:
        wrap = int(WRAP * 9 / size) - int(indent * 100)
        for part in textwrap.wrap(text, wrap) or [""]:
            if self.figure is None or self.y < 0.05:
                self._page()
            self.figure.text(
                MARGIN_X + indent,
                self.y,
                part,
                fontsize=size,
                fontweight="bold" if bold else "normal",
                va="top",
                family="DejaVu Sans",
            )
            self.y -= LINE * size / 9 * gap
        self.y -= LINE * 0.25

    def heading(self, text: str) -> None:
        if self.figure is not None and self.y < 0.15:
            self._page()
        self.y -= LINE * 0.5
        self.line(text, size=12, bold=True, gap=1.3)

    def close(self) -> None:
        if self.figure is not None:
            self.pdf.savefig(self.figure)
            self.figure = None


def report_pdf(context: dict[str, Any]) -> bytes:
    """The PDF bytes for a computed report's page context (views.reports.report_context)."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    from annotations.views.report_charts import CHART_RC

    study, document = context["study"], context["document"]
    out = io.BytesIO()
    with matplotlib.rc_context(CHART_RC), PdfPages(out, metadata=_metadata(study, document)) as pdf:
        pages = _TextPages(pdf)
        pages.line(f"{study.title}: agreement and results", size=15, bold=True, gap=1.4)
        pages.line(f"Study {study.slug} · {study.scale_points}-point scale · supplementary report")
        pages.heading("Data provenance")
        for text in _provenance_lines(context):
            pages.line(text)
        pages.heading("Summary")
        if context.get("adjudication"):
            pages.line(f"Adjudicated: {context['adjudication']}.")
        for row in context["summary"]:
            pages.line(row["title"], bold=True)
            for text in _summary_lines(row):
                pages.line(text, indent=0.02)
        pages.line(
            "Readings: α after Krippendorff (2004): ≥ 0.800 reliable, 0.667–0.800 tentative conclusions only, "
            "< 0.667 too low. κ and AC1 after Landis & Koch (1977). Cut-offs are conventions, not tests; read "
            "them with the interval. κ falls when one answer dominates (prevalence), which AC1 resists.",
            size=8,
        )
        pages.close()
        figures = context.get("figures")
        if figures:
            # The page's own figures, captioned for paper (the page captions them in HTML).
            figures["forest"].suptitle(
                "Figure 1. Krippendorff's α per criterion with 95% intervals", fontsize=9, y=0.995, va="top"
            )
            pdf.savefig(figures["forest"])
            if figures["has_win_rates"]:
                figures["win"].suptitle(
                    "Figure 2. Clinicians' average win rate per system and criterion, 95% intervals",
                    fontsize=9,
                    y=0.995,
                    va="top",
                )
                pdf.savefig(figures["win"])
        pages = _TextPages(pdf)
        pages.heading("Per criterion")
        for c in context["criteria"]:
            pages.line(c["title"], bold=True)
            for row in c["reliability_rows"]:
                interval = f" ({row['interval']})" if row["interval"] else ""
                reading = f"; {row['reading']}" if row["reading"] else ""
                pages.line(
                    f"{row['label']}: {row['estimate']}{interval}{reading}; n = {row['n']} {row['n_short']}",
                    indent=0.02,
                    size=8.5,
                )
            for group in c["pair_groups"]:
                for p in group["pairs"]:
                    pages.line(
                        f"{group['label']}: {p['system']} vs {p['opponent']}: {p['win_rate']} "
                        f"({p['win_rate_interval']}) of {p['n']} ratings; sign test p {p['p_rating']} per rating, "
                        f"{p['p_comparison']} per comparison",
                        indent=0.02,
                        size=8.5,
                    )
        pages.heading("Methods")
        for name, text in context["methods"]:
            pages.line(name, bold=True)
            pages.line(text, indent=0.02)
        pages.heading("References")
        for ref in context["references"]:
            pages.line(ref, size=8.5)
        pages.close()
    return out.getvalue()


def _metadata(study: Any, document: dict[str, Any]) -> dict[str, Any]:
    return {
        "Title": f"{study.title}: agreement and results",
        "Subject": f"Report {document['fingerprint'][:16]}",
        "Creator": "evalplatform",
    }


def _provenance_lines(context: dict[str, Any]) -> list[str]:
    document, report, kinds = context["document"], context["report"], context["kinds"]
    rubric = ", ".join(f"{c['title']} v{c['version']}" for c in document.get("criteria") or [])
    lines = [
        f"Computed {context['shown'].computed_at:%d %b %Y, %H:%M} UTC from {report['counts']['n_ratings']} ratings and judgments of "
        f"{report['counts']['n_items']} comparisons of {report['counts']['n_prompts']} prompts.",
        f"Raters: {kinds['text']}. Clinicians' figures pool platform clinicians and imported raters; AI judges "
        "are shown beside them.",
        f"Fingerprint {document['fingerprint']}.",
        f"Rubric: {rubric}.",
        f"Filters: {context['filters_text']}.",
        f"{document['n_resamples']} prompt-bootstrap resamples, seed {document['seed']}, "
        f"{report['settings']['confidence']:.2f} percentile intervals.",
    ]
    excluded = (document.get("excluded_raters") or {}).get("below_gold_accuracy") or {}
    if excluded:
        lines.append("Left out below the gold-accuracy threshold: " + ", ".join(sorted(excluded)) + ".")
    return lines


def _summary_lines(row: dict[str, Any]) -> list[str]:
    alpha = f"α {row['alpha']}" + (f" ({row['alpha_interval']})" if row["alpha_interval"] else "")
    reading = row["alpha_reading"] if not row["alpha_reason"] else f"not computed: {row['alpha_reason']}"
    lines = [
        f"{alpha}: {reading}; n = {row['n_items']} comparisons rated by 2+ of {row['n_clinicians']} clinicians.",
        f"Clinicians agree on {row['agreement']}"
        + (f" ({row['agreement_interval']})" if row["agreement_interval"] else "")
        + f" of {row['n_pairs']} rating pairs.",
    ]
    judge = row["judge"]
    if judge:
        lines.append(
            f"Best AI judge {judge['label']}: {judge['judge']} with clinicians vs {judge['clinicians']} among "
            f"clinicians, difference {judge['difference']}"
            + (f" ({judge['difference_interval']})" if judge["difference_interval"] else "")
            + f"; {judge['basis']}."
        )
    else:
        lines.append("No AI judge rated this criterion.")
    leader = row["leader"]
    if leader:
        lines.append(
            f"Leading system {leader['system']}: average win rate {leader['win_rate']}"
            + (f" ({leader['interval']})" if leader["interval"] else "")
            + f" over {leader['n_opponents']} opponents."
        )
    return lines
