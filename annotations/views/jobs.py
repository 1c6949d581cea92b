"""Training jobs pages: list and launch, a job's page (progress, live loss curve, lineage, held-out figures),
the study's models page (every job side by side on held-out clinician pairs), cancel, artifact download,
register as system. Researchers of the study only; everyone else gets 404."""

import json
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from annotations.models import JobStatus, PreferenceExport, Study, TrainingJob
from annotations.models.survey import WeightSet
from annotations.services.audit import audit_download
from annotations.services.studies import study_criteria
from annotations.services.training_jobs import (
    OPTION_DEFAULTS,
    base_models_available,
    suggestions_in_words,
    training_job_artifacts_zip,
    training_job_cancel,
    training_job_for_study,
    training_job_launch,
    training_job_lineage,
    training_job_progress,
    training_job_register_system,
    training_jobs_for_study,
)
from annotations.training.spec import heldout_figures
from annotations.views.common import agreement_rows, criterion_titles, error_dict, study_for

# The options the launch form shows (the others keep TrainingSpec's defaults; the API takes them all).
FORM_OPTIONS = (
    "max_steps",
    "num_epochs",
    "learning_rate",
    "batch_size",
    "gradient_accumulation_steps",
    "num_processes",
    "distributed",
    "beta",
    "max_length",
    "use_lora",
    "reward_margins",
    "precision",
    "save_steps",
    "logging_steps",
    "seed",
)


def parse_weights(text: str) -> dict[str, float]:
    """`empathy=0.6, safety=0.4` (or a JSON object) -> {"empathy": 0.6, "safety": 0.4}."""
    text = text.strip()
    if not text:
        return {}
    try:
        if text.startswith("{"):
            loaded = json.loads(text)
            return {str(key): float(value) for key, value in loaded.items()}
        pairs = [item.split("=", 1) for item in text.replace("\n", ",").split(",") if item.strip()]
        return {key.strip(): float(value) for key, value in pairs}
    except (ValueError, TypeError, AttributeError):
        raise ValidationError({"weights": ["Write weights as name=number, separated by commas."]}) from None


def _job_or_404(study: Study, public_id: uuid.UUID) -> TrainingJob:
    job = training_job_for_study(study=study, public_id=public_id)
    if job is None:
        raise Http404("No such job.")
    return job


def export_from_form(form: QueryDict, study: Study) -> PreferenceExport | None:
    """The export chosen on a launch form (job or sweep), or None when none was chosen."""
    if not form.get("export"):
        return None
    try:
        export = PreferenceExport.objects.filter(study=study, public_id=form["export"]).first()
    except ValidationError:
        export = None
    if export is None:
        raise ValidationError({"export": ["No such export in this study."]})
    return export


def _launch_from_form(request: HttpRequest, study: Study) -> TrainingJob:
    form = request.POST
    export = export_from_form(form, study)
    try:
        input_ids = [uuid.UUID(value) for value in form.getlist("inputs")]
    except ValueError:
        raise ValidationError({"inputs": ["No such job in this study."]}) from None
    inputs = list(TrainingJob.objects.filter(study=study, public_id__in=input_ids))
    if len(inputs) != len(set(input_ids)):
        raise ValidationError({"inputs": ["No such job in this study."]})
    checkboxes = ("use_lora", "reward_margins")
    options = {name: form.get(name, "") for name in FORM_OPTIONS if name not in checkboxes}
    options["use_lora"] = "use_lora" in form
    if form.get("kind") == TrainingJob.Kind.REWARD:
        options["reward_margins"] = "reward_margins" in form  # recorded either way: the job says which it did
    return training_job_launch(
        study=study,
        kind=form.get("kind", ""),
        base_model=form.get("base_model", "").strip(),
        export=export,
        criterion=form.get("criterion", "").strip(),
        weights=parse_weights(form.get("weights", "")),
        hyperparameters=options,
        inputs=inputs,
        actor=request.user,
        weight_set=_weight_set_from_form(form, study),
    )


