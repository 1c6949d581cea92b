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
