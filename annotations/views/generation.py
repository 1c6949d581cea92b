"""Generation and follow-up pages: generate responses from a succeeded job (form on the job's page) or an
endpoint, a run's page (progress, cancel), and the "Create follow-up study" form. Researchers of the
study only; everyone else gets 404."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from annotations.models import GenerationRun, JobStatus, PreferenceExport, Study, System
from annotations.plain import error_text
from annotations.services.followup import followup_study_create
from annotations.services.generation import (
    FINISHED,
    generation_run_cancel,
    generation_run_create,
    generation_run_for_study,
    generation_run_progress,
    generation_runs_for_study,
)
from annotations.services.training_jobs import training_job_for_study
from annotations.training.generate import GenerationSettings
from annotations.views.common import error_dict, study_for

FORM_SETTINGS = ("max_new_tokens", "temperature", "top_p", "seed", "batch_size")


def _run_or_404(study: Study, public_id: uuid.UUID) -> GenerationRun:
    run = generation_run_for_study(study=study, public_id=public_id)
    if run is None:
        raise Http404("No such generation run.")
    return run


def _settings_from(form) -> dict[str, str]:
    return {name: form.get(name, "") for name in FORM_SETTINGS}


def _export_from(study: Study, value: str) -> PreferenceExport | None:
    if not value:
        return None
    try:
        export = PreferenceExport.objects.filter(study=study, public_id=value).first()
    except ValidationError:
        export = None
    if export is None:
        raise ValidationError({"export": ["No such export in this study."]})
    return export


@login_required
def generation_run_list(request: HttpRequest, slug: str) -> HttpResponse:
    """The study's generation runs, and a form for an endpoint run (a job's runs start on the job's page)."""
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        form = request.POST
        try:
            run = generation_run_create(
                study=study,
                system_name=form.get("system_name", ""),
                source=GenerationRun.Source.ENDPOINT,
                base_url=form.get("base_url", ""),
                model_name=form.get("model_name", ""),
                api_key_env=form.get("api_key_env", ""),
                prompt_set=form.get("prompt_set", GenerationRun.PromptSet.ALL),
                export=_export_from(study, form.get("export", "")),
                settings=_settings_from(form),
                actor=request.user,
            )
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            messages.success(request, "Generation queued.")
            return redirect("generation-run-detail", slug=study.slug, public_id=run.public_id)
    context = {
        "study": study,
        "runs": generation_runs_for_study(study=study)[:200],
        "exports": PreferenceExport.objects.filter(study=study, status=JobStatus.SUCCEEDED).order_by("-created_at"),
        "defaults": GenerationSettings(),
        "form": request.POST if request.method == "POST" else {},
        "errors": errors,
    }
    return render(request, "generation/list.html", context, status=400 if errors else 200)


@login_required
@require_POST
def generation_run_from_job(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    """The "Generate responses" form of a succeeded job's page."""
    study = study_for(request, slug, "annotations.manage_study")
    job = training_job_for_study(study=study, public_id=public_id)
    if job is None:
        raise Http404("No such job.")
    form = request.POST
    prompt_set = GenerationRun.PromptSet.TEST_SPLIT if form.get("prompts") == "test" else GenerationRun.PromptSet.ALL
    try:
        run = generation_run_create(
            study=study,
            system_name=form.get("system_name", ""),
            training_job=job,
            prompt_set=prompt_set,
            settings=_settings_from(form),
            actor=request.user,
        )
    except ValidationError as exc:
        messages.error(request, f"Could not start generating: {error_text(exc)}")
        return redirect("job-detail", slug=study.slug, public_id=job.public_id)
    messages.success(request, "Generation queued.")
    return redirect("generation-run-detail", slug=study.slug, public_id=run.public_id)


@login_required
@require_GET
def generation_run_detail(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug)
    run = _run_or_404(study, public_id)
    context = {
        "study": study,
        "run": run,
        "progress": generation_run_progress(run),
        "finished": run.status in FINISHED,
        "detail_url": reverse("api-generation-run-detail", kwargs={"slug": study.slug, "public_id": run.public_id}),
    }
    return render(request, "generation/detail.html", context)


@login_required
@require_POST
def generation_run_cancel_view(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    run = _run_or_404(study, public_id)
    try:
        generation_run_cancel(run=run, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Cancel requested: the run stops before its next batch and keeps what it wrote.")
    return redirect("generation-run-detail", slug=study.slug, public_id=run.public_id)


@login_required
def followup_create(request: HttpRequest, slug: str) -> HttpResponse:
    """The "Create follow-up study" form: systems (checkboxes), prompts (all shared, a generation run's, or an
    export's test split), slug, title, carry clinicians."""
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    form = request.POST if request.method == "POST" else request.GET
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        try:
            run = None
            if form.get("generation_run"):
                run = generation_run_for_study(study=study, public_id=form["generation_run"])
                if run is None:
                    raise ValidationError({"generation_run": ["No such generation run in this study."]})
            created = followup_study_create(
                source=study,
                slug=form.get("slug", ""),
                title=form.get("title", ""),
                system_names=form.getlist("systems"),
                generation_run=run,
                export=_export_from(study, form.get("export", "")),
                carry_clinicians="carry_clinicians" in form,
                actor=request.user,
            )
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            messages.success(request, f"Follow-up study {created.slug} created; review its screening, then open it.")
            return redirect("study-detail", slug=created.slug)
    context = {
        "study": study,
        "systems": System.objects.filter(study=study).order_by("name"),
        "runs": generation_runs_for_study(study=study).filter(status=JobStatus.SUCCEEDED)[:100],
        "exports": PreferenceExport.objects.filter(study=study, status=JobStatus.SUCCEEDED).order_by("-created_at"),
        "chosen": set(form.getlist("systems")),
        "form": form,
        "errors": errors,
    }
    return render(request, "generation/followup.html", context, status=400 if errors else 200)


urlpatterns = [
    path("studies/<slug:slug>/generation/", generation_run_list, name="generation-run-list"),
    path("studies/<slug:slug>/generation/<uuid:public_id>/", generation_run_detail, name="generation-run-detail"),
    path(
        "studies/<slug:slug>/generation/<uuid:public_id>/cancel",
        generation_run_cancel_view,
        name="generation-run-cancel",
    ),
    path("studies/<slug:slug>/jobs/<uuid:public_id>/generate", generation_run_from_job, name="job-generate"),
    path("studies/<slug:slug>/followup/", followup_create, name="followup-create"),
]