def _weight_set_from_form(form, study: Study) -> WeightSet | None:
    """The weight set chosen on the form (annotations/services/surveys.py derives them), or None."""
    chosen = form.get("weight_set", "").strip()
    if not chosen:
        return None
    weight_set = WeightSet.objects.filter(study=study, pk=int(chosen)).first() if chosen.isdigit() else None
    if weight_set is None:
        raise ValidationError({"weight_set": ["No such weight set in this study."]})
    return weight_set


@login_required
def job_list(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        try:
            job = _launch_from_form(request, study)
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            messages.success(request, "Job queued.")
            return redirect("job-detail", slug=study.slug, public_id=job.public_id)
    criteria = study_criteria(study)
    context = {
        "study": study,
        "jobs": training_jobs_for_study(study=study),
        "exports": PreferenceExport.objects.filter(study=study, status=JobStatus.SUCCEEDED).order_by("-created_at"),
        "finished_jobs": training_jobs_for_study(study=study).filter(status=JobStatus.SUCCEEDED),
        "criteria": criteria,
        "titles": {criterion.key: criterion.title for criterion in criteria},
        "weight_sets": WeightSet.objects.filter(study=study),
        "kinds": TrainingJob.Kind.choices,
        "base_models": base_models_available(),
        "defaults": OPTION_DEFAULTS,
        "suggestions": suggestions_in_words(),
        "form": request.POST if request.method == "POST" else {},
        "errors": errors,
    }
    return render(request, "jobs/list.html", context, status=400 if errors else 200)


@login_required
@require_GET
def job_detail(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug)
    job = _job_or_404(study, public_id)
    lineage = training_job_lineage(job)
    titles = criterion_titles(study)
    context = {
        "study": study,
        "job": job,
        "progress": training_job_progress(job),
        "lineage": lineage,
        "agreement_rows": agreement_rows(lineage["agreement"], titles),
        "titles": titles,
        "finished": job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED),
        "can_download": job.artifacts_path and job.status != JobStatus.QUEUED,
        "systems": job.systems.order_by("name"),
        "heldout": [
            {"key": key, "title": titles.get(key, key), "figure": figure}
            for key, figure in heldout_figures((job.result or {}).get("metrics") or {}).items()
        ],
        "snapshot": _snapshot_in_words(lineage["export"], titles),
        "reward_margins": job.hyperparameters.get("reward_margins", OPTION_DEFAULTS["reward_margins"]),
        "detail_url": reverse("api-job-detail", kwargs={"slug": study.slug, "public_id": job.public_id}),
        "metrics_url": reverse("api-job-metrics", kwargs={"slug": study.slug, "public_id": job.public_id}),
    }
    return render(request, "jobs/detail.html", context)


def _snapshot_in_words(export: dict[str, Any] | None, titles: dict[str, str]) -> dict[str, str]:
    """The export's criteria, rubric versions and rows per split, with criterion titles, for the lineage list."""
    if export is None:
        return {}

    def title(key: str) -> str:
        return titles.get(key, key)

    rows = export.get("rows") or {}
    return {
        "criteria": ", ".join(title(key) for key in export.get("criteria") or []),
        "rubric_versions": ", ".join(
            f"{title(key)} {version}" for key, version in (export.get("rubric_versions") or {}).items()
        ),
        "rows": "; ".join(
            f"{title(key)}: " + ", ".join(f"{count} {split}" for split, count in (by_split or {}).items())
            for key, by_split in rows.items()
        ),
    }


# Sortable columns of the models page: name -> how to read it from a row (None sorts last).
MODEL_SORT_KEYS = ("created", "kind", "criterion", "status", "base_model", "export", "loss")


