"""manage.py study_guidelines --study SLUG [--from-file FILE] [--span-labels LABEL ...]: show or set a study's
guidelines for clinicians (Markdown) and its span labels; audited like the page."""

import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.services.guidelines import study_guidelines_update


class Command(BaseCommand):
    help = "Show or set a study's guidelines (Markdown) and span labels. Without options, print them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="The study's slug.")
        parser.add_argument("--from-file", help="A Markdown file with the new guidelines ('-' for standard input).")
        parser.add_argument("--span-labels", nargs="+", help="The labels clinicians can put on a marked passage.")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with the slug {options['study']!r}.")
        source, labels = options["from_file"], options["span_labels"]
        if source is None and labels is None:
            self.stdout.write(f"Span labels: {', '.join(study.span_labels or ['unsafe'])}")
            self.stdout.write(study.guidelines or "(no guidelines written)")
            return
        if source == "-":
            text = sys.stdin.read()
        elif source is not None:
            path = Path(source)
            if not path.is_file():
                raise CommandError(f"--from-file: no such file {source}.")
            text = path.read_text(encoding="utf-8")
        else:
            text = study.guidelines
        try:
            study = study_guidelines_update(study=study, actor=None, guidelines=text, span_labels=labels)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(
            f"Saved: {len(study.guidelines)} characters of guidelines; span labels {', '.join(study.span_labels)}."
        )
