"""Weight sweep pages: the list with the launch form, a sweep's page (its models on held-out clinician pairs, a
chart of two chosen criteria with the Pareto front, every job's status) and cancel-all. Researchers of the study
only; everyone else gets 404."""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from annotations.models import JobStatus, PreferenceExport, Study, Sweep, TrainingJob
from annotations.models.survey import WeightSet
from annotations.services.studies import study_criteria
from annotations.services.sweeps import (
    DEFAULT_AXES,
    accuracy_of,
    sweep_cancel,
    sweep_for_study,
    sweep_launch,
    sweep_overview,
    sweep_status,
    sweep_vectors_resolve,
    sweeps_for_study,
    weight_rows_parse,
)
from annotations.services.training_jobs import (
    FINISHED,
    OPTION_DEFAULTS,
    base_models_available,
    suggestions_in_words,
    training_job_progress,
)
from annotations.views.common import error_dict, study_for
from annotations.views.jobs import export_from_form

# The training options the sweep form shows; every job of the sweep takes the same ones.
FORM_OPTIONS = ("max_steps", "learning_rate", "batch_size", "beta", "max_length", "seed")
GRID_STEPS = ("0.5", "0.25", "0.2", "0.1")
# Colour-blind-safe (Okabe-Ito) with a distinct marker per kind of model, so the chart reads in grey too.
ROLE_STYLE = {
    "modpo": ("#0072B2", "o"),
    "merge": ("#0072B2", "D"),
    "dpo-baseline": ("#D55E00", "s"),
    "source": ("#D55E00", "s"),
    "reference": ("#7f7f7f", "^"),
}


def _sweep_or_404(study: Study, public_id: uuid.UUID) -> Sweep:
    sweep = sweep_for_study(study=study, public_id=public_id)
    if sweep is None:
        raise Http404("No such sweep.")
    return sweep


def _launch_from_form(request: HttpRequest, study: Study) -> Sweep:
    form = request.POST
    export = export_from_form(form, study)
    step = None
    if form.get("step", "").strip():
        try:
            step = float(form["step"])
        except ValueError:
            raise ValidationError({"step": ["Give the step as a number, e.g. 0.25."]}) from None
    grid_criteria = form.getlist("criteria") if step is not None else []
    chosen_sets = [value for value in form.getlist("weight_sets") if value]
    weight_sets = list(WeightSet.objects.filter(study=study, pk__in=[v for v in chosen_sets if v.isdigit()]))
    if len(weight_sets) != len(set(chosen_sets)):
        raise ValidationError({"weight_sets": ["No such weight set in this study."]})
    vectors = sweep_vectors_resolve(
        study=study,
        grid_criteria=grid_criteria,
        step=step,
        weight_sets=weight_sets,
        rows=weight_rows_parse(form.get("vectors", "")),
    )
    options: dict[str, Any] = {name: form.get(name, "") for name in FORM_OPTIONS}
    options["use_lora"] = "use_lora" in form
    return sweep_launch(
        study=study,
        kind=form.get("kind", ""),
        export=export,
        base_model=form.get("base_model", "").strip(),
        vectors=vectors,
        name=form.get("name", ""),
        hyperparameters=options,
        actor=request.user,
    )


def _finished_models(study: Study, kind: str, titles: dict[str, str]) -> list[str]:
    """'Safety (b9f7e53a)' for each succeeded job of `kind`: what a sweep can take for each criterion."""
    jobs = TrainingJob.objects.filter(study=study, kind=kind, status=JobStatus.SUCCEEDED).order_by("-created_at")
    return [f"{titles.get(job.criterion_key, job.criterion_key)} ({str(job.public_id)[:8]})" for job in jobs[:50]]


