from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.services.comparisons import responses_screen
from annotations.services.importing import ImportFailed, import_study_file, study_create_and_import


class Command(BaseCommand):
    help = "Import prompts, responses, ratings and judgments (JSONL or CSV) into a study, all or nothing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--create", action="store_true", help="create the study if it does not exist")
        parser.add_argument("--title", help="title for a study made with --create")
        parser.add_argument("--scale", type=int, choices=[3, 5, 7], default=3, help="scale for --create")
        parser.add_argument("--overlap", type=int, default=3, help="raters per comparison for --create")

    def handle(
        self, *args, file: Path, study: str, create: bool, title: str | None, scale: int, overlap: int, **options
    ) -> None:
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        target = Study.objects.filter(slug=study).first()
        if target is None and not create:
            raise CommandError(f"No study {study!r}; pass --create to make it.")
        try:
            with file.open("rb") as stream:
                if target is None:
                    # One transaction for the study and the file: a rejected file leaves no empty study behind.
                    target, summary = study_create_and_import(
                        slug=study,
                        title=title or study,
                        scale_points=scale,
                        overlap_k=overlap,
                        stream=stream,
                        filename=str(file),
                    )
                    self.stdout.write(f"Created study {study!r} ({scale}-point scale).")
                else:
                    summary = import_study_file(study=target, stream=stream, filename=str(file))
        except ImportFailed as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        screening = responses_screen(study=target)
        self.stdout.write(summary.describe())
        if screening.open_hits:
            self.stdout.write(
                f"Screening: {screening.open_hits} response(s) may reveal their system; see the study page."
            )
