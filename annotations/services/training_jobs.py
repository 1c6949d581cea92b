"""Training jobs: launch, claim, run, cancel, recover, and the reads their pages need.

The job row is the source of truth (status, progress, heartbeat, attempts, run_token); the Celery
message only says "look at job N". A run holds the job through `run_token`, taken by a conditional
UPDATE (exactly one row changed, or someone else has it), so a job never runs twice at once, and
every write a run makes is conditional on still holding that token.

torch is never imported here: `annotations.training` imports it inside `run_training`, which only
the worker calls.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryFile
from typing import IO, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotations.models import JobStatus, PreferenceExport, Prompt, Study, System, TrainingJob, TrainingMetric
from annotations.models.survey import WeightSet
from annotations.services.audit import audit_record
from annotations.services.exports import export_prompt_ids
from annotations.services.job_state import job_cancel, job_requeue_if_held_by_dead_local_process, log_line
from annotations.services.worker_processes import PID_SEPARATOR, worker_identity
from annotations.training import TrainingSpec, TrainingSpecError, run_training, validate_spec
from annotations.training.distributed import (
    TrainingLaunchError,
    TrainingProcessDied,
    TrainingProcessFailed,
    WorkerLimits,
    run_training_launched,
)

logger = logging.getLogger(__name__)

Kind = TrainingJob.Kind
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# Spec fields that the job row holds in its own columns (or derives from its inputs); the rest are options.
IDENTITY_FIELDS = ("kind", "base_model", "criterion", "weights", "reward_models", "merge_sources", "merge_weights")
OPTION_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(TrainingSpec) if f.name not in IDENTITY_FIELDS
}
# Spec error fields as the launch form names them.
_FORM_FIELD = {"reward_models": "inputs", "merge_sources": "inputs", "merge_weights": "weights", "dataset": "export"}
MAX_ERROR_CHARS = 8000


def heartbeat_seconds() -> int:
    """How often a running job writes its heartbeat (a thread, independent of step length)."""
    return settings.TRAINING_HEARTBEAT_SECONDS


def worker_limits() -> WorkerLimits:
    """This worker's bounds for multi-process jobs, from the settings or the environment: TRAINING_MAX_CPU_PROCESSES
    (processes of one job on a machine without GPUs; 2), and for runs across machines TRAINING_MAIN_PROCESS_IP,
    TRAINING_MAIN_PROCESS_PORT and TRAINING_MACHINE_RANK. The GPU count bounds GPU runs (checked in the core)."""

    def setting(name: str, default: str) -> str:
        value = getattr(settings, name, None)
        return str(value) if value not in (None, "") else os.environ.get(name, default)

    return WorkerLimits(
        max_cpu_processes=int(setting("TRAINING_MAX_CPU_PROCESSES", "2")),
        main_process_ip=setting("TRAINING_MAIN_PROCESS_IP", ""),
        main_process_port=int(setting("TRAINING_MAIN_PROCESS_PORT", "0")),
        machine_rank=int(setting("TRAINING_MACHINE_RANK", "0")),
    )


def stale_after_seconds() -> int:
    """A running job whose heartbeat is older than this has lost its worker and is re-queued."""
    return settings.TRAINING_STALE_AFTER_SECONDS


# ---- launch -------------------------------------------------------------------------------------


def training_options_parse(raw: dict[str, Any]) -> dict[str, Any]:
    """Typed training options from form strings or JSON values; unknown keys and bad values raise
    ValidationError naming the field. Omitted options keep TrainingSpec's defaults."""
    options: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in raw.items():
        if name not in OPTION_DEFAULTS:
            errors[name] = "unknown option"
            continue
        if value is None or value == "":
            continue
        default = OPTION_DEFAULTS[name]
        try:
            options[name] = _coerce(value, type(default))
        except (TypeError, ValueError):
            errors[name] = f"expected {type(default).__name__}"
    if errors:
        raise ValidationError({name: [message] for name, message in errors.items()})
    return options


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    return str(value)


