import json
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import PreferenceExport, Study, TrainingJob
from annotations.services.training_jobs import (
    training_job_cancel,
    training_job_launch,
    training_job_progress,
    training_jobs_recover,
)
from annotations.views.common import error_dict


class Command(BaseCommand):
    help = "Training jobs: launch, cancel, status, recover (re-queue running jobs whose worker is gone)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        launch = actions.add_parser("launch", help="Validate and queue a job.")
        launch.add_argument("--study", required=True)
        launch.add_argument("--kind", required=True, choices=TrainingJob.Kind.values)
        launch.add_argument("--base-model", required=True)
        launch.add_argument("--export", help="public id of a finished export (all kinds but merge)")
        launch.add_argument("--criterion", default="")
        launch.add_argument("--weights", default="{}", help='JSON, e.g. {"empathy": 0.6, "safety": 0.4}')
        launch.add_argument(
            "--input", dest="inputs", action="append", default=[], help="public id of an input job (repeat)"
        )
        launch.add_argument(
            "--set",
            dest="spec_options",
            action="append",
            default=[],
            metavar="OPTION=VALUE",
            help="a TrainingSpec option",
        )
        launch.add_argument("--user", help="username recorded as the launcher")
        cancel = actions.add_parser("cancel", help="Cancel a queued job, or ask a running one to stop.")
        cancel.add_argument("job")
        status = actions.add_parser("status", help="One job as JSON, or the latest jobs of a study.")
        status.add_argument("job", nargs="?")
        status.add_argument("--study")
        recover = actions.add_parser("recover", help="Re-queue running jobs whose heartbeat is stale.")
        recover.add_argument("--stale-after", type=int, help="seconds (default TRAINING_STALE_AFTER_SECONDS)")

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except ValidationError as exc:
            errors = error_dict(exc, "error")
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())) from None

    def _launch(self, *, study, kind, base_model, export, criterion, weights, inputs, spec_options, user, **_) -> None:
        target = Study.objects.filter(slug=study).first()
        if target is None:
            raise CommandError(f"No study {study!r}.")
        snapshot = None
        if export:
            snapshot = PreferenceExport.objects.filter(study=target, public_id=export).first()
            if snapshot is None:
                raise CommandError(f"No export {export} in study {study}.")
        input_jobs = list(TrainingJob.objects.filter(study=target, public_id__in=inputs))
        if len(input_jobs) != len(set(inputs)):
            raise CommandError("Some --input jobs are not in this study.")
        try:
            parsed_weights = json.loads(weights)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--weights is not JSON: {exc}") from None
        hyperparameters = dict(item.split("=", 1) for item in spec_options if "=" in item)
        actor = get_user_model().objects.filter(username=user).first() if user else None
        job = training_job_launch(
            study=target,
            kind=kind,
            base_model=base_model,
            export=snapshot,
            criterion=criterion,
            weights=parsed_weights,
            hyperparameters=hyperparameters,
            inputs=input_jobs,
            actor=actor,
        )
        self.stdout.write(f"Queued job {job.public_id}.")

    def _cancel(self, *, job, **_) -> None:
        target = _job(job)
        target = training_job_cancel(job=target, actor=None)
        self.stdout.write(f"Job {target.public_id}: {target.status}, cancel requested.")

    def _status(self, *, job, study, **_) -> None:
        if job:
            self.stdout.write(json.dumps(training_job_progress(_job(job)), indent=2, default=str))
            return
        jobs = TrainingJob.objects.order_by("-created_at")
        if study:
            jobs = jobs.filter(study__slug=study)
        for row in jobs[:50]:
            progress = f"{row.step}/{row.total_steps or '?'}"
            self.stdout.write(
                f"{row.public_id}  {row.kind:6}  {row.criterion_key or '-':18}  {row.status:9}  "
                f"{progress:>11}  attempt {row.attempts}/{row.max_attempts}"
            )

    def _recover(self, *, stale_after, **_) -> None:
        requeued = training_jobs_recover(stale_after=timedelta(seconds=stale_after) if stale_after else None)
        self.stdout.write(f"Re-queued {len(requeued)} job(s).")


def _job(public_id: str) -> TrainingJob:
    try:
        job = TrainingJob.objects.select_related("study").filter(public_id=public_id).first()
    except ValidationError:
        job = None
    if job is None:
        raise CommandError(f"No job {public_id}.")
    return job
