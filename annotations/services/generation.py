"""Generation runs: responses to a study's prompts from a trained job's artifact or an OpenAI-compatible
endpoint, stored as the responses of a System whose lineage points at the job (or names the endpoint).

The run row is the source of truth, like a training job's: a worker claims it with a conditional UPDATE
that sets `run_token`, and every write of the run is conditional on still holding it. Cancel is a flag
checked between batches. Every batch's responses are stored in one transaction with the progress, so
a re-queued or resumed run skips the prompts the system has already answered, and a rerun adds nothing.

torch is never imported here: annotations.training.generate imports it inside generate_responses,
which only the worker calls; the endpoint client is imported when an endpoint run executes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import traceback
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from annotations.models import (
    GenerationRun,
    JobStatus,
    PreferenceExport,
    Prompt,
    Response,
    Study,
    System,
    TrainingJob,
)
from annotations.services.audit import audit_record
from annotations.services.exports import export_prompt_ids
from annotations.services.job_state import job_cancel, job_requeue_if_held_by_dead_local_process, log_line
from annotations.services.training_jobs import heartbeat_seconds, stale_after_seconds
from annotations.services.worker_processes import (
    PID_SEPARATOR,
    Heartbeat,
    worker_identity,
)
from annotations.training.generate import GenerationSettings, artifact_problem, settings_parse

logger = logging.getLogger(__name__)

Source = GenerationRun.Source
PromptSet = GenerationRun.PromptSet
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# Kinds whose artifact is a causal LM (a reward model scores, it does not write).
GENERATING_KINDS = (TrainingJob.Kind.DPO, TrainingJob.Kind.MODPO, TrainingJob.Kind.SFT, TrainingJob.Kind.MERGE)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ERROR_CHARS = 8000
TEST_SPLIT = "test"


# ---- prompts ------------------------------------------------------------------------------------


def export_test_prompt_ids(*, export: PreferenceExport) -> set[int]:
    """Prompts of the export's study that its split puts in test (see services.exports.export_prompt_ids)."""
    return export_prompt_ids(export=export, split=TEST_SPLIT, include_unrated=True)


def generation_prompts(*, study: Study, prompt_set: str, export: PreferenceExport | None) -> list[Prompt]:
    """The prompts a run answers, in id order: all of the study's, or the test split of `export`."""
    prompts = Prompt.objects.filter(study=study).order_by("pk")
    if prompt_set == PromptSet.TEST_SPLIT:
        if export is None:
            return []
        prompts = prompts.filter(pk__in=export_test_prompt_ids(export=export))
    return list(prompts)


# ---- create -------------------------------------------------------------------------------------