def _build_spec(
    *,
    kind: str,
    base_model: str,
    criterion: str,
    weights: dict[str, float],
    options: dict[str, Any],
    inputs: list[TrainingJob],
) -> TrainingSpec:
    """The spec of a job: one function for launch-time validation and for the run itself."""
    reward_models: dict[str, str] = {}
    merge_sources: list[str] = []
    merge_weights: list[float] = []
    spec_weights: dict[str, float] = {}
    if kind == Kind.MODPO:
        reward_models = {job.criterion_key: job.artifacts_path for job in inputs}
        spec_weights = {key: float(w) for key, w in weights.items()}
    elif kind == Kind.MERGE:
        merge_sources = [job.artifacts_path for job in inputs]
        merge_weights = [float(weights.get(str(job.public_id), 0.0)) for job in inputs]
    return TrainingSpec(
        kind=kind,
        base_model=base_model,
        criterion=criterion or None,
        weights=spec_weights,
        reward_models=reward_models,
        merge_sources=merge_sources,
        merge_weights=merge_weights,
        **options,
    )


def training_job_spec(job: TrainingJob) -> TrainingSpec:
    return _build_spec(
        kind=job.kind,
        base_model=job.base_model,
        criterion=job.criterion_key,
        weights=job.weights,
        options=job.hyperparameters,
        inputs=list(job.inputs.order_by("id")),
    )


def training_job_launch(
    *,
    study: Study,
    kind: str,
    base_model: str,
    export: PreferenceExport | None = None,
    criterion: str = "",
    weights: dict[str, float] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    inputs: Iterable[TrainingJob] = (),
    actor: AbstractBaseUser | None = None,
    dispatch: bool = True,
    weight_set: WeightSet | None = None,
) -> TrainingJob:
    """Validate and queue a training job; the task is sent after commit.

    kind: reward | dpo | modpo | sft (need `export`) or merge. modpo: `inputs` are the finished reward
    jobs of the other weighted criteria and `weights` maps every criterion to its weight. merge:
    `inputs` are the finished jobs to average and `weights` maps their public ids to weights (equal
    when omitted). The base model (and every input's output) must load offline: validate_spec runs
    here, in the web process, so a job that cannot start is refused before it is queued.
    Raises ValidationError with field errors. dispatch=False leaves it queued without a message.
    `weight_set` (a WeightSet of the study, e.g. derived from a patient survey) gives the weights instead:
    a MODPO job takes them as they are; a merge weights each input job by its criterion's weight.
    """
    inputs = list(inputs)
    weights = dict(weights or {})
    errors: dict[str, str] = {}
    if kind not in Kind.values:
        raise ValidationError({"kind": [f"Unknown kind {kind!r}; expected one of {', '.join(Kind.values)}."]})
    if weight_set is not None and weights:
        errors["weight_set"] = "Give the weights or a weight set, not both."
    elif weight_set is not None:
        weights, weight_set_error = _weights_from_set(weight_set=weight_set, study=study, kind=kind, inputs=inputs)
        if weight_set_error:
            errors["weight_set"] = weight_set_error
    options = training_options_parse(hyperparameters or {})
    resolved_base = base_model_resolve(base_model=base_model, study=study)
    suggested: dict[str, Any] = {}
    if resolved_base is None:
        errors["base_model"] = BASE_MODEL_UNAVAILABLE
    else:
        base_model = resolved_base
        try:
            suggested = {
                name: value for name, value in base_model_suggestions(base_model).items() if name not in options
            }
        except ValidationError as exc:
            errors["base_model"] = " ".join(exc.message_dict["base_model"])
        options = {**suggested, **options}  # recorded in the job as given: its page shows what it ran with
    if kind != Kind.MERGE and export is None:
        errors["export"] = "Choose the export snapshot to train on."
    if export is not None:
        if export.study_id != study.pk:
            errors["export"] = "That export belongs to another study."
        elif export.status != JobStatus.SUCCEEDED or not export.path:
            errors["export"] = "That export is not finished."
    errors.update(_input_problems(kind=kind, study=study, inputs=inputs, criterion=criterion, weights=weights))
    merge_note = ""
    if kind == Kind.MERGE and not errors:
        export, merge_note = _merge_export(export=export, inputs=inputs)
    if kind == Kind.MERGE and inputs and not weights:
        weights = {str(job.public_id): 1.0 / len(inputs) for job in inputs}
    if kind == Kind.MODPO and not weights:
        errors.setdefault("weights", "Give the weight of every criterion (they sum to 1).")
    if kind == Kind.MODPO and export is not None and not errors:
        errors.update(_split_leaks(export=export, inputs=inputs))
    if errors:
        raise ValidationError({name: [message] for name, message in errors.items()})

    spec = _build_spec(
        kind=kind, base_model=base_model, criterion=criterion, weights=weights, options=options, inputs=inputs
    )
    try:
        validate_spec(spec, dataset_dir=export.path if export is not None else None)
    except TrainingSpecError as exc:
        raise ValidationError(
            {_FORM_FIELD.get(name, name): [message] for name, message in exc.errors.items()}
        ) from None

    notes = [merge_note] if merge_note else []
    if suggested:
        taken = ", ".join(f"{name} {value}" for name, value in sorted(suggested.items()))
        notes.append(f"Settings suggested by the base model ({SUGGESTIONS_FILE}): {taken}.")
    job = TrainingJob(
        study=study,
        export=export,
        kind=kind,
        criterion_key=criterion,
        weights=weights,
        weight_set=weight_set,
        base_model=base_model,
        hyperparameters=options,
        created_by=actor if actor is not None and actor.is_authenticated else None,
        log="".join(f"{timezone.now():%Y-%m-%d %H:%M:%S} {note}\n" for note in notes),
    )
    job.artifacts_path = str(Path(settings.ARTIFACTS_ROOT) / "jobs" / str(job.public_id))
    with transaction.atomic():
        job.save()
        job.inputs.set(inputs)
        audit_record(
            actor=actor,
            action="training_job.launch",
            study=study,
            obj=job,
            data={
                "kind": kind,
                "criterion": criterion,
                "export": str(export.public_id) if export else None,
                "weight_set": weight_set.name if weight_set is not None else None,
            },
        )
        if dispatch:
            _dispatch(job.pk)
    return job