@login_required
def sweep_list(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        try:
            sweep = _launch_from_form(request, study)
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            messages.success(request, f"Sweep queued: {len(sweep.weight_vectors)} weight vectors.")
            return redirect("sweep-detail", slug=study.slug, public_id=sweep.public_id)
    criteria = study_criteria(study)
    titles = {criterion.key: criterion.title for criterion in criteria}
    sweeps = [(sweep, sweep_status(sweep)) for sweep in sweeps_for_study(study=study)]
    form = request.POST if request.method == "POST" else {}
    context = {
        "study": study,
        "sweeps": sweeps,
        "exports": PreferenceExport.objects.filter(study=study, status=JobStatus.SUCCEEDED).order_by("-created_at"),
        "criteria": criteria,
        "checked_criteria": request.POST.getlist("criteria") if form else list(DEFAULT_AXES),
        "weight_sets": WeightSet.objects.filter(study=study),
        "checked_sets": request.POST.getlist("weight_sets") if form else [],
        "kinds": Sweep.Kind.choices,
        "steps": GRID_STEPS,
        "base_models": base_models_available(),
        "reward_models": _finished_models(study, TrainingJob.Kind.REWARD, titles),
        "dpo_models": _finished_models(study, TrainingJob.Kind.DPO, titles),
        "defaults": OPTION_DEFAULTS,
        "suggestions": suggestions_in_words(),
        "form": form,
        "errors": errors,
    }
    return render(request, "jobs/sweep_list.html", context, status=400 if errors else 200)


def sweep_chart_svg(points: list[dict[str, Any]], x: str, y: str, titles: dict[str, str]) -> str:
    """The scatter of held-out accuracy on two criteria, front joined by a line, as an SVG document (matplotlib,
    Agg, no pyplot: safe in a threaded web server)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    plotted = [p for p in points if accuracy_of(p, x) is not None and accuracy_of(p, y) is not None]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sweep", "font.size": 10}):
        figure = Figure(figsize=(7.2, 5.0), layout="constrained")
        axes = figure.add_subplot()
        front = sorted((p for p in plotted if p.get("front")), key=lambda p: (accuracy_of(p, x), -accuracy_of(p, y)))
        if len(front) > 1:
            axes.plot(
                [100 * accuracy_of(p, x) for p in front],
                [100 * accuracy_of(p, y) for p in front],
                color="#009E73",
                linewidth=2,
                zorder=1,
            )
        # Models with the same figures share one spot: one label lists them all, instead of overprinting.
        spots: dict[tuple[float, float], list[dict[str, Any]]] = {}
        for point in plotted:
            spots.setdefault((round(accuracy_of(point, x), 6), round(accuracy_of(point, y), 6)), []).append(point)
        xs = [100 * accuracy_of(p, x) for p in plotted]
        right_third = min(xs) + (max(xs) - min(xs)) * 2 / 3 if xs else 0.0
        for (ax, ay), group in spots.items():
            px, py = 100 * ax, 100 * ay
            for point in group:
                colour, marker = ROLE_STYLE.get(point["role"], ("#000000", "o"))
                axes.scatter(
                    [px],
                    [py],
                    s=90 if point.get("front") else 55,
                    marker=marker,
                    facecolor=colour if point["role"] != "reference" else "white",
                    edgecolor="#009E73" if point.get("front") else colour,
                    linewidth=2.4 if point.get("front") else 1.2,
                    zorder=3,
                )
            # Earlier jobs alone at a spot are labelled below it, so a sweep model close by stays readable; near
            # the right edge a label reads leftwards from its point, below it (the front comes down from the upper
            # left, so that corner is free), so it stays inside the plot and off the line.
            leftwards = px > right_third
            below = leftwards or all(point["role"] == "reference" for point in group)
            axes.annotate(
                "\n".join(point["label"] for point in group),
                (px, py),
                xytext=(-6 if leftwards else 6, -11 if below else 5),
                textcoords="offset points",
                fontsize=8,
                color="#555555" if all(point["role"] == "reference" for point in group) else "#222222",
                verticalalignment="top" if below else "bottom",
                horizontalalignment="right" if leftwards else "left",
            )
        axes.set_xlabel(f"{titles.get(x, x)}: held-out accuracy (%)")
        axes.set_ylabel(f"{titles.get(y, y)}: held-out accuracy (%)")
        # Zoomed to the models (a trade-off of a few points must be visible), never beyond 0-100 %.
        for values, set_limits in (
            ([100 * accuracy_of(p, x) for p in plotted], axes.set_xlim),
            ([100 * accuracy_of(p, y) for p in plotted], axes.set_ylim),
        ):
            low, high = min(values), max(values)
            pad = max(5.0, (high - low) * 0.15)
            set_limits(max(-2.0, low - pad), min(102.0, high + pad))
        axes.grid(True, color="#dddddd", linewidth=0.6)
        legend = [
            Line2D([], [], marker="o", linestyle="", color="#0072B2", label="MODPO / merge"),
            Line2D([], [], marker="s", linestyle="", color="#D55E00", label="single-criterion (DPO)"),
            Line2D([], [], marker="^", linestyle="", markerfacecolor="white", color="#7f7f7f", label="earlier DPO job"),
            Line2D([], [], color="#009E73", linewidth=2, label="Pareto front"),
        ]
        axes.legend(handles=legend, loc="lower left", fontsize=8, framealpha=0.9)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _chart_data_uri(svg: str) -> str:
    # An <img> rather than inline SVG: matplotlib styles its elements with style attributes, which the page's
    # Content-Security-Policy (style-src 'self') would strip from inline markup, but not from an image.
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


@login_required
@require_GET
def sweep_detail(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug)
    sweep = _sweep_or_404(study, public_id)
    view = sweep_overview(sweep, request.GET.get("x"), request.GET.get("y"))
    titles = {criterion.key: criterion.title for criterion in study_criteria(study)}
    points = view["points"]
    for point in points:
        point["cells"] = [{"criterion": key, **(point["figures"].get(key) or {})} for key in view["criteria"]]
        weights_text = " · ".join(f"{titles.get(k, k)} {v:g}" for k, v in point["weights"].items() if v > 0)
        several = sum(1 for v in point["weights"].values() if v > 0) > 1  # one criterion: the label says it
        point["weights_text"] = weights_text if several and weights_text != point["label"] else ""
    plotted = [p for p in points if accuracy_of(p, view["x"]) is not None and accuracy_of(p, view["y"]) is not None]
    chart = None
    if view["x"] and view["y"] and plotted:
        chart = _chart_data_uri(sweep_chart_svg(points, view["x"], view["y"], titles))
    x_title, y_title = titles.get(view["x"], view["x"]), titles.get(view["y"], view["y"])
    front_text = "; ".join(
        f"{p['label']} ({x_title} {accuracy_of(p, view['x']):.0%}, {y_title} {accuracy_of(p, view['y']):.0%})"
        for p in plotted
        if p["front"]
    )
    chart_alt = (
        f"Scatter of held-out accuracy, {x_title} across and {y_title} up, for {len(plotted)} models. "
        f"On the Pareto front: {front_text or 'none'}. The table below gives every value."
    )
    jobs = list(sweep.jobs.order_by("created_at"))
    for job in jobs:
        job.criterion_title = titles.get(job.criterion_key, job.criterion_key)
    status = sweep_status(sweep)
    context = {
        "study": study,
        "sweep": sweep,
        "points": points,
        "criteria": [(key, titles.get(key, key)) for key in view["criteria"]],
        "x": view["x"],
        "y": view["y"],
        "x_title": x_title,
        "y_title": y_title,
        "chart_alt": chart_alt,
        "chart": chart,
        "plotted": plotted,
        "front": [p for p in plotted if p["front"]],
        "jobs": [(job, training_job_progress(job)) for job in jobs],
        "status": status,
        "can_cancel": any(job.status not in FINISHED and not job.cancel_requested for job in jobs),
        "detail_url": reverse("api-sweep-detail", kwargs={"slug": study.slug, "public_id": sweep.public_id}),
    }
    return render(request, "jobs/sweep_detail.html", context)


@login_required
@require_POST
def sweep_cancel_view(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    sweep = _sweep_or_404(study, public_id)
    try:
        count = sweep_cancel(sweep=sweep, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Cancel requested for {count} job(s): each stops at its next step.")
    return redirect("sweep-detail", slug=study.slug, public_id=sweep.public_id)


urlpatterns = [
    path("studies/<slug:slug>/jobs/sweeps/", sweep_list, name="sweep-list"),
    path("studies/<slug:slug>/jobs/sweeps/<uuid:public_id>/", sweep_detail, name="sweep-detail"),
    path("studies/<slug:slug>/jobs/sweeps/<uuid:public_id>/cancel", sweep_cancel_view, name="sweep-cancel"),
]
