"""AI judge pages: the study's judges (add an LLM or reward-model judge), a judge's settings and template,
its runs with progress and cancel. Researchers of the study only; everyone else gets 404. API keys are
never shown: pages say where the key comes from."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from annotations.models import JobStatus, Judge, JudgeRun, Study, TrainingJob
from annotations.services.judging import (
    judge_for_study,
    judge_key_source,
    judge_run_cancel,
    judge_run_create,
    judge_run_for_study,
    judge_runs_for_study,
    judge_template_default,
    judge_template_revise,
    judges_for_study,
    llm_judge_create,
    reward_judge_create,
)
from annotations.services.studies import study_criteria
from annotations.views.common import error_dict, study_for


def _judge_or_404(study: Study, judge_id: int) -> Judge:
    judge = judge_for_study(study=study, judge_id=judge_id)
    if judge is None:
        raise Http404("No such judge.")
    return judge


def _int(value: str, default: int, field: str) -> int:
    try:
        return int(value) if str(value).strip() else default
    except (TypeError, ValueError):
        raise ValidationError({field: ["A whole number."]}) from None


def _create_from_form(request: HttpRequest, study: Study) -> Judge:
    form = request.POST
    if form.get("kind") == Judge.Kind.REWARD_MODEL:
        chosen: dict[str, TrainingJob] = {}
        for criterion in study_criteria(study):
            public_id = form.get(f"reward_{criterion.key}", "")
            if not public_id:
                continue
            try:
                job = TrainingJob.objects.filter(study=study, public_id=uuid.UUID(public_id)).first()
            except ValueError:
                job = None
            if job is None:
                raise ValidationError({"reward_jobs": [f"No such job in this study for {criterion.title}."]})
            chosen[criterion.key] = job
        return reward_judge_create(study=study, name=form.get("name", ""), reward_jobs=chosen, actor=request.user)
    return llm_judge_create(
        study=study,
        name=form.get("name", ""),
        base_url=form.get("base_url", ""),
        model_name=form.get("model_name", ""),
        api_key_env=form.get("api_key_env", "").strip(),
        api_key=form.get("api_key", ""),
        persona=form.get("persona", ""),
        mode=form.get("mode", Judge.Mode.JOINT),
        swap="swap" in form,
        concurrency=_int(form.get("concurrency", ""), 8, "concurrency"),
        actor=request.user,
    )


@login_required
def judge_list(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        try:
            judge = _create_from_form(request, study)
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            messages.success(request, f"Judge {judge.name} added. Run it to judge the study's pairs.")
            return redirect("judge-detail", slug=study.slug, judge_id=judge.pk)
    reward_jobs = TrainingJob.objects.filter(
        study=study, kind=TrainingJob.Kind.REWARD, status=JobStatus.SUCCEEDED
    ).order_by("-created_at")
    criteria = study_criteria(study)
    context = {
        "study": study,
        "judges": [(judge, judge.runs.order_by("-created_at").first()) for judge in judges_for_study(study=study)],
        "runs": judge_runs_for_study(study=study)[:20],
        "criteria_jobs": [(c, [job for job in reward_jobs if job.criterion_key == c.key]) for c in criteria],
        "modes": Judge.Mode.choices,
        "form": request.POST if request.method == "POST" else {},
        "errors": errors,
    }
    return render(request, "judges/list.html", context, status=400 if errors else 200)


@login_required
def judge_detail(request: HttpRequest, slug: str, judge_id: int) -> HttpResponse:
    study = study_for(request, slug)
    judge = _judge_or_404(study, judge_id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        study = study_for(request, slug, "annotations.manage_study")
        try:
            template = judge_template_revise(
                judge=judge,
                title=request.POST.get("title", ""),
                system_prompt=request.POST.get("system_prompt", ""),
                user_prompt=request.POST.get("user_prompt", ""),
                actor=request.user,
            )
        except ValidationError as exc:
            errors = error_dict(exc)
        else:
            messages.success(request, f"Template saved as version {template.version}; the next run uses it.")
            return redirect("judge-detail", slug=study.slug, judge_id=judge.pk)
    template = judge.template or (judge_template_default() if judge.kind == Judge.Kind.LLM_ENDPOINT else None)
    reward_jobs = {}
    if judge.kind == Judge.Kind.REWARD_MODEL:
        ids = judge.config.get("reward_jobs", {})
        jobs = {job.pk: job for job in TrainingJob.objects.filter(pk__in=ids.values())}
        titles = {c.key: c.title for c in study_criteria(study)}
        reward_jobs = {titles.get(key, key): jobs.get(pk) for key, pk in ids.items()}
    context = {
        "study": study,
        "judge": judge,
        "key_source": judge_key_source(judge),
        "template": template,
        "reward_jobs": reward_jobs,
        "runs": judge.runs.order_by("-created_at"),
        "criteria": study_criteria(study),
        "form": request.POST if request.method == "POST" else {},
        "errors": errors,
    }
    return render(request, "judges/detail.html", context, status=400 if errors else 200)


@login_required
@require_POST
def judge_run_start(request: HttpRequest, slug: str, judge_id: int) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    judge = _judge_or_404(study, judge_id)
    try:
        run = judge_run_create(judge=judge, criterion_keys=request.POST.getlist("criteria") or None, actor=request.user)
    except ValidationError as exc:
        messages.error(request, "Could not start the run: " + " ".join(exc.messages))
        return redirect("judge-detail", slug=study.slug, judge_id=judge.pk)
    messages.success(request, "Run queued: a worker judges the pairs; this page follows its progress.")
    return redirect("judge-run-detail", slug=study.slug, public_id=run.public_id)


def _run_or_404(study: Study, public_id: uuid.UUID) -> JudgeRun:
    run = judge_run_for_study(study=study, public_id=public_id)
    if run is None:
        raise Http404("No such run.")
    return run


@login_required
@require_GET
def judge_run_detail(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug)
    run = _run_or_404(study, public_id)
    failures = run.judgment_calls.filter(status="failed").order_by("id")[:20]
    titles = {c.key: c.title for c in study_criteria(study)}
    context = {
        "study": study,
        "run": run,
        "judge": run.judge,
        "finished": run.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED),
        "failures": failures,
        "calibration": [
            (titles.get(key, key), figures) for key, figures in ((run.result or {}).get("calibration") or {}).items()
        ],
        "criterion_titles": [c.title for c in study_criteria(study) if c.key in run.criterion_keys],
    }
    return render(request, "judges/run.html", context)


@login_required
@require_POST
def judge_run_cancel_view(request: HttpRequest, slug: str, public_id: uuid.UUID) -> HttpResponse:
    study = study_for(request, slug, "annotations.manage_study")
    run = _run_or_404(study, public_id)
    try:
        judge_run_cancel(run=run, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Cancel requested: the run stops after the calls in flight; judged pairs are kept.")
    return redirect("judge-run-detail", slug=study.slug, public_id=run.public_id)


urlpatterns = [
    path("studies/<slug:slug>/judges/", judge_list, name="judge-list"),
    path("studies/<slug:slug>/judges/<int:judge_id>/", judge_detail, name="judge-detail"),
    path("studies/<slug:slug>/judges/<int:judge_id>/run", judge_run_start, name="judge-run-start"),
    path("studies/<slug:slug>/judge-runs/<uuid:public_id>/", judge_run_detail, name="judge-run-detail"),
    path("studies/<slug:slug>/judge-runs/<uuid:public_id>/cancel", judge_run_cancel_view, name="judge-run-cancel"),
]