def _weights_from_set(
    *, weight_set: WeightSet, study: Study, kind: str, inputs: list[TrainingJob]
) -> tuple[dict[str, float], str]:
    """The job's weights from a weight set, or an error: MODPO takes the criterion weights as they are; a merge
    weights each input by its criterion's weight (renormalised over the inputs)."""
    if weight_set.study_id != study.pk:
        return {}, "That weight set belongs to another study."
    if kind == Kind.MODPO:
        return dict(weight_set.weights), ""
    if kind == Kind.MERGE:
        missing = [str(job.public_id) for job in inputs if job.criterion_key not in weight_set.weights]
        if missing:
            return {}, "Every input job must be trained on a criterion of the weight set."
        by_job = {str(job.public_id): float(weight_set.weights[job.criterion_key]) for job in inputs}
        total = sum(by_job.values())
        if total <= 0:
            return {}, "The weight set gives the input jobs' criteria no weight."
        return {key: value / total for key, value in by_job.items()}, ""
    return {}, "Only MODPO and merge jobs take a weight set."


# One answer for a name that does not exist and one outside the allowed places: the form must not become a way
# to learn what lies on the server's disk.
BASE_MODEL_UNAVAILABLE = (
    "No such model is available to training jobs: give a model directory under the configured model roots "
    "(MODEL_ROOTS), or the artifacts of a finished job of this study."
)


# A base model's folder may suggest its own training settings (a tiny test model needs a far larger learning
# rate than a 7B model): option -> value, taken for every option a launch leaves unset.
SUGGESTIONS_FILE = "training_defaults.json"


def base_model_suggestions(base_model_dir: str | Path) -> dict[str, Any]:
    """The training options the base model's folder suggests (SUGGESTIONS_FILE), typed; {} when it has none.
    A file that is not a JSON object of known options raises ValidationError on `base_model`, naming it."""
    path = Path(base_model_dir) / SUGGESTIONS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError({"base_model": [f"{path.name} of this model is not valid JSON ({exc})."]}) from None
    if not isinstance(raw, dict):
        raise ValidationError({"base_model": [f"{path.name} of this model must hold an object of options."]})
    try:
        return training_options_parse(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items())
        raise ValidationError({"base_model": [f"{path.name} of this model: {problems}."]}) from None


def base_models_suggesting() -> dict[str, dict[str, Any]]:
    """The models the launch forms offer that suggest settings, by name: what the forms tell researchers."""
    suggestions: dict[str, dict[str, Any]] = {}
    for name in base_models_available():
        for root in settings.MODEL_ROOTS:
            if (Path(root) / name / "config.json").is_file():
                try:
                    found = base_model_suggestions(Path(root) / name)
                except ValidationError:
                    found = {}  # the launch says what is wrong with it
                if found:
                    suggestions[name] = found
                break
    return suggestions


