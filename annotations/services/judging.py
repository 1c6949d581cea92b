"""AI judges: configure them per study, run them over the study's comparisons, store every call.

A judge run is resumable and idempotent: a comparison with a stored judgment on every criterion asked is
skipped, calls already answered are reused, and judgments are upserted, so running again changes nothing.
LLM judges go to the `default` queue (they wait on HTTP), reward-model judges to `gpu`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from annotations.judges import prompting
from annotations.judges.endpoint import CallResult, EndpointConfig, EndpointSession
from annotations.models import (
    Comparison,
    Criterion,
    JobStatus,
    Judge,
    JudgeRun,
    JudgeTemplate,
    Judgment,
    JudgmentCall,
    Rater,
    Rating,
    Study,
    TrainingJob,
)
from annotations.services.audit import audit_record
from annotations.services.job_state import job_cancel, log_line
from annotations.services.studies import study_criteria
from annotations.services.worker_processes import held_by_dead_local_process, worker_identity

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# A running judge run whose heartbeat is older than this belongs to a dead worker and may be taken over.
STALE_RUN_SECONDS = 120
MAX_CONCURRENCY = 256


# ---- secrets ---------------------------------------------------------------------------------------


def _fernet() -> Fernet:
    # Derived from SECRET_KEY: rotating the secret key makes stored judge keys unreadable (documented).
    digest = hashlib.sha256(b"evalplatform judge api key\0" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def api_key_encrypt(api_key: str) -> str:
    return _fernet().encrypt(api_key.encode()).decode()


def judge_api_key(judge: Judge) -> str:
    """The judge's API key, for the worker's call only. Raises ValidationError naming what is missing."""
    if judge.api_key_env:
        value = os.environ.get(judge.api_key_env)
        if value is None:
            raise ValidationError(
                {"api_key_env": [f"The environment variable {judge.api_key_env} is not set where the judge runs."]}
            )
        return value
    if judge.api_key_encrypted:
        try:
            return _fernet().decrypt(judge.api_key_encrypted.encode()).decode()
        except InvalidToken:
            raise ValidationError(
                {"api_key": ["The stored API key cannot be decrypted (SECRET_KEY changed?); enter it again."]}
            ) from None
    return ""


def judge_key_source(judge: Judge) -> str:
    """Where the key comes from, in words that never contain the key."""
    if judge.api_key_env:
        return f"environment variable {judge.api_key_env}"
    if judge.api_key_encrypted:
        return "stored encrypted"
    return "none"


# ---- templates -------------------------------------------------------------------------------------


def judge_template_default() -> JudgeTemplate:
    """The current version of the default template, created on first use."""
    current = JudgeTemplate.objects.filter(key=prompting.DEFAULT_TEMPLATE_KEY).order_by("-version").first()
    if current is not None:
        return current
    template, _ = JudgeTemplate.objects.get_or_create(
        key=prompting.DEFAULT_TEMPLATE_KEY,
        version=1,
        defaults={
            "title": prompting.DEFAULT_TEMPLATE_TITLE,
            "system_prompt": prompting.DEFAULT_SYSTEM_PROMPT,
            "user_prompt": prompting.DEFAULT_USER_PROMPT,
        },
    )
    return template


def judge_template_revise(
    *, judge: Judge, title: str, system_prompt: str, user_prompt: str, actor: AbstractBaseUser | None
) -> JudgeTemplate:
    """A new version of the judge's template (versions are never edited in place); the judge uses it next."""
    problems = prompting.template_check(system_prompt, user_prompt)
    if problems:
        raise ValidationError({"user_prompt": problems})
    current = judge.template or judge_template_default()
    with transaction.atomic():
        latest = JudgeTemplate.objects.select_for_update().filter(key=current.key).order_by("-version").first()
        template = JudgeTemplate.objects.create(
            key=current.key,
            version=(latest.version if latest else 0) + 1,
            title=title.strip() or current.title,
            system_prompt=system_prompt,
            user_prompt=user_prompt,
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        Judge.objects.filter(pk=judge.pk).update(template=template)
        audit_record(
            actor=actor,
            action="judge.template_revise",
            study=judge.study,
            obj=judge,
            data={"template": template.key, "version": template.version},
        )
    judge.template = template
    return template


# ---- configuring judges ----------------------------------------------------------------------------


def _judge_rater(*, study: Study, name: str) -> Rater:
    label = name
    if Rater.objects.filter(kind=Rater.Kind.JUDGE, label=label).exists():
        # Rater labels are global; a judge of another study (or an imported one) may hold the plain name.
        label = f"{name} ({study.slug})"
        if Rater.objects.filter(kind=Rater.Kind.JUDGE, label=label).exists():
            raise ValidationError({"name": [f"A judge named {name!r} already exists in this study."]})
    return Rater.objects.create(kind=Rater.Kind.JUDGE, label=label)


def _clean_name(study: Study, name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the judge a name."]})
    if len(name) > 100:
        raise ValidationError({"name": ["At most 100 characters."]})
    if Judge.objects.filter(study=study, name=name).exists():
        raise ValidationError({"name": [f"A judge named {name!r} already exists in this study."]})
    return name


def llm_judge_create(
    *,
    study: Study,
    name: str,
    base_url: str,
    model_name: str,
    api_key_env: str = "",
    api_key: str = "",
    persona: str = "",
    mode: str = Judge.Mode.JOINT,
    swap: bool = True,
    concurrency: int = 8,
    timeout_seconds: int = 120,
    max_attempts: int = 3,
    actor: AbstractBaseUser | None,
) -> Judge:
    """An LLM judge behind an OpenAI-compatible endpoint. The key is read from `api_key_env` on the
    worker, or stored encrypted; it is never shown, logged, exported or audited."""
    name = _clean_name(study, name)
    errors: dict[str, list[str]] = {}
    if api_key_env and api_key:
        errors["api_key"] = ["Give either an environment variable or a key, not both."]
    if api_key_env and not ENV_NAME.match(api_key_env):
        errors["api_key_env"] = ["An environment variable name: letters, digits and _, not starting with a digit."]
    if not 1 <= int(concurrency) <= MAX_CONCURRENCY:
        errors["concurrency"] = [f"From 1 to {MAX_CONCURRENCY}."]
    if not 1 <= int(timeout_seconds) <= 3600:
        errors["timeout_seconds"] = ["From 1 to 3600 seconds."]
    if not 1 <= int(max_attempts) <= 10:
        errors["max_attempts"] = ["From 1 to 10."]
    if mode not in Judge.Mode.values:
        errors["mode"] = [f"One of {', '.join(Judge.Mode.values)}."]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        judge = Judge(
            study=study,
            name=name,
            kind=Judge.Kind.LLM_ENDPOINT,
            base_url=(base_url or "").strip(),
            model_name=(model_name or "").strip(),
            api_key_env=api_key_env,
            api_key_encrypted=api_key_encrypt(api_key) if api_key else "",
            template=judge_template_default(),
            persona=persona or "",
            mode=mode,
            swap=bool(swap),
            concurrency=int(concurrency),
            timeout_seconds=int(timeout_seconds),
            max_attempts=int(max_attempts),
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        judge.rater = Rater(kind=Rater.Kind.JUDGE, label="-")  # placeholder for full_clean; replaced below
        judge.full_clean(exclude=["rater", "template", "created_by"])
        if not judge.model_name:
            raise ValidationError({"model_name": ["Name the model the endpoint serves."]})
        judge.rater = _judge_rater(study=study, name=name)
        judge.save()
        audit_record(
            actor=actor,
            action="judge.create",
            study=study,
            obj=judge,
            data={
                "name": name,
                "kind": judge.kind,
                "base_url": judge.base_url,
                "model": judge.model_name,
                "key": judge_key_source(judge),
            },
        )
    return judge


def reward_judge_create(
    *, study: Study, name: str, reward_jobs: dict[str, TrainingJob], actor: AbstractBaseUser | None
) -> Judge:
    """A judge made of the study's succeeded reward-model jobs, one per criterion it judges."""
    name = _clean_name(study, name)
    keys = {c.key for c in study_criteria(study)}
    errors = []
    if not reward_jobs:
        errors.append("Choose at least one succeeded reward-model job.")
    for key, job in reward_jobs.items():
        if key not in keys:
            errors.append(f"{key!r} is not a criterion of this study.")
        elif job.study_id != study.pk or job.kind != TrainingJob.Kind.REWARD or job.status != JobStatus.SUCCEEDED:
            errors.append(f"The job for {key!r} is not a succeeded reward-model job of this study.")
        elif job.criterion_key != key:
            errors.append(f"The job for {key!r} was trained on {job.criterion_key!r}.")
    if errors:
        raise ValidationError({"reward_jobs": errors})
    with transaction.atomic():
        judge = Judge.objects.create(
            study=study,
            name=name,
            kind=Judge.Kind.REWARD_MODEL,
            rater=_judge_rater(study=study, name=name),
            swap=False,
            config={"reward_jobs": {key: job.pk for key, job in sorted(reward_jobs.items())}},
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        audit_record(
            actor=actor,
            action="judge.create",
            study=study,
            obj=judge,
            data={
                "name": name,
                "kind": judge.kind,
                "reward_jobs": {k: str(j.public_id) for k, j in reward_jobs.items()},
            },
        )
    return judge


def judges_for_study(*, study: Study):
    return Judge.objects.filter(study=study).select_related("rater", "template").order_by("name")


def judge_for_study(*, study: Study, judge_id: Any) -> Judge | None:
    try:
        return judges_for_study(study=study).get(pk=int(judge_id))
    except (Judge.DoesNotExist, ValueError, TypeError, OverflowError):
        return None


def judge_by_name(*, study: Study, name: str) -> Judge | None:
    return judges_for_study(study=study).filter(name=name).first()


# ---- runs ------------------------------------------------------------------------------------------


def judge_queue(judge: Judge) -> str:
    return "gpu" if judge.kind == Judge.Kind.REWARD_MODEL else "default"


def judge_run_create(
    *,
    judge: Judge,
    criterion_keys: Iterable[str] | None = None,
    actor: AbstractBaseUser | None,
    dispatch: bool = True,
) -> JudgeRun:
    """Queue a run of the judge over the study's comparisons (all criteria, or those named)."""
    if judge.kind == Judge.Kind.IMPORTED or judge.study_id is None:
        raise ValidationError({"judge": ["Imported judges cannot be run; their judgments come from files."]})
    study = judge.study
    available = [c.key for c in study_criteria(study)]
    if judge.kind == Judge.Kind.REWARD_MODEL:
        available = [k for k in available if k in judge.config.get("reward_jobs", {})]
    keys = list(criterion_keys or [])
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise ValidationError({"criteria": [f"Not judged by this judge in this study: {', '.join(unknown)}."]})
    keys = [k for k in available if not keys or k in keys]
    if not keys:
        raise ValidationError({"criteria": ["This judge has no criterion of the study to judge."]})
    if JudgeRun.objects.filter(judge=judge, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists():
        raise ValidationError({"judge": ["This judge is already running; wait for it or cancel it."]})
    with transaction.atomic():
        run = JudgeRun.objects.create(
            judge=judge,
            study=study,
            criterion_keys=keys,
            total_comparisons=Comparison.objects.filter(study=study, excluded=False).count(),
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        audit_record(
            actor=actor, action="judge_run.create", study=study, obj=run, data={"judge": judge.name, "criteria": keys}
        )
        if dispatch:
            transaction.on_commit(lambda: _dispatch(run))
    return run


def _dispatch(run: JudgeRun) -> None:
    from annotations.tasks import judge_run_execute

    judge_run_execute.apply_async(args=[run.pk], queue=judge_queue(run.judge))


def judge_run_cancel(*, run: JudgeRun, actor: AbstractBaseUser | None) -> JudgeRun:
    job_cancel(
        row=run,
        actor=actor,
        action="judge_run.cancel",
        running_note="cancel requested; stopping after the calls in flight",
        finished_message="This run has already finished.",
    )
    return run


def judge_runs_for_study(*, study: Study):
    return JudgeRun.objects.filter(study=study).select_related("judge")


def judge_run_for_study(*, study: Study, public_id: Any) -> JudgeRun | None:
    try:
        return judge_runs_for_study(study=study).get(public_id=uuid.UUID(str(public_id)))
    except (JudgeRun.DoesNotExist, ValueError):
        return None


def judge_run_claim(*, run_id: int, worker: str) -> uuid.UUID | None:
    """Take the run: a queued one, or a running one whose worker died: a stale heartbeat, or held by a process
    of this node (`worker`, the Celery node name) that has exited (a pool child killed: Celery requeues its
    message at once, and this claim takes the run back without waiting for the heartbeat to go stale)."""
    token = uuid.uuid4()
    now = timezone.now()
    stale = now - timedelta(seconds=STALE_RUN_SECONDS)
    lost = Q(heartbeat_at__lt=stale)
    held = JudgeRun.objects.filter(pk=run_id, status=JobStatus.RUNNING).values_list("worker", "run_token").first()
    if held is not None and held_by_dead_local_process(held[0], worker):
        lost |= Q(worker=held[0], run_token=held[1])
    claimable = JudgeRun.objects.filter(pk=run_id, cancel_requested=False).filter(
        Q(status=JobStatus.QUEUED) | Q(lost, status=JobStatus.RUNNING)
    )
    holder = worker_identity(worker)
    taken = claimable.update(
        status=JobStatus.RUNNING,
        run_token=token,
        worker=holder[:200],
        heartbeat_at=now,
        started_at=now,
        log=log_line(f"started on {holder or 'this process'}"),
    )
    return token if taken else None


@dataclass(frozen=True)
class _Request:
    comparison_id: int
    left_is_first: bool
    criterion_key: str  # "" in joint mode


class _RunState:
    """Counters and control of one run, kept in the database as it goes."""

    def __init__(self, run: JudgeRun, token: uuid.UUID) -> None:
        self.run = run
        self.token = token

    def mine(self):
        return JudgeRun.objects.filter(pk=self.run.pk, run_token=self.token)

    def should_stop(self) -> bool:
        return not self.mine().filter(cancel_requested=False, status=JobStatus.RUNNING).exists()

    def add(self, **counts: int) -> None:
        self.mine().update(heartbeat_at=timezone.now(), **{k: F(k) + v for k, v in counts.items() if v})

    def finish(self, status: str, *, error: str = "", message: str = "", result: dict | None = None) -> None:
        fields: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "error": error[:4000]}
        if message:
            fields["log"] = log_line(message)
        if result is not None:
            fields["result"] = result
        self.mine().update(**fields)


def judge_run_execute(*, run_id: int, worker: str = "", on_progress: Callable[[JudgeRun], None] | None = None) -> str:
    """Run a judge run to its end (worker side, or a command in the foreground). Returns the final status."""
    token = judge_run_claim(run_id=run_id, worker=worker)
    if token is None:
        return JudgeRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "missing"
    run = JudgeRun.objects.select_related("judge", "judge__template", "study").get(pk=run_id)
    state = _RunState(run, token)
    try:
        if run.judge.kind == Judge.Kind.REWARD_MODEL:
            _execute_reward(run, state, on_progress)
        else:
            _execute_llm(run, state, on_progress)
    except ValidationError as error:
        state.finish(JobStatus.FAILED, error=_error_text(error), message="failed")
    except Exception as error:  # recorded on the run for the researcher; the worker goes on
        state.finish(JobStatus.FAILED, error=f"{type(error).__name__}: {error}", message="failed")
        raise
    run.refresh_from_db()
    if on_progress is not None:
        on_progress(run)
    return run.status


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


def _criteria_texts(run: JudgeRun) -> list[tuple[Criterion, prompting.CriterionText]]:
    return [
        (c, prompting.CriterionText(c.key, c.title, c.question, c.better_when, c.worse_when))
        for c in study_criteria(run.study)
        if c.key in run.criterion_keys
    ]


def _pending_comparisons(run: JudgeRun, criteria: list[Criterion]) -> list[int]:
    """Comparisons without a judgment by this judge on every criterion of the run."""
    all_ids = list(
        Comparison.objects.filter(study=run.study, excluded=False).order_by("id").values_list("id", flat=True)
    )
    judged: dict[int, int] = {}
    for comparison_id in Judgment.objects.filter(
        judge=run.judge, comparison__study=run.study, criterion__in=criteria
    ).values_list("comparison_id", flat=True):
        judged[comparison_id] = judged.get(comparison_id, 0) + 1
    return [c for c in all_ids if judged.get(c, 0) < len(criteria)]


def _execute_llm(run: JudgeRun, state: _RunState, on_progress: Callable[[JudgeRun], None] | None) -> None:
    judge = run.judge
    template = judge.template or judge_template_default()
    criteria_pairs = _criteria_texts(run)
    criteria = [c for c, _ in criteria_pairs]
    config = EndpointConfig(
        base_url=judge.base_url,
        model=judge.model_name,
        api_key=judge_api_key(judge),
        timeout_seconds=judge.timeout_seconds,
        max_attempts=judge.max_attempts,
        concurrency=judge.concurrency,
        temperature=judge.temperature,
        seed=judge.seed,
    )
    pending = _pending_comparisons(run, criteria)
    already = run.total_comparisons - len(pending)
    if already:
        state.add(done_comparisons=already)
        JudgeRun.objects.filter(pk=run.pk).update(log=log_line(f"{already} comparisons already judged; skipped"))
    orders = (True, False) if judge.swap else (True,)
    per_criterion = judge.mode == Judge.Mode.PER_CRITERION
    # Enough comparisons per batch to keep `concurrency` requests in flight while a batch is written.
    requests_per_comparison = len(orders) * (len(criteria) if per_criterion else 1)
    batch_comparisons = max(8, (judge.concurrency * 8) // requests_per_comparison)
    writer = _LlmWriter(run=run, state=state, criteria=criteria, orders=orders, per_criterion=per_criterion)

    with EndpointSession(config) as session:
        in_flight: tuple[list[_Request], Any] | None = None
        for index, start in enumerate(range(0, len(pending), batch_comparisons)):
            if state.should_stop():
                session.stop()
                break
            batch_ids = pending[start : start + batch_comparisons]
            requests, messages, validators = _build_requests(
                run, template, criteria_pairs, batch_ids, orders, per_criterion, writer.reusable(batch_ids)
            )
            future = session.submit(messages, validate=validators, response_format=prompting.JSON_RESPONSE_FORMAT)
            if index == 0:
                # Fail fast when the endpoint cannot be reached at all, rather than after every comparison.
                results = future.result()
                writer.write(requests, results)
                _report(run, on_progress)
                if results and all(r.unreachable for r in results):
                    state.finish(
                        JobStatus.FAILED,
                        error=f"The endpoint {judge.base_url} could not be reached: {results[0].error}",
                        message="failed: endpoint unreachable",
                    )
                    return
                continue
            # The next batch is in flight while this one is written.
            if in_flight is not None:
                writer.write(in_flight[0], in_flight[1].result())
                _report(run, on_progress)
            in_flight = (requests, future)
        if in_flight is not None:
            writer.write(in_flight[0], in_flight[1].result())
            _report(run, on_progress)
    run.refresh_from_db()
    if run.cancel_requested:
        state.finish(JobStatus.CANCELLED, message="cancelled")
    elif run.done_comparisons == 0 and run.failed_comparisons > 0:
        state.finish(JobStatus.FAILED, error=f"Every call failed. First error: {writer.first_error}", message="failed")
    else:
        message = f"finished: {run.done_comparisons} judged, {run.failed_comparisons} failed"
        state.finish(JobStatus.SUCCEEDED, message=message)


def _report(run: JudgeRun, on_progress: Callable[[JudgeRun], None] | None) -> None:
    if on_progress is not None:
        run.refresh_from_db()
        on_progress(run)


def _build_requests(
    run: JudgeRun,
    template: JudgeTemplate,
    criteria_pairs: list[tuple[Criterion, prompting.CriterionText]],
    comparison_ids: list[int],
    orders: tuple[bool, ...],
    per_criterion: bool,
    reusable: set[tuple[int, bool, str]],
) -> tuple[list[_Request], list[list[dict[str, str]]], list[Callable[[str], Any]]]:
    comparisons = (
        Comparison.objects.filter(pk__in=comparison_ids)
        .select_related("prompt", "response_first", "response_second")
        .only("id", "prompt__messages", "response_first__content", "response_second__content")
        .order_by("id")
    )
    scale_points = run.study.scale_points
    groups = [[text for _, text in criteria_pairs]]
    if per_criterion:
        groups = [[text] for _, text in criteria_pairs]
    requests: list[_Request] = []
    messages: list[list[dict[str, str]]] = []
    validators: list[Callable[[str], Any]] = []
    for comparison in comparisons:
        first, second = comparison.response_first.content, comparison.response_second.content
        for left_is_first in orders:
            for group in groups:
                key = group[0].key if per_criterion else ""
                if (comparison.pk, left_is_first, key) in reusable:
                    continue
                requests.append(_Request(comparison.pk, left_is_first, key))
                messages.append(
                    prompting.build_messages(
                        system_prompt=template.system_prompt,
                        user_prompt=template.user_prompt,
                        persona=run.judge.persona,
                        conversation=comparison.prompt.messages,
                        response_1=first if left_is_first else second,
                        response_2=second if left_is_first else first,
                        criteria=group,
                        scale_points=scale_points,
                    )
                )
                group_keys = [c.key for c in group]
                validators.append(
                    lambda text, group_keys=group_keys: prompting.parse_verdict(
                        text, keys=group_keys, scale_points=scale_points
                    )
                )
    return requests, messages, validators


class _LlmWriter:
    """Stores a batch's calls and the judgments of every comparison whose calls are now complete."""

    def __init__(
        self,
        *,
        run: JudgeRun,
        state: _RunState,
        criteria: list[Criterion],
        orders: tuple[bool, ...],
        per_criterion: bool,
    ) -> None:
        self.run = run
        self.state = state
        self.criteria = criteria
        self.orders = orders
        self.per_criterion = per_criterion
        self.template = run.judge.template or judge_template_default()
        self.first_error = ""

    def _needed(self) -> list[tuple[bool, str]]:
        keys = [c.key for c in self.criteria] if self.per_criterion else [""]
        return [(order, key) for order in self.orders for key in keys]

    def reusable(self, comparison_ids: list[int]) -> set[tuple[int, bool, str]]:
        """Calls already answered (by an earlier, interrupted run) that cover what this run asks."""
        keys = {c.key for c in self.criteria}
        reusable = set()
        for comparison_id, left_is_first, key, verdict in JudgmentCall.objects.filter(
            judge=self.run.judge, comparison_id__in=comparison_ids, status=JudgmentCall.Status.OK
        ).values_list("comparison_id", "left_is_first", "criterion_key", "verdict"):
            wanted = {key} if key else keys
            if wanted <= set(verdict):
                reusable.add((comparison_id, left_is_first, key))
        return reusable

    def write(self, requests: list[_Request], results: list[CallResult]) -> None:
        if not requests:
            return
        judge = self.run.judge
        calls = []
        for request, result in zip(requests, results, strict=True):
            if result.attempts == 0:
                continue  # cancelled before it was sent: nothing to record, a later run asks again
            verdict: prompting.Verdict | None = result.parsed if result.ok else None
            if not result.ok and not self.first_error:
                self.first_error = result.error
            calls.append(
                JudgmentCall(
                    run=self.run,
                    judge=judge,
                    comparison_id=request.comparison_id,
                    left_is_first=request.left_is_first,
                    criterion_key=request.criterion_key,
                    status=JudgmentCall.Status.OK if result.ok else JudgmentCall.Status.FAILED,
                    template=self.template,
                    template_version=self.template.version,
                    raw_output=result.text[:20000],
                    verdict={
                        key: prompting.to_canonical(value, left_is_first=request.left_is_first)
                        for key, value in verdict.values.items()
                    }
                    if verdict
                    else {},
                    reason=verdict.reason if verdict else "",
                    both_unacceptable=bool(verdict and verdict.both_unacceptable),
                    attempts=result.attempts,
                    latency_ms=result.latency_ms,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens,
                    error=result.error,
                )
            )
        comparison_ids = sorted({c.comparison_id for c in calls})
        with transaction.atomic():
            # A failed call of an earlier run is replaced by this run's attempt.
            JudgmentCall.objects.bulk_create(
                calls,
                update_conflicts=True,
                unique_fields=["judge", "comparison", "left_is_first", "criterion_key"],
                update_fields=[
                    "run",
                    "status",
                    "template",
                    "template_version",
                    "raw_output",
                    "verdict",
                    "reason",
                    "both_unacceptable",
                    "attempts",
                    "latency_ms",
                    "prompt_tokens",
                    "completion_tokens",
                    "error",
                ],
            )
            done, failed = self._write_judgments(comparison_ids, calls)
            self.state.add(
                done_comparisons=done,
                failed_comparisons=failed,
                calls=sum(c.attempts for c in calls),
                failed_calls=sum(1 for c in calls if c.status == JudgmentCall.Status.FAILED),
                prompt_tokens=sum(c.prompt_tokens for c in calls),
                completion_tokens=sum(c.completion_tokens for c in calls),
            )

    def _write_judgments(self, comparison_ids: list[int], written: list[JudgmentCall]) -> tuple[int, int]:
        needed = self._needed()
        calls: dict[int, dict[tuple[bool, str], JudgmentCall]] = {}
        for call in written:
            calls.setdefault(call.comparison_id, {})[(call.left_is_first, call.criterion_key)] = call
        # Calls stored earlier (reused from an interrupted run) are read back; the batch's own are at hand.
        incomplete = [c for c in comparison_ids if any(n not in calls.get(c, {}) for n in needed)]
        if incomplete:
            for call in JudgmentCall.objects.filter(judge=self.run.judge, comparison_id__in=incomplete).only(
                "comparison_id", "left_is_first", "criterion_key", "status", "verdict", "reason", "both_unacceptable"
            ):
                calls.setdefault(call.comparison_id, {}).setdefault((call.left_is_first, call.criterion_key), call)
        judgments = []
        done = failed = 0
        for comparison_id in comparison_ids:
            found = calls.get(comparison_id, {})
            if any(found.get(n) is None or found[n].status != JudgmentCall.Status.OK for n in needed):
                failed += 1
                continue
            done += 1
            for criterion in self.criteria:
                per_order = []
                for order in self.orders:
                    call = found[(order, criterion.key if self.per_criterion else "")]
                    per_order.append((call.verdict[criterion.key], call))
                if len(per_order) == 2:
                    value, consistent = prompting.combine_orders(per_order[0][0], per_order[1][0])
                    consistency = Judgment.Consistency.CONSISTENT if consistent else Judgment.Consistency.INCONSISTENT
                else:
                    value, consistency = per_order[0][0], Judgment.Consistency.SINGLE
                flags = [call.both_unacceptable for _, call in per_order]
                judgments.append(
                    Judgment(
                        judge=self.run.judge,
                        comparison_id=comparison_id,
                        criterion=criterion,
                        value=value,
                        left_is_first=per_order[0][1].left_is_first if len(per_order) == 1 else None,
                        # Safety-conservative: flagged when either order flagged both responses unacceptable.
                        both_unacceptable=any(flags),
                        rationale=" | ".join(call.reason for _, call in per_order if call.reason)[:4000],
                        consistency=consistency,
                        run=self.run,
                        template_version=self.template.version,
                    )
                )
        Judgment.objects.bulk_create(
            judgments,
            update_conflicts=True,
            unique_fields=["judge", "comparison", "criterion"],
            update_fields=[
                "value",
                "left_is_first",
                "both_unacceptable",
                "rationale",
                "consistency",
                "run",
                "template_version",
            ],
        )
        return done, failed


# ---- reward-model judges ---------------------------------------------------------------------------


def _execute_reward(run: JudgeRun, state: _RunState, on_progress: Callable[[JudgeRun], None] | None) -> None:
    from annotations.judges import reward

    judge = run.judge
    jobs = {
        job.criterion_key: job
        for job in TrainingJob.objects.filter(pk__in=judge.config.get("reward_jobs", {}).values(), study=run.study)
    }
    criteria = [c for c, _ in _criteria_texts(run)]
    comparisons = list(
        Comparison.objects.filter(study=run.study, excluded=False)
        .select_related("prompt", "response_first", "response_second")
        .only("id", "prompt__messages", "response_first__content", "response_second__content")
        .order_by("id")
    )
    JudgeRun.objects.filter(pk=run.pk).update(total_comparisons=len(comparisons))
    ids = np.array([c.pk for c in comparisons], dtype=np.int64)
    results: dict[str, Any] = {}
    differences: dict[str, np.ndarray] = {}
    for criterion in criteria:
        if state.should_stop():
            state.finish(JobStatus.CANCELLED, message="cancelled")
            return
        job = jobs.get(criterion.key)
        if job is None or job.status != JobStatus.SUCCEEDED:
            raise ValidationError({"reward_jobs": [f"No succeeded reward model for {criterion.key!r}."]})
        max_length = int(job.hyperparameters.get("max_length", 512))
        conversations = [
            [*list(c.prompt.messages), {"role": "assistant", "content": r}]
            for c in comparisons
            for r in (c.response_first.content, c.response_second.content)
        ]
        scores = np.array(reward.score_responses(job.artifacts_path, conversations, max_length=max_length))
        differences[criterion.key] = scores[1::2] - scores[0::2]
        JudgeRun.objects.filter(pk=run.pk).update(
            log=log_line(f"scored {len(comparisons)} comparisons on {criterion.key}")
        )
    judgments = []
    calls = []
    verdicts: dict[int, dict[str, int]] = {int(c): {} for c in ids}
    for criterion in criteria:
        human = Rating.objects.filter(
            assignment__study=run.study, assignment__status="submitted", criterion__key=criterion.key
        ).exclude(assignment__rater__kind=Rater.Kind.JUDGE)
        rated = set(human.values_list("assignment__comparison_id", flat=True))
        on_rated = np.array([c in rated for c in ids.tolist()], dtype=bool)
        calibration = reward.calibrate(
            differences_on_rated=differences[criterion.key][on_rated],
            human_values=np.array(list(human.values_list("value", flat=True)), dtype=int),
            scale_points=run.study.scale_points,
        )
        results[criterion.key] = {**calibration.as_dict(), "job": str(jobs[criterion.key].public_id)}
        values = reward.to_scale(differences[criterion.key], calibration)
        for comparison_id, value, difference in zip(
            ids.tolist(), values.tolist(), differences[criterion.key].tolist(), strict=True
        ):
            verdicts[comparison_id][criterion.key] = int(value)
            judgments.append(
                Judgment(
                    judge=judge,
                    comparison_id=comparison_id,
                    criterion=criterion,
                    value=int(value),
                    rationale=f"reward difference {difference:+.4f} (second minus first)",
                    consistency=Judgment.Consistency.SINGLE,
                    run=run,
                    raw={"difference": difference},
                )
            )
    for comparison_id in ids.tolist():
        calls.append(
            JudgmentCall(
                run=run,
                judge=judge,
                comparison_id=comparison_id,
                left_is_first=True,
                criterion_key="",
                status=JudgmentCall.Status.OK,
                verdict=verdicts[comparison_id],
                raw_output="",
            )
        )
    with transaction.atomic():
        JudgmentCall.objects.bulk_create(
            calls,
            update_conflicts=True,
            unique_fields=["judge", "comparison", "left_is_first", "criterion_key"],
            update_fields=["run", "status", "verdict"],
        )
        Judgment.objects.bulk_create(
            judgments,
            update_conflicts=True,
            unique_fields=["judge", "comparison", "criterion"],
            update_fields=["value", "rationale", "consistency", "run", "raw"],
        )
        state.mine().update(done_comparisons=len(comparisons), calls=len(comparisons))
    state.finish(JobStatus.SUCCEEDED, message=f"finished: {len(comparisons)} judged", result={"calibration": results})
    _report(run, on_progress)
