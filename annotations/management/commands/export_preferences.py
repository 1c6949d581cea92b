import shutil
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.exporting.policy import DECISIONS, TIE_HANDLING
from annotations.exporting.rows import FILE_FORMATS, FORMATS
from annotations.models import JobStatus, Study
from annotations.services.exports import export_create, export_directory, export_zip_path


class Command(BaseCommand):
    help = (
        "Export a study's ratings as a preference dataset (docs/export-format.md), recorded as a PreferenceExport "
        "like one made from the page, written here (not by the worker), and copied to --out."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--file-format", choices=FILE_FORMATS, default="jsonl")
        parser.add_argument("--criterion", action="append", default=[], help="criterion key (repeatable; default all)")
        parser.add_argument(
            "--out", required=True, help="directory to copy the snapshot to (must not exist or be empty)"
        )
        parser.add_argument("--zip", action="store_true", help="also copy the zip beside --out, as <out>.zip")
        policy = parser.add_argument_group("aggregation policy")
        policy.add_argument("--decision", choices=DECISIONS, default="majority")
        policy.add_argument("--min-votes", type=int, default=1)
        policy.add_argument("--min-margin", type=float, default=0.0)
        policy.add_argument("--ties", choices=TIE_HANDLING, default="drop")
        policy.add_argument("--min-gold-accuracy", type=float, default=None)
        policy.add_argument(
            "--exclude-raters-without-gold", action="store_true", help="with --min-gold-accuracy: drop unchecked raters"
        )
        policy.add_argument("--include-judges", action="store_true", help="count AI judgments as votes")
        split = parser.add_argument_group("split (by prompt)")
        split.add_argument("--seed", type=int, default=0)
        split.add_argument("--test-fraction", type=float, default=0.1)
        split.add_argument("--validation-fraction", type=float, default=0.0)
        split.add_argument("--stratify-by", default=None, help="a prompt meta field, e.g. category")
        filters = parser.add_argument_group("filters")
        filters.add_argument("--system", action="append", default=[], help="only pairs of these systems (repeatable)")
        filters.add_argument("--submitted-before", default=None, help="ISO date and time")
        filters.add_argument("--exclude-gold-items", action="store_true")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']!r}.")
        out = Path(options["out"])
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise CommandError(f"--out {out} exists and is not an empty directory.")
        try:
            export = export_create(
                study=study,
                actor=None,
                format=options["format"],
                file_format=options["file_format"],
                criterion_keys=options["criterion"],
                policy={
                    "decision": options["decision"],
                    "min_votes": options["min_votes"],
                    "min_margin": options["min_margin"],
                    "ties": options["ties"],
                    "min_gold_accuracy": options["min_gold_accuracy"],
                    "keep_raters_without_gold": not options["exclude_raters_without_gold"],
                    "include_judges": options["include_judges"],
                },
                split={
                    "seed": options["seed"],
                    "test_fraction": options["test_fraction"],
                    "validation_fraction": options["validation_fraction"],
                    "stratify_by": options["stratify_by"],
                },
                filters={
                    "systems": options["system"],
                    "submitted_before": options["submitted_before"],
                    "exclude_gold_items": options["exclude_gold_items"],
                },
                inline=True,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        if export.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Export {export.public_id} failed: {export.error}")
        shutil.copytree(export_directory(export), out, dirs_exist_ok=True)
        if options["zip"]:
            shutil.copyfile(export_zip_path(export), out.with_name(f"{out.name}.zip"))
        manifest = export.manifest
        self.stdout.write(
            f"export {export.public_id}: {manifest['comparisons']['total']} comparisons, rows {manifest['rows']}, "
            f"zip sha256 {export.zip_sha256}\ncopied to {out}"
        )