def suggestions_in_words() -> dict[str, str]:
    """base_models_suggesting() as the forms say it: {"tiny-chat": "learning rate 0.003, max steps 48"}."""
    return {
        name: ", ".join(f"{option.replace('_', ' ')} {value}" for option, value in sorted(options.items()))
        for name, options in base_models_suggesting().items()
    }


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def base_model_resolve(*, base_model: str, study: Study) -> str | None:
    """The real path of a base model a job of `study` may start from, else None.

    Allowed: a directory inside one of settings.MODEL_ROOTS (a relative name is looked up in each root), or
    inside the artifacts of a succeeded job of the same study. Symlinks and `..` are resolved first, and
    anything under ARTIFACTS_ROOT counts as a job's artifacts even where a model root contains it."""
    name = (base_model or "").strip()
    if not name or "\x00" in name:
        return None
    roots = [os.path.realpath(root) for root in settings.MODEL_ROOTS]
    candidates = [name] if os.path.isabs(name) else [os.path.join(root, name) for root in roots]
    artifacts_root = os.path.realpath(settings.ARTIFACTS_ROOT)
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if not os.path.isdir(real):
            continue
        if _within(real, artifacts_root):
            finished = TrainingJob.objects.filter(study=study, status=JobStatus.SUCCEEDED).exclude(artifacts_path="")
            if any(_within(real, os.path.realpath(path)) for path in finished.values_list("artifacts_path", flat=True)):
                return real
        elif any(_within(real, root) for root in roots):
            return real
    return None


def base_models_available(*, limit: int = 200) -> list[str]:
    """Model directories (holding a config.json) directly inside the configured MODEL_ROOTS, or one level
    below (organisation/model), by name relative to their root: what the training form offers."""
    found: list[str] = []
    for root in settings.MODEL_ROOTS:
        root_path = Path(root)
        if not root_path.is_dir():
            continue
        for config in sorted([*root_path.glob("*/config.json"), *root_path.glob("*/*/config.json")]):
            name = str(config.parent.relative_to(root_path))
            if name not in found:
                found.append(name)
            if len(found) >= limit:
                return found
    return found


def _input_problems(
    *, kind: str, study: Study, inputs: list[TrainingJob], criterion: str, weights: dict[str, float]
) -> dict[str, str]:
    for job in inputs:
        if job.study_id != study.pk:
            return {"inputs": "Every input must be a job of this study."}
        if job.status != JobStatus.SUCCEEDED:
            return {"inputs": f"Input job {job.public_id} has not succeeded."}
    if kind == Kind.MODPO:
        if any(job.kind != Kind.REWARD for job in inputs):
            return {"inputs": "MODPO inputs are reward-model jobs (one per other weighted criterion)."}
        criteria = [job.criterion_key for job in inputs]
        if len(set(criteria)) != len(criteria):
            return {"inputs": "Give one reward model per criterion."}
        if criterion in criteria:
            return {"inputs": "The primary criterion needs no reward model."}
    elif kind == Kind.MERGE:
        if len(inputs) < 2:
            return {"inputs": "Choose at least two finished jobs to merge."}
        unknown = set(weights) - {str(job.public_id) for job in inputs}
        if unknown:
            return {"weights": "Merge weights are keyed by the input jobs' ids."}
    elif inputs:
        return {"inputs": "Only MODPO and merge jobs take input jobs."}
    return {}


def _merge_export(*, export: PreferenceExport | None, inputs: list[TrainingJob]) -> tuple[PreferenceExport | None, str]:
    """The export a merge's policy is scored on (its test split, like a DPO job's) and a note for the job's log
    when its sources were trained on other exports. Given none, the sources' export: the first source's (in
    merge order) when they differ."""
    sources = sorted(inputs, key=lambda job: job.pk)  # the merge's order (training_job_spec)
    if export is None:
        export = next((job.export for job in sources if job.export is not None), None)
    others = [job for job in sources if job.export_id != (export.pk if export is not None else None)]
    if export is None or not others:
        return export, ""
    named = ", ".join(
        f"{str(job.public_id)[:8]} on {str(job.export.public_id)[:8] if job.export else 'no export'}" for job in others
    )
    return export, (
        f"held-out figures on the test split of export {str(export.public_id)[:8]}; sources trained on other "
        f"exports: {named}"
    )


def _split_leaks(*, export: PreferenceExport, inputs: list[TrainingJob]) -> dict[str, str]:
    """A MODPO job's reward models must not have been trained on its test prompts: the held-out figures
    would then measure memory, not preference. Compared by prompt, through both exports' split files."""
    test_prompts = export_prompt_ids(export=export, split="test", include_unrated=True)
    for job in inputs:
        if job.export is None or job.export_id == export.pk:
            continue  # the same export: a prompt lies in one split only
        leaked = test_prompts & export_prompt_ids(export=job.export, split="train")
        if leaked:
            examples = ", ".join(
                sorted(Prompt.objects.filter(pk__in=sorted(leaked)[:3]).values_list("external_id", flat=True))
            )
            return {
                "inputs": f"The {job.criterion_key} reward model (job {str(job.public_id)[:8]}) was trained on "
                f"{len(leaked)} prompt(s) in this export's test split (e.g. {examples}); use reward models "
                "trained on this export, or on an export with the same split."
            }
    return {}