def _model_row(job: TrainingJob) -> dict[str, Any]:
    figures = heldout_figures((job.result or {}).get("metrics") or {})
    own = figures.get(job.criterion_key, {})
    return {
        "job": job,
        "created": job.created_at,
        "kind": job.kind,
        "criterion": job.criterion_key,
        "status": job.status,
        "base_model": job.base_model,
        "export": job.export.created_at if job.export is not None else None,
        "loss": own.get("loss"),
        "figures": figures,
    }


def _sort_value(row: dict[str, Any], key: str) -> Any:
    if key.startswith("accuracy:"):
        return row["figures"].get(key.split(":", 1)[1], {}).get("accuracy")
    return row.get(key)


@login_required
@require_GET
def job_models(request: HttpRequest, slug: str) -> HttpResponse:
    """Every job of the study side by side: held-out accuracy per criterion (reward models on their criterion,
    DPO and MODPO's implicit reward on every criterion), SFT's held-out loss, and lineage (export, base model).
    Sorted by ?sort=<column> (a leading "-" for descending); jobs without the figure come last."""
    study = study_for(request, slug)
    jobs = training_jobs_for_study(study=study).select_related("export")
    rows = [_model_row(job) for job in jobs]
    scored = {criterion for row in rows for criterion in row["figures"]}
    in_study_order = [criterion.key for criterion in study_criteria(study) if criterion.key in scored]
    criteria = in_study_order + sorted(scored - set(in_study_order))
    sort = request.GET.get("sort", "-created")
    key = sort.removeprefix("-")
    if key not in MODEL_SORT_KEYS and not (key.startswith("accuracy:") and key.split(":", 1)[1] in criteria):
        sort, key = "-created", "created"
    descending = sort.startswith("-")
    present = [row for row in rows if _sort_value(row, key) is not None]
    missing = [row for row in rows if _sort_value(row, key) is None]
    present.sort(key=lambda row: _sort_value(row, key), reverse=descending)
    for row in present + missing:
        row["cells"] = [row["figures"].get(criterion, {}) for criterion in criteria]
    columns = [(name, name.replace("_", " ")) for name in ("kind", "criterion", "status", "base_model", "export")]
    context = {
        "study": study,
        "rows": present + missing,
        "criteria": criteria,
        "titles": criterion_titles(study),
        "columns": columns,
        "sort": sort,
        "sort_key": key,
        "descending": descending,
    }
    return render(request, "jobs/models.html", context)


@login_required
@require_POST
def job_cancel(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    job = _job_or_404(study, public_id)
    try:
        training_job_cancel(job=job, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Cancel requested: the job stops at its next step and keeps its last checkpoint.")
    return redirect("job-detail", slug=study.slug, public_id=job.public_id)


@login_required
@require_POST
def job_register_system(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    job = _job_or_404(study, public_id)
    try:
        system = training_job_register_system(job=job, name=request.POST.get("name", ""), actor=request.user)
    except ValidationError as exc:
        messages.error(request, "Could not register the system: " + " ".join(exc.messages))
    else:
        messages.success(request, f"Registered as system {system.name}.")
    return redirect("job-detail", slug=study.slug, public_id=job.public_id)


@login_required
@require_GET
def job_artifacts(request: HttpRequest, slug: str, public_id: uuid.UUID) -> FileResponse:
    study = study_for(request, slug)
    job = _job_or_404(study, public_id)
    try:
        archive = training_job_artifacts_zip(job)
    except FileNotFoundError:
        raise Http404("This job has no artifacts yet.") from None
    filename = f"training-job-{job.public_id}.zip"
    audit_download(actor=request.user, kind="job_artifacts", study=study, obj=job, data={"file": filename})
    return FileResponse(archive, as_attachment=True, filename=filename, content_type="application/zip")


urlpatterns = [
    path("studies/<slug:slug>/jobs/", job_list, name="job-list"),
    path("studies/<slug:slug>/jobs/models/", job_models, name="job-models"),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/", job_detail, name="job-detail"),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/cancel", job_cancel, name="job-cancel"),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/register", job_register_system, name="job-register-system"),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/artifacts.zip", job_artifacts, name="job-artifacts"),
]