def generation_run_create(
    *,
    study: Study,
    system_name: str,
    source: str = Source.TRAINING_JOB,
    training_job: TrainingJob | None = None,
    base_url: str = "",
    model_name: str = "",
    api_key_env: str = "",
    prompt_set: str = PromptSet.ALL,
    export: PreferenceExport | None = None,
    settings: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    dispatch: bool = True,
) -> GenerationRun:
    """Validate and queue a run whose responses become those of System `system_name` in `study`.

    source "training_job": a succeeded DPO/MODPO/SFT/merge job of the study (queue gpu). source
    "endpoint": `base_url`, `model_name`, and the name of the environment variable holding the API key on
    the worker (queue default). prompt_set "test_split": the test prompts of `export` (default: the job's
    export), so the follow-up never reuses training prompts. settings: GenerationSettings fields.
    A system of that name may already exist only if an earlier run of the same source made it: the new run
    then answers just the prompts it has not answered yet. Raises ValidationError naming the field.
    """
    errors: dict[str, str] = {}
    system_name = (system_name or "").strip()
    base_url, model_name, api_key_env = base_url.strip(), model_name.strip(), api_key_env.strip()
    parsed, problems = settings_parse(settings or {})
    errors.update(problems)
    if not system_name:
        errors["system_name"] = "Name the system that will hold the responses."
    elif len(system_name) > 200:
        errors["system_name"] = "At most 200 characters."
    if source == Source.TRAINING_JOB:
        errors.update(_job_problems(study, training_job))
        if export is None and training_job is not None and prompt_set == PromptSet.TEST_SPLIT:
            export = training_job.export
    elif source == Source.ENDPOINT:
        training_job = None
        errors.update(_endpoint_problems(base_url, model_name, api_key_env))
    else:
        errors["source"] = f"Expected one of {', '.join(Source.values)}."
    if prompt_set not in PromptSet.values:
        errors["prompt_set"] = f"Expected one of {', '.join(PromptSet.values)}."
    elif prompt_set == PromptSet.TEST_SPLIT:
        if export is None:
            errors["export"] = "The test split needs an export (the training job's, or one you choose)."
        elif export.study_id != study.pk:
            errors["export"] = "That export belongs to another study."
        elif export.status != JobStatus.SUCCEEDED or not export.path or not Path(export.path).is_dir():
            errors["export"] = "That export is not finished."
    else:
        export = export if export is not None and export.study_id == study.pk else None
    existing = System.objects.filter(study=study, name=system_name).first() if system_name else None
    if existing is not None and not _same_source(existing, source, training_job, base_url, model_name):
        errors["system_name"] = f"A system named {system_name!r} already exists in this study."
    if errors:
        raise ValidationError({name: [message] for name, message in errors.items()})
    prompts = generation_prompts(study=study, prompt_set=prompt_set, export=export)
    if not prompts:
        field = "export" if prompt_set == PromptSet.TEST_SPLIT else "prompt_set"
        raise ValidationError({field: ["There are no prompts to answer in that set."]})

    run = GenerationRun(
        study=study,
        source=source,
        training_job=training_job,
        base_url=base_url if source == Source.ENDPOINT else "",
        model_name=model_name if source == Source.ENDPOINT else (training_job.base_model if training_job else ""),
        api_key_env=api_key_env if source == Source.ENDPOINT else "",
        prompt_set=prompt_set,
        export=export,
        system_name=system_name,
        generation_settings=parsed.to_dict(),
        total_prompts=len(prompts),
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    with transaction.atomic():
        system = existing
        if system is None:
            system = System(
                study=study, name=system_name, description=_system_description(run), training_job=training_job
            )
            system.full_clean()
            system.save()
        run.system = system
        run.save()
        audit_record(
            actor=actor,
            action="generation_run.create",
            study=study,
            obj=run,
            data={
                "source": source,
                "training_job": str(training_job.public_id) if training_job else None,
                "endpoint": {"base_url": base_url, "model": model_name} if source == Source.ENDPOINT else None,
                "prompt_set": prompt_set,
                "export": str(export.public_id) if export else None,
                "system": system_name,
                "system_created": existing is None,
                "settings": parsed.to_dict(),
                "prompts": len(prompts),
            },
        )
        if dispatch:
            _dispatch(run)
    return run


def _job_problems(study: Study, job: TrainingJob | None) -> dict[str, str]:
    if job is None:
        return {"training_job": "Choose the succeeded training job whose model answers."}
    if job.study_id != study.pk:
        return {"training_job": "That job belongs to another study."}
    if job.status != JobStatus.SUCCEEDED:
        return {"training_job": "Only a succeeded job can generate responses."}
    if job.kind not in GENERATING_KINDS:
        return {"training_job": f"A {job.get_kind_display()} job's model does not write responses."}
    problem = artifact_problem(job.artifacts_path)
    return {"training_job": f"The job's artifact cannot be loaded: {problem}."} if problem else {}


def _endpoint_problems(base_url: str, model_name: str, api_key_env: str) -> dict[str, str]:
    errors = {}
    try:
        URLValidator(schemes=["http", "https"])(base_url)
    except ValidationError:
        errors["base_url"] = "Give the endpoint's base URL (http or https), e.g. https://host/v1."
    if not model_name:
        errors["model_name"] = "Name the model the endpoint serves."
    elif len(model_name) > 200:
        errors["model_name"] = "At most 200 characters."
    if api_key_env and not ENV_NAME.match(api_key_env):
        errors["api_key_env"] = "The name of an environment variable (letters, digits, underscores)."
    return errors


def _same_source(system: System, source: str, job: TrainingJob | None, base_url: str, model_name: str) -> bool:
    """Whether an existing system was filled by an earlier run of this very source (so a new run resumes it)."""
    runs = GenerationRun.objects.filter(system=system, source=source)
    if source == Source.TRAINING_JOB:
        return job is not None and runs.filter(training_job=job).exists()
    return runs.filter(base_url=base_url, model_name=model_name).exists()


def _system_description(run: GenerationRun) -> str:
    settings = run.generation_settings
    knobs = (
        f"max_new_tokens {settings['max_new_tokens']}, temperature {settings['temperature']}, seed {settings['seed']}"
    )
    prompts = "all prompts" if run.prompt_set == PromptSet.ALL else f"test split of export {run.export.public_id}"
    if run.source == Source.TRAINING_JOB:
        job = run.training_job
        origin = f"{job.get_kind_display()} job {job.public_id} (base model {job.base_model}, {job.artifacts_path})"
    else:
        origin = f"model {run.model_name} at endpoint {run.base_url}"
    return f"Generated by run {run.public_id} from {origin}; {prompts}; {knobs}."


def _dispatch(run: GenerationRun) -> None:
    """Send the task after commit, to the queue the source needs: a model on a GPU, or HTTP calls."""
    from annotations.tasks import generation_run_execute

    queue = "gpu" if run.source == Source.TRAINING_JOB else "default"
    run_id = run.pk
    transaction.on_commit(lambda: generation_run_execute.apply_async(args=[run_id], queue=queue))


# ---- cancel -------------------------------------------------------------------------------------


def generation_run_cancel(*, run: GenerationRun, actor: AbstractBaseUser | None) -> GenerationRun:
    """Cancel a queued run at once; ask a running one to stop before its next batch (the responses
    stored so far are kept). Raises ValidationError for a finished run."""
    job_cancel(
        row=run,
        actor=actor,
        action="generation_run.cancel",
        running_note="cancel requested; stopping before the next batch",
        finished_message="This run has already finished.",
    )
    return run


# ---- claim and run (worker side) ----------------------------------------------------------------


def max_attempts() -> int:
    return django_settings.GENERATION_MAX_ATTEMPTS


def generation_run_claim(*, run_id: int, worker: str) -> uuid.UUID | None:
    """Take the run: returns the run token, or None when there is nothing to run (running elsewhere,
    finished, cancelled while queued, or out of attempts, which fails it).

    `worker` is the Celery node name. A run still held by a process of this node that has died (a pool child
    killed: Celery requeues its message at once) is re-queued first, then claimed here."""
    job_requeue_if_held_by_dead_local_process(row_id=run_id, model=GenerationRun, node=worker, note="re-queued")
    holder = worker_identity(worker) or worker
    token = uuid.uuid4()
    now = timezone.now()
    queued = GenerationRun.objects.filter(pk=run_id, status=JobStatus.QUEUED, run_token__isnull=True)
    if queued.filter(cancel_requested=True).update(
        status=JobStatus.CANCELLED, finished_at=now, log=log_line("cancelled before it restarted")
    ):
        return None
    if queued.filter(attempts__gte=max_attempts()).update(
        status=JobStatus.FAILED,
        finished_at=now,
        error=f"Gave up after {max_attempts()} attempts (GENERATION_MAX_ATTEMPTS); the responses stored are kept.",
        log=log_line("out of attempts"),
    ):
        return None
    claimed = queued.filter(cancel_requested=False).update(
        status=JobStatus.RUNNING,
        run_token=token,
        attempts=F("attempts") + 1,
        heartbeat_at=now,
        worker=holder[:200],
        started_at=now,
        error="",
        log=log_line(f"claimed by {holder}"),
    )
    return token if claimed == 1 else None


class _Lost(Exception):
    """Another run holds the row now (or it was re-queued): write nothing more."""


class _Run:
    def __init__(self, run: GenerationRun, token: uuid.UUID, *, stop_after_seconds: float | None):
        self.run = run
        self.token = token
        self.stop_reason = ""
        self.deadline = time.monotonic() + stop_after_seconds if stop_after_seconds else None

    def held(self):
        return GenerationRun.objects.filter(pk=self.run.pk, run_token=self.token, status=JobStatus.RUNNING)

    def beat(self) -> bool:
        """The heartbeat thread's write; False once the run no longer holds the row."""
        return bool(self.held().update(heartbeat_at=timezone.now()))

    def log(self, message: str) -> None:
        self.held().update(log=log_line(message))

    def should_stop(self) -> bool:
        """Checked before every batch."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stop_reason = "time"
        else:
            row = GenerationRun.objects.filter(pk=self.run.pk).values_list("run_token", "cancel_requested").first()
            if row is None or row[0] != self.token:
                self.stop_reason = "lost"
            elif row[1]:
                self.stop_reason = "cancel"
        return bool(self.stop_reason)

    def store(
        self, prompts: Sequence[Prompt], texts: Sequence[str], metas: Sequence[dict[str, Any]], done: int
    ) -> None:
        """One batch's responses and the progress, together, only while the run still holds the row."""
        system = self.run.system
        with transaction.atomic():
            if not self.held().select_for_update(no_key=True).exists():
                raise _Lost
            Response.objects.bulk_create(
                [
                    Response(
                        study_id=self.run.study_id,
                        prompt=prompt,
                        system=system,
                        # One response per system and prompt: a racing duplicate hits the unique key and is dropped.
                        external_id=f"gen-{system.pk}-{prompt.external_id}"[:200],
                        content=text,
                        meta={"generation_run": str(self.run.public_id), **meta},
                        content_hash=_content_hash(prompt.external_id, system.name, text),
                    )
                    for prompt, text, meta in zip(prompts, texts, metas, strict=True)
                ],
                ignore_conflicts=True,
            )
            self.held().update(done_prompts=done)

    def finish(self, status: str, message: str, **fields: Any) -> bool:
        return bool(self.held().update(status=status, finished_at=timezone.now(), log=log_line(message), **fields))

    def requeue(self, message: str) -> None:
        """Give the run back (time limit): the next claim resumes with the prompts still unanswered."""
        if self.held().update(status=JobStatus.QUEUED, run_token=None, worker="", log=log_line(message)):
            _dispatch(self.run)


def _content_hash(prompt: str, system: str, content: str) -> str:
    import hashlib

    payload = {"prompt": prompt, "system": system, "content": content, "meta": {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def generation_run_execute(*, run_id: int, worker: str, stop_after_seconds: float | None = None) -> str:
    """Claim and run a generation run to its end (or to a stop); returns what happened, for the worker's log."""
    token = generation_run_claim(run_id=run_id, worker=worker)
    if token is None:
        return "not claimed"
    run = GenerationRun.objects.select_related("study", "training_job", "export", "system").get(pk=run_id)
    handle = _Run(run, token, stop_after_seconds=stop_after_seconds)
    heartbeat = Heartbeat(handle.beat, seconds=heartbeat_seconds(), name=f"heartbeat-generation-{run_id}")
    with heartbeat:
        return _execute_claimed(run, handle)


def _execute_claimed(run: GenerationRun, handle: _Run) -> str:
    run_id = run.pk
    try:
        if run.system is None:
            raise ValueError(f"the system {run.system_name!r} of this run was deleted")
        prompts = generation_prompts(study=run.study, prompt_set=run.prompt_set, export=run.export)
        answered = set(
            Response.objects.filter(system=run.system, prompt__in=[p.pk for p in prompts]).values_list(
                "prompt_id", flat=True
            )
        )
        todo = [prompt for prompt in prompts if prompt.pk not in answered]
        handle.held().update(total_prompts=len(prompts), done_prompts=len(prompts) - len(todo))
        if answered:
            handle.log(
                f"{len(answered)} of {len(prompts)} prompts already answered by {run.system.name}; skipping them"
            )
        settings = GenerationSettings.from_dict(run.generation_settings)
        generate = _generate_with_job if run.source == Source.TRAINING_JOB else _generate_with_endpoint
        failures = generate(run, settings, todo, handle, already_done=len(prompts) - len(todo))
    except SoftTimeLimitExceeded:
        handle.requeue("soft time limit reached; re-queued, the answered prompts are kept")
        return "requeued"
    except _Lost:
        return "lost"
    except Exception as exc:
        logger.exception("generation run %s failed", run_id)
        handle.finish(JobStatus.FAILED, f"failed: {exc}", error=traceback.format_exc()[-MAX_ERROR_CHARS:])
        return "failed"

    if handle.stop_reason == "cancel":
        handle.finish(JobStatus.CANCELLED, "cancelled; the responses stored so far are kept")
        return "cancelled"
    if handle.stop_reason == "time":
        handle.requeue("time budget used; re-queued, the answered prompts are kept")
        return "requeued"
    if handle.stop_reason == "lost":
        return "lost"
    if failures:
        handle.finish(
            JobStatus.FAILED,
            f"{len(failures)} prompt(s) got no response; run again to retry just those",
            error="\n".join(failures)[-MAX_ERROR_CHARS:],
        )
        return "failed"
    handle.finish(JobStatus.SUCCEEDED, f"succeeded: {len(todo)} response(s) generated")
    return "succeeded"


def _generate_with_job(
    run: GenerationRun, settings: GenerationSettings, todo: list[Prompt], handle: _Run, *, already_done: int
) -> list[str]:
    from annotations.training.generate import generate_responses

    job = run.training_job
    done = already_done

    def on_batch(indices: list[int], texts: list[str]) -> None:
        nonlocal done
        done += len(indices)
        handle.store([todo[i] for i in indices], texts, [{}] * len(indices), done)

    result = generate_responses(
        job.artifacts_path,
        [prompt.messages for prompt in todo],
        settings,
        base_model=job.base_model or None,
        should_stop=handle.should_stop,
        on_batch=on_batch,
    )
    handle.log(f"generated {result.generated} response(s) on {result.device}")
    return []


def _generate_with_endpoint(
    run: GenerationRun, settings: GenerationSettings, todo: list[Prompt], handle: _Run, *, already_done: int
) -> list[str]:
    """Batches of `batch_size` prompts through the shared endpoint client; failed calls are left unanswered."""
    from annotations.judges.endpoint import EndpointConfig, chat_many

    api_key = ""
    if run.api_key_env:
        api_key = os.environ.get(run.api_key_env, "")
        if not api_key:
            raise ValueError(f"the environment variable {run.api_key_env} is not set on the worker")
    config = EndpointConfig(
        base_url=run.base_url,
        model=run.model_name,
        api_key=api_key,
        temperature=settings.temperature,
        seed=settings.seed,
        max_tokens=settings.max_new_tokens,
    )
    done = already_done
    failures: list[str] = []
    pending: list[tuple[Prompt, Any]] = []

    def flush() -> None:
        nonlocal done
        answered = [(prompt, result) for prompt, result in pending if result.ok and result.text.strip()]
        for prompt, result in pending:
            if not result.ok and result.error != "cancelled":
                failures.append(f"{prompt.external_id}: {result.error}")
            elif result.ok and not result.text.strip():
                failures.append(f"{prompt.external_id}: the endpoint answered with empty text")
        pending.clear()
        done += len(answered)
        handle.store(
            [prompt for prompt, _ in answered],
            [result.text.strip() for _, result in answered],
            [
                {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "latency_ms": r.latency_ms}
                for _, r in answered
            ],
            done,
        )

    def on_result(index: int, result: Any) -> None:
        # Results come back on this thread in request order, a batch at a time: store each batch as one.
        pending.append((todo[index], result))
        if len(pending) == settings.batch_size or index == len(todo) - 1:
            flush()

    chat_many(
        config,
        [[{"role": m["role"], "content": m["content"]} for m in prompt.messages] for prompt in todo],
        should_stop=handle.should_stop,
        on_result=on_result,
        batch_size=settings.batch_size,
    )
    return failures


# ---- recovery -----------------------------------------------------------------------------------


def generation_runs_recover(*, dead_worker: str = "", stale_after: timedelta | None = None) -> list[int]:
    """Re-queue running runs whose worker is gone (the next claim answers only the prompts still unanswered;
    attempts are bounded by the claim). Returns their ids.

    Gone means a heartbeat older than `stale_after` (default TRAINING_STALE_AFTER_SECONDS; the periodic pass),
    or, at a worker's start, a run still held under that worker's own node name (its previous processes died).
    """
    cutoff = timezone.now() - (stale_after if stale_after is not None else timedelta(seconds=stale_after_seconds()))
    gone = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    if dead_worker:
        gone |= Q(worker=dead_worker) | Q(worker__startswith=f"{dead_worker}{PID_SEPARATOR}")
    requeued = []
    for run in GenerationRun.objects.filter(gone, status=JobStatus.RUNNING).only("pk", "source", "run_token", "worker"):
        with transaction.atomic():
            if GenerationRun.objects.filter(gone, pk=run.pk, status=JobStatus.RUNNING, run_token=run.run_token).update(
                status=JobStatus.QUEUED,
                run_token=None,
                worker="",
                log=log_line(f"worker {run.worker or '?'} is gone (no heartbeat); re-queued"),
            ):
                requeued.append(run.pk)
                _dispatch(run)
    return requeued


# ---- reads --------------------------------------------------------------------------------------


def generation_runs_for_study(*, study: Study):
    return GenerationRun.objects.filter(study=study).select_related("training_job", "export", "system")


def generation_run_for_study(*, study: Study, public_id: uuid.UUID | str) -> GenerationRun | None:
    try:
        return generation_runs_for_study(study=study).filter(public_id=public_id).first()
    except ValidationError:
        return None


def generation_run_progress(run: GenerationRun) -> dict[str, Any]:
    return {
        "id": str(run.public_id),
        "status": run.status,
        "source": run.source,
        "training_job": str(run.training_job.public_id) if run.training_job_id else None,
        "base_url": run.base_url,
        "model_name": run.model_name,
        "api_key_env": run.api_key_env,
        "prompt_set": run.prompt_set,
        "export": str(run.export.public_id) if run.export_id else None,
        "system_name": run.system_name,
        "settings": run.generation_settings,
        "done_prompts": run.done_prompts,
        "total_prompts": run.total_prompts,
        "fraction": round(run.progress, 4),
        "cancel_requested": run.cancel_requested,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "error": run.error,
    }