def training_job_queue(hyperparameters: dict[str, Any]) -> str:
    """The Celery queue of a job: `gpu`, or with TRAINING_ROUTE_BY_GPU_COUNT on, `gpu<N>` for a job of N processes
    per machine (N > 1), so that it reaches a worker with N GPUs (docs/operations.md, "Many GPUs")."""
    route = getattr(settings, "TRAINING_ROUTE_BY_GPU_COUNT", None)
    if route is None:
        route = os.environ.get("TRAINING_ROUTE_BY_GPU_COUNT", "")
    if str(route).strip().lower() not in ("1", "true", "yes", "on"):
        return "gpu"
    processes = int(hyperparameters.get("num_processes") or 1)
    machines = int(hyperparameters.get("num_machines") or 1)
    per_machine = max(processes // max(machines, 1), 1)
    return "gpu" if per_machine == 1 else f"gpu{per_machine}"


def _dispatch(job_id: int) -> None:
    from annotations.tasks import training_job_run

    hyperparameters = TrainingJob.objects.filter(pk=job_id).values_list("hyperparameters", flat=True).first()
    queue = training_job_queue(hyperparameters or {})
    transaction.on_commit(lambda: training_job_run.apply_async(args=[job_id], queue=queue))


# ---- cancel, register ---------------------------------------------------------------------------


def training_job_cancel(*, job: TrainingJob, actor: AbstractBaseUser | None) -> TrainingJob:
    """Cancel a queued job at once; ask a running one to stop at its next step (it keeps its last
    checkpoint). Never kills the worker. Raises ValidationError for a finished job."""
    job_cancel(
        row=job,
        actor=actor,
        action="training_job.cancel",
        running_note="cancel requested; stopping at the next step",
        finished_message="This job has already finished.",
    )
    return job


def training_job_register_system(*, job: TrainingJob, name: str, actor: AbstractBaseUser | None) -> System:
    """Close the loop: a System of the job's study that points at the trained model."""
    if job.status != JobStatus.SUCCEEDED:
        raise ValidationError({"status": ["Only a succeeded job can be registered as a system."]})
    name = name.strip()
    system = System(
        study=job.study,
        name=name,
        description=f"Trained by {job.get_kind_display()} job {job.public_id} ({job.artifacts_path}).",
        training_job=job,
    )
    system.full_clean()
    with transaction.atomic():
        system.save()
        audit_record(
            actor=actor, action="training_job.register_system", study=job.study, obj=job, data={"system": name}
        )
    return system


# ---- claim and run (worker side) ----------------------------------------------------------------


def training_job_claim(*, job_id: int, worker: str) -> uuid.UUID | None:
    """Take the job for one run: returns the run token, or None when there is nothing to run
    (running elsewhere, finished, cancelled while queued, or out of attempts, which fails it).

    `worker` is the Celery node name. A job still running under a process of this node that has died (a pool
    child killed for memory: Celery requeues its message at once) is re-queued first, then claimed here."""
    job_requeue_if_held_by_dead_local_process(
        row_id=job_id, model=TrainingJob, node=worker, note="re-queued from the last checkpoint"
    )
    holder = worker_identity(worker) or worker
    token = uuid.uuid4()
    now = timezone.now()
    queued = TrainingJob.objects.filter(pk=job_id, status=JobStatus.QUEUED, run_token__isnull=True)
    if queued.filter(cancel_requested=True).update(
        status=JobStatus.CANCELLED, finished_at=now, log=log_line("cancelled before it restarted")
    ):
        return None
    if queued.filter(attempts__gte=F("max_attempts")).update(
        status=JobStatus.FAILED,
        finished_at=now,
        error="Gave up: every attempt allowed (max_attempts) was used; the last checkpoint is kept.",
        log=log_line("out of attempts"),
    ):
        return None
    claimed = queued.filter(attempts__lt=F("max_attempts"), cancel_requested=False).update(
        status=JobStatus.RUNNING,
        run_token=token,
        attempts=F("attempts") + 1,
        heartbeat_at=now,
        worker=holder[:200],
        started_at=now,
        log=log_line(f"claimed by {holder}"),
    )
    return token if claimed == 1 else None


class _Run:
    """One claimed run of a job: the trainer's stop and report callbacks, and a heartbeat thread."""

    def __init__(self, job_id: int, token: uuid.UUID, *, stop_after_seconds: float | None):
        self.job_id = job_id
        self.token = token
        self.stop_reason = ""
        self.deadline = time.monotonic() + stop_after_seconds if stop_after_seconds else None
        self._lost = threading.Event()
        self._done = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-job-{job_id}", daemon=True)

    def held(self):
        return TrainingJob.objects.filter(pk=self.job_id, run_token=self.token, status=JobStatus.RUNNING)

    def start(self) -> None:
        self._heartbeat.start()

    def close(self) -> None:
        self._done.set()
        self._heartbeat.join(timeout=30)

    def _beat(self) -> None:
        # A thread rather than the step callback: loading a model or a long evaluation must not look like a dead worker.
        try:
            while not self._done.wait(heartbeat_seconds()):
                try:
                    if not self.held().update(heartbeat_at=timezone.now()):
                        self._lost.set()
                        return
                except DatabaseError:
                    logger.exception("heartbeat of training job %s failed; retrying", self.job_id)
                    connection.close()
        finally:
            connection.close()

    def log(self, message: str) -> None:
        self.held().update(log=log_line(message))

    def should_stop(self) -> bool:
        """Checked by the trainer after every optimizer step."""
        if self._lost.is_set():
            self.stop_reason = "lost"
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self.stop_reason = "time"
        else:
            row = TrainingJob.objects.filter(pk=self.job_id).values_list("run_token", "cancel_requested").first()
            if row is None or row[0] != self.token:
                self.stop_reason = "lost"
            elif row[1]:
                self.stop_reason = "cancel"
        return bool(self.stop_reason)

    def report(self, step: int, total_steps: int, epoch: float, metrics: dict[str, float]) -> None:
        values = {key: (value if math.isfinite(value) else None) for key, value in metrics.items()}
        with transaction.atomic():
            if self.held().update(step=step, total_steps=total_steps, epoch=epoch, heartbeat_at=timezone.now()):
                TrainingMetric.objects.create(job_id=self.job_id, step=step, epoch=epoch, values=values)

    def finish(self, status: str, message: str, **fields: Any) -> bool:
        return bool(self.held().update(status=status, finished_at=timezone.now(), log=log_line(message), **fields))

    def requeue(self, message: str) -> None:
        """Give the job back (time limit): the next claim resumes from the checkpoint, attempts permitting."""
        if self.held().update(status=JobStatus.QUEUED, run_token=None, worker="", log=log_line(message)):
            _dispatch(self.job_id)


def training_job_execute(*, job_id: int, worker: str, stop_after_seconds: float | None = None) -> str:
    """Claim and run a job to its end (or to a stop); returns what happened, for the worker's log.

    Resumes from the last complete checkpoint in the artifacts folder. `stop_after_seconds`: stop
    at the next step after this long (saving a checkpoint) and re-queue, so a run ends cleanly
    before the task's soft time limit.
    """
    token = training_job_claim(job_id=job_id, worker=worker)
    if token is None:
        return "not claimed"
    job = TrainingJob.objects.select_related("export", "study").get(pk=job_id)
    run = _Run(job_id, token, stop_after_seconds=stop_after_seconds)
    run.start()
    try:
        output_dir = Path(job.artifacts_path)
        resume_step, discarded = _prepare_output_dir(output_dir)
        for name in discarded:
            run.log(f"discarded the incomplete {name} (the worker died while saving it)")
        if resume_step is not None:
            run.log(f"attempt {job.attempts}: resuming from checkpoint-{resume_step}")
        if not (output_dir / "result.json").is_file():
            # Steps after the checkpoint will be trained and reported again.
            TrainingMetric.objects.filter(job_id=job_id, step__gt=resume_step or 0).delete()
            if resume_step is not None:
                _metrics_backfill(job_id, output_dir / "metrics.jsonl", up_to_step=resume_step)
        _write_lineage(job, output_dir)
        spec = training_job_spec(job)
        dataset_dir = job.export.path if job.export is not None else None
        if spec.num_processes > 1:
            # The processes train; this one supervises: it alone writes the row (progress from rank 0's
            # reports, the heartbeat) and passes a cancel to rank 0, which has every rank stop at the same step.
            result = run_training_launched(
                spec,
                dataset_dir=dataset_dir,
                output_dir=output_dir,
                limits=worker_limits(),
                should_stop=run.should_stop,
                report=run.report,
                log=run.log,
            )
        else:
            result = run_training(
                spec, dataset_dir=dataset_dir, output_dir=output_dir, should_stop=run.should_stop, report=run.report
            )
    except SoftTimeLimitExceeded:
        run.requeue("soft time limit reached before the run could stop; re-queued from the last checkpoint")
        return "requeued"
    except TrainingProcessDied as exc:
        # Like a lost pool child: resume from the last checkpoint; attempts bound how often (the claim fails it).
        logger.warning("training job %s: %s", job_id, exc)
        run.requeue(f"{str(exc).splitlines()[0]}; re-queued from the last checkpoint")
        return "requeued"
    except (TrainingLaunchError, TrainingProcessFailed) as exc:
        logger.warning("training job %s failed: %s", job_id, exc)
        message = str(exc)
        run.finish(JobStatus.FAILED, f"failed: {message.splitlines()[0]}", error=message[-MAX_ERROR_CHARS:])
        return "failed"
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        run.finish(JobStatus.FAILED, f"failed: {exc}", error=traceback.format_exc()[-MAX_ERROR_CHARS:])
        return "failed"
    finally:
        run.close()

    if result.status == "completed":
        run.finish(
            JobStatus.SUCCEEDED,
            f"succeeded at step {result.global_step}",
            result=result.to_dict(),
            step=result.global_step,
            total_steps=result.total_steps,
        )
        return "succeeded"
    if run.stop_reason == "cancel":
        run.finish(
            JobStatus.CANCELLED, f"cancelled at step {result.global_step}; checkpoint kept", result=result.to_dict()
        )
        return "cancelled"
    if run.stop_reason == "time":
        run.requeue(f"time budget used at step {result.global_step}; checkpoint saved, re-queued")
        return "requeued"
    return "lost"  # another run holds the job now; write nothing


def _metrics_backfill(job_id: int, metrics_file: Path, *, up_to_step: int) -> int:
    """Record the steps up to the checkpoint that metrics.jsonl holds but the database does not; returns how many
    rows were added. A multi-process run's rank 0 writes metrics.jsonl at once but its supervisor passes the lines
    on a moment later, so a worker that died in between left steps that the resumed run will not train again."""
    if not metrics_file.is_file():
        return 0
    recorded = set(TrainingMetric.objects.filter(job_id=job_id).values_list("step", flat=True))
    missing = []
    for line in metrics_file.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
            step = int(event.pop("step"))
            epoch = float(event.pop("epoch") or 0.0)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a line cut short by the death
        if 0 < step <= up_to_step and step not in recorded:
            values = {k: (v if isinstance(v, int | float) and math.isfinite(v) else None) for k, v in event.items()}
            missing.append(TrainingMetric(job_id=job_id, step=step, epoch=epoch, values=values))
    TrainingMetric.objects.bulk_create(missing)
    return len(missing)


def _prepare_output_dir(output_dir: Path) -> tuple[int | None, list[str]]:
    """The step of the last complete checkpoint (None when there is none), after discarding
    incomplete ones: the trainer writes trainer_state.json last, so a checkpoint without a
    readable one was cut short by a dead worker and must not be resumed from."""
    if not output_dir.is_dir():
        return None, []
    discarded = []
    steps = []
    for checkpoint in output_dir.glob("checkpoint-*"):
        try:
            step = int(checkpoint.name.split("-")[-1])
            json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        except (ValueError, OSError):
            discarded.append(checkpoint.name)
            shutil.rmtree(checkpoint, ignore_errors=True)
            continue
        steps.append(step)
    return (max(steps) if steps else None), discarded


def _write_lineage(job: TrainingJob, output_dir: Path) -> None:
    """job.json in the artifacts folder: what the job was and what it trained on, for whoever holds the zip."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "job.json").write_text(json.dumps(training_job_lineage(job), indent=2, default=str), encoding="utf-8")


# ---- recovery -----------------------------------------------------------------------------------


def training_jobs_recover(*, stale_after: timedelta | None = None, dead_worker: str = "") -> list[int]:
    """Re-queue running jobs whose worker is gone; returns their ids.

    Gone means a heartbeat older than `stale_after` (default TRAINING_STALE_AFTER_SECONDS), or, at a
    worker's start, a job still held under that worker's own node name (its previous processes died).
    A lost pool child is caught sooner, by the claim of its requeued message; this pass covers a whole
    machine or worker that died. A redelivery later is harmless, since the claim refuses it.
    """
    cutoff = timezone.now() - (stale_after if stale_after is not None else timedelta(seconds=stale_after_seconds()))
    gone = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    if dead_worker:
        gone |= Q(worker=dead_worker) | Q(worker__startswith=f"{dead_worker}{PID_SEPARATOR}")
    requeued = []
    for job_id, token, worker in TrainingJob.objects.filter(gone, status=JobStatus.RUNNING).values_list(
        "pk", "run_token", "worker"
    ):
        # Conditional on the same token and staleness: a run that just beat or finished is left alone.
        with transaction.atomic():
            if (
                TrainingJob.objects.filter(gone, pk=job_id, status=JobStatus.RUNNING, run_token=token).update(
                    status=JobStatus.QUEUED,
                    run_token=None,
                    worker="",
                    log=log_line(f"worker {worker or '?'} is gone (no heartbeat); re-queued"),
                )
                == 1
            ):
                requeued.append(job_id)
                _dispatch(job_id)
    return requeued


# ---- reads --------------------------------------------------------------------------------------


def training_jobs_for_study(*, study: Study):
    return TrainingJob.objects.filter(study=study).select_related("export").order_by("-created_at")


def training_job_for_study(*, study: Study, public_id: uuid.UUID | str) -> TrainingJob | None:
    return TrainingJob.objects.filter(study=study, public_id=public_id).select_related("export", "study").first()


def training_job_progress(job: TrainingJob) -> dict[str, Any]:
    fraction = job.step / job.total_steps if job.total_steps else (1.0 if job.status == JobStatus.SUCCEEDED else 0.0)
    return {
        "id": str(job.public_id),
        "status": job.status,
        "kind": job.kind,
        "criterion": job.criterion_key,
        "step": job.step,
        "total_steps": job.total_steps,
        "epoch": job.epoch,
        "fraction": round(min(fraction, 1.0), 4),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cancel_requested": job.cancel_requested,
        "heartbeat_at": job.heartbeat_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": job.error,
        "result": job.result,
    }


def training_job_metrics(job: TrainingJob) -> list[dict[str, Any]]:
    return [
        {"step": step, "epoch": epoch, "values": values}
        for step, epoch, values in job.metrics.order_by("step", "id").values_list("step", "epoch", "values")
    ]


def training_job_lineage(job: TrainingJob) -> dict[str, Any]:
    """job → dataset snapshot → study, with the agreement recorded in the export's manifest."""
    export = job.export
    manifest = export.manifest if export is not None else {}
    return {
        "job": {
            "id": str(job.public_id),
            "kind": job.kind,
            "criterion": job.criterion_key,
            "weights": job.weights,
            "base_model": job.base_model,
            "hyperparameters": job.hyperparameters,
        },
        "inputs": [
            {"id": str(i.public_id), "kind": i.kind, "criterion": i.criterion_key, "status": i.status}
            for i in job.inputs.order_by("id")
        ],
        "export": None
        if export is None
        else {
            "id": str(export.public_id),
            "format": export.format,
            "file_format": export.file_format,
            "created_at": export.created_at,
            "criteria": manifest.get("criteria", export.criterion_keys),
            "rubric_versions": manifest.get("rubric_versions", {}),
            "rows": manifest.get("rows", {}),
            "raters": manifest.get("raters", {}),
            "policy": manifest.get("policy", export.policy),
        },
        "study": {"slug": job.study.slug, "title": job.study.title},
        "agreement": manifest.get("agreement") or {},
        "weight_set": None
        if job.weight_set is None
        else {
            "id": job.weight_set.pk,
            "name": job.weight_set.name,
            "method": job.weight_set.method,
            "weights": job.weight_set.weights,
            "derivation": job.weight_set.derivation,
        },
    }


def training_job_artifacts_zip(job: TrainingJob) -> IO[bytes]:
    """A zip of the artifacts folder in an anonymous temporary file (gone when closed), at position 0.
    Weights are stored, not deflated: they do not compress and models are large."""
    root = Path(job.artifacts_path)
    if not root.is_dir():
        raise FileNotFoundError(job.artifacts_path)
    out = TemporaryFile()
    with zipfile.ZipFile(out, "w", allowZip64=True) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if ".launch" in path.relative_to(root).parts:
                continue  # a running multi-process job's control files
            stored = path.suffix in (".safetensors", ".bin", ".pt", ".pth")
            archive.write(
                path,
                arcname=str(path.relative_to(root)),
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
    out.seek(0)
    return out
