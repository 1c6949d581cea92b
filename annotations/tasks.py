"""Celery tasks: thin wrappers that fetch by id and call a service. Job state lives in the database."""

import logging

from celery import current_task, shared_task
from celery.signals import worker_ready
from django.conf import settings

logger = logging.getLogger(__name__)
# A run stops (saving a checkpoint) this long before the soft time limit, then re-queues itself.
TRAINING_STOP_MARGIN_SECONDS = 300


@shared_task(name="annotations.tasks.ping", ignore_result=False)
def ping(value: str) -> dict[str, str]:
    """A round trip through the broker and a worker: echoes the value with the worker's database vendor."""
    from django.db import connection

    return {"value": value, "database": connection.vendor}


@shared_task(
    name="annotations.tasks.training_job_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CELERY_TRAINING_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TRAINING_TIME_LIMIT,
)
def training_job_run(self, job_id: int) -> str:
    """Run one training job (queue `gpu`, or `gpu<N>` for N processes when routing by GPU count). Idempotent: the
    claim in the database decides whether to run. A job of several processes is launched from here as a
    subprocess (accelerate launch) that this task supervises; see annotations.training.distributed."""
    from annotations.services.training_jobs import training_job_execute

    soft_limit = settings.CELERY_TRAINING_SOFT_TIME_LIMIT
    # Stop cleanly (checkpoint saved, job re-queued) a little before the soft limit interrupts the run.
    stop_after = max(soft_limit - TRAINING_STOP_MARGIN_SECONDS, soft_limit * 0.9)
    return training_job_execute(job_id=job_id, worker=self.request.hostname or "", stop_after_seconds=stop_after)


@shared_task(name="annotations.tasks.training_jobs_recover")
def training_jobs_recover() -> dict[str, list[int]]:
    """Periodic (beat): re-queue running training jobs and generation runs whose heartbeat is stale."""
    from annotations.services.generation import generation_runs_recover
    from annotations.services.training_jobs import training_jobs_recover as recover

    return {"training_jobs": recover(), "generation_runs": generation_runs_recover()}


@worker_ready.connect(dispatch_uid="annotations.recover_training_jobs_on_worker_ready")
def recover_training_jobs_on_worker_ready(sender=None, **kwargs) -> None:
    """At a worker's start: jobs still held under its own name belong to its dead predecessor, and
    stale ones to some other dead worker; both are re-queued so another run resumes them."""
    from annotations.services.training_jobs import training_jobs_recover as recover

    try:
        requeued = recover(dead_worker=getattr(sender, "hostname", "") or "")
    except Exception:  # a database hiccup must not stop the worker from serving
        logger.exception("training job recovery at worker start failed")
        return
    if requeued:
        logger.info("re-queued training jobs %s at worker start", requeued)


@shared_task(name="annotations.tasks.report_snapshot_compute", acks_late=True, reject_on_worker_lost=True)
def report_snapshot_compute(snapshot_id: int) -> str:
    """Compute one agreement report snapshot (queue `default`). Idempotent: a computed snapshot is left alone."""
    from annotations.services.reports import report_snapshot_compute as compute

    return compute(snapshot_id=snapshot_id)


@shared_task(name="annotations.tasks.preference_export_run", acks_late=True, reject_on_worker_lost=True)
def preference_export_run(export_id: int) -> str:
    """Write one preference export's snapshot (queue `default`). Idempotent: a finished export is left alone."""
    from annotations.services.exports import export_run

    return export_run(export_id=export_id)


@shared_task(
    name="annotations.tasks.generation_run_execute",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CELERY_TRAINING_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TRAINING_TIME_LIMIT,
)
def generation_run_execute(self, run_id: int) -> str:
    """Run one generation run: queue `gpu` for a trained model, `default` for an endpoint (chosen at
    dispatch). Idempotent: the claim in the database decides whether to run."""
    from annotations.services.generation import generation_run_execute as execute

    soft_limit = settings.CELERY_TRAINING_SOFT_TIME_LIMIT
    stop_after = max(soft_limit - TRAINING_STOP_MARGIN_SECONDS, soft_limit * 0.9)
    return execute(run_id=run_id, worker=self.request.hostname or "", stop_after_seconds=stop_after)


@worker_ready.connect(dispatch_uid="annotations.recover_generation_runs_on_worker_ready")
def recover_generation_runs_on_worker_ready(sender=None, **kwargs) -> None:
    """At a worker's start: generation runs still held under its own name lost their worker; re-queue them."""
    from annotations.services.generation import generation_runs_recover

    try:
        requeued = generation_runs_recover(dead_worker=getattr(sender, "hostname", "") or "")
    except Exception:  # a database hiccup must not stop the worker from serving
        logger.exception("generation run recovery at worker start failed")
        return
    if requeued:
        logger.info("re-queued generation runs %s at worker start", requeued)


@shared_task(name="annotations.tasks.judge_run_execute", acks_late=True, reject_on_worker_lost=True)
def judge_run_execute(run_id: int) -> str:
    """Run one judge run (queue `default` for endpoint judges, `gpu` for reward models: chosen at dispatch).
    Idempotent: the claim decides whether to run, and judged comparisons are skipped."""
    from annotations.services.judging import judge_run_execute as execute

    return execute(run_id=run_id, worker=current_task.request.hostname or "")
