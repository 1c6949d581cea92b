"""What every long job (training job, generation run, judge run) does the same way with its row."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from annotations.models import JobStatus
from annotations.services.audit import audit_record
from annotations.services.worker_processes import held_by_dead_local_process


def log_line(message: str) -> Concat:
    """An update expression that appends a timestamped line to the row's `log`."""
    return Concat(F("log"), Value(f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}\n"))


def job_cancel(
    *,
    row: models.Model,
    actor: AbstractBaseUser | None,
    action: str,
    running_note: str,
    finished_message: str,
) -> None:
    """Cancel a queued job at once; flag a running one (it stops at its next check). Raises ValidationError
    when it has finished. Conditional updates, so a cancel racing a claim ends in exactly one outcome."""
    rows = type(row).objects.filter(pk=row.pk)
    with transaction.atomic():
        done = rows.filter(status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED,
            cancel_requested=True,
            finished_at=timezone.now(),
            log=log_line("cancelled before it started"),
        )
        if not done:
            done = rows.filter(status=JobStatus.RUNNING).update(cancel_requested=True, log=log_line(running_note))
        if not done:
            raise ValidationError({"status": [finished_message]})
        audit_record(actor=actor, action=action, study=row.study, obj=row)
    row.refresh_from_db()


def job_requeue_if_held_by_dead_local_process(*, row_id: int, model: type[models.Model], node: str, note: str) -> None:
    """Put a running job back in the queue when the process of this node that holds it has died (the pool
    child killed, e.g. out of memory): the next claim then takes it at once instead of waiting for its
    heartbeat to go stale."""
    rows = model.objects.filter(pk=row_id, status=JobStatus.RUNNING)
    held = rows.values_list("worker", "run_token").first()
    if held is None or not held_by_dead_local_process(held[0], node):
        return
    # Conditional on the same holder and token: if the dead run's job was re-queued meanwhile, nothing happens.
    rows.filter(worker=held[0], run_token=held[1]).update(
        status=JobStatus.QUEUED,
        run_token=None,
        worker="",
        log=log_line(f"worker process {held[0]} died (lost worker); {note}"),
    )
