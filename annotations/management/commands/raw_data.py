"""manage.py raw_data --study SLUG --format csv|parquet [--kind ratings|spans] --out FILE: every rating and judgment
as one long table, or every marked passage (--kind spans)."""

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.services.raw_data import RAW_FORMATS, RAW_KINDS, raw_data_stream


class Command(BaseCommand):
    help = "Write a study's raw ratings and judgments (one row per rater, item and criterion); audited."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="The study's slug.")
        parser.add_argument("--format", choices=sorted(RAW_FORMATS), default="csv")
        parser.add_argument("--kind", choices=RAW_KINDS, default="ratings", help="spans: one row per marked passage.")
        parser.add_argument("--out", required=True, help="File to write.")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with the slug {options['study']!r}.")
        size = 0
        with open(options["out"], "wb") as out:
            for chunk in raw_data_stream(
                study=study, file_format=options["format"], actor=None, via="command", kind=options["kind"]
            ):
                out.write(chunk)
                size += len(chunk)
        self.stderr.write(f"Wrote {size} bytes of {options['format']} to {options['out']}.")
