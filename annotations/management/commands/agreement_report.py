import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import JobStatus, Study
from annotations.services.reports import report_csv, report_document, report_params_parse, report_request


class Command(BaseCommand):
    help = (
        "Print a study's agreement and results report (docs/reports.md) to standard output, as JSON or CSV, or "
        "write it as a PDF (--format pdf --output FILE). Uses the cached snapshot when the ratings have not "
        "changed; otherwise computes it here."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--format", choices=["json", "csv", "pdf"], default="json")
        parser.add_argument("--output", help="file to write (required for --format pdf)")
        parser.add_argument("--criterion", action="append", default=[], help="criterion key (repeatable; default all)")
        parser.add_argument("--rater", action="append", default=[], help="rater or judge label (repeatable)")
        parser.add_argument(
            "--kind",
            action="append",
            default=[],
            choices=["clinician", "external", "judge"],
            help="kind of rater: platform clinician, imported (external) rater, AI judge (repeatable; default all)",
        )
        parser.add_argument("--from", dest="date_from", help="first day a rating was stored, YYYY-MM-DD")
        parser.add_argument("--to", dest="date_to", help="last day a rating was stored, YYYY-MM-DD")
        parser.add_argument("--min-gold-accuracy", help="leave out clinicians below this gold accuracy (0-1)")
        parser.add_argument("--resamples", help="bootstrap resamples (default 1000; 0 for no intervals)")
        parser.add_argument("--seed", help="bootstrap seed (default 0)")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']!r}.")
        if options["format"] == "pdf" and not options["output"]:
            raise CommandError("--output: give a file to write the PDF to.")
        try:
            params = report_params_parse(
                criteria=options["criterion"],
                raters=options["rater"],
                rater_kinds=options["kind"],
                date_from=options["date_from"],
                date_to=options["date_to"],
                min_gold_accuracy=options["min_gold_accuracy"],
                n_resamples=options["resamples"],
                seed=options["seed"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"--{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        snapshot = report_request(study=study, params=params, inline=True, retry_failed=True)
        if snapshot.status != JobStatus.SUCCEEDED:
            raise CommandError(f"The report could not be computed: {snapshot.error}")
        document = report_document(study=study, snapshot=snapshot)
        if options["format"] == "pdf":
            from annotations.views.reports import report_pdf_for  # the page's own PDF, drawn with matplotlib

            with open(options["output"], "wb") as out:
                out.write(report_pdf_for(study=study, snapshot=snapshot))
            self.stdout.write(f"Wrote {options['output']}.")
        elif options["format"] == "csv":
            self.stdout.write(report_csv(document["report"]), ending="")
        else:
            self.stdout.write(json.dumps(document, indent=2))
