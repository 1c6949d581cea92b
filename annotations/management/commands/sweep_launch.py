"""Launch a weight sweep (MODPO per weight vector, or merges of per-criterion DPO models), or show one's front.

manage.py sweep_launch --study demo --grid empathy,safety --step 0.5 --set max_steps=10
manage.py sweep_launch --study demo --vector "empathy=0.7, safety=0.3" --weight-set "survey mean"
manage.py sweep_launch --study demo --show <sweep id> [--x empathy --y safety]
"""

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import JobStatus, PreferenceExport, Study, Sweep, TrainingJob
from annotations.models.survey import WeightSet
from annotations.services.sweeps import (
    sweep_detail_data,
    sweep_for_study,
    sweep_launch,
    sweep_vectors_resolve,
    weight_rows_parse,
)
from annotations.services.training_jobs import base_models_available
from annotations.views.common import error_dict


class Command(BaseCommand):
    help = "Launch a weight sweep over criterion weightings (a grid, weight sets, typed vectors), or --show one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", required=True, help="study slug")
        parser.add_argument("--kind", default="modpo", choices=Sweep.Kind.values)
        parser.add_argument("--export", help="public id of a finished export (default: the study's latest)")
        parser.add_argument("--base-model", help="model under MODEL_ROOTS (default: the first one found)")
        parser.add_argument("--name", default="")
        parser.add_argument("--grid", default="", help="comma-separated criteria of a grid, e.g. empathy,safety")
        parser.add_argument("--step", type=float, help="grid step, e.g. 0.25")
        parser.add_argument("--weight-set", dest="weight_sets", action="append", default=[], help="name (repeat)")
        parser.add_argument(
            "--vector", dest="vectors", action="append", default=[], help='"empathy=0.7, safety=0.3" (repeat)'
        )
        parser.add_argument(
            "--model",
            dest="models",
            action="append",
            default=[],
            metavar="CRITERION=JOB_ID",
            help="the reward (MODPO) or DPO (soup) job to use for a criterion; default: the latest on the export",
        )
        parser.add_argument(
            "--set",
            dest="spec_options",
            action="append",
            default=[],
            metavar="OPTION=VALUE",
            help="TrainingSpec option",
        )
        parser.add_argument("--user", help="username recorded as the launcher")
        parser.add_argument("--show", metavar="SWEEP_ID", help="print a sweep's models, figures and front as JSON")
        parser.add_argument("--x", help="first criterion of the front (with --show)")
        parser.add_argument("--y", help="second criterion of the front (with --show)")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']!r}.")
        if options["show"]:
            try:
                sweep = sweep_for_study(study=study, public_id=options["show"])
            except ValidationError:
                sweep = None
            if sweep is None:
                raise CommandError(f"No sweep {options['show']} in study {study.slug}.")
            self.stdout.write(json.dumps(sweep_detail_data(sweep, options["x"], options["y"]), indent=2, default=str))
            return
        try:
            sweep = self._launch(study, options)
        except ValidationError as exc:
            errors = error_dict(exc, "error")
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())) from None
        self.stdout.write(f"Sweep {sweep.public_id}: {len(sweep.weight_vectors)} weight vectors queued.")
        for entry in sweep.weight_vectors:
            self.stdout.write(f"  {entry['label']}: job {entry.get('job', '-')} ({entry.get('role', '')})")
        self.stdout.write(f"Follow it: /studies/{study.slug}/jobs/sweeps/{sweep.public_id}/")

    def _launch(self, study: Study, options: dict) -> Sweep:
        if options["export"]:
            export = PreferenceExport.objects.filter(study=study, public_id=options["export"]).first()
            if export is None:
                raise CommandError(f"No export {options['export']} in study {study.slug}.")
        else:
            export = PreferenceExport.objects.filter(study=study, status=JobStatus.SUCCEEDED).order_by("-created_at")
            export = export.first()
            if export is None:
                raise CommandError(f"Study {study.slug} has no finished export: make one first (export_preferences).")
        base_model = options["base_model"] or next(iter(base_models_available()), "")
        weight_sets = []
        for name in options["weight_sets"]:
            weight_set = WeightSet.objects.filter(study=study, name=name).first()
            if weight_set is None:
                raise CommandError(f"No weight set {name!r} in study {study.slug}.")
            weight_sets.append(weight_set)
        models = {}
        for item in options["models"]:
            criterion, _, public_id = item.partition("=")
            job = TrainingJob.objects.filter(study=study, public_id=public_id.strip()).first() if public_id else None
            if job is None:
                raise CommandError(f"--model {item}: no such job in study {study.slug}.")
            models[criterion.strip()] = job
        vectors = sweep_vectors_resolve(
            study=study,
            grid_criteria=[key.strip() for key in options["grid"].split(",") if key.strip()],
            step=options["step"],
            weight_sets=weight_sets,
            rows=weight_rows_parse("\n".join(options["vectors"])),
        )
        actor = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        return sweep_launch(
            study=study,
            kind=options["kind"],
            export=export,
            base_model=base_model,
            vectors=vectors,
            name=options["name"],
            hyperparameters=dict(item.split("=", 1) for item in options["spec_options"] if "=" in item),
            models=models,
            actor=actor,
        )
