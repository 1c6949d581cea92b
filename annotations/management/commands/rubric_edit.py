import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.services.rubric_edit import rubric_edit

SETTINGS = ("scale_points", "rationale_mode", "rationale_required", "rationale_min_length")


class Command(BaseCommand):
    help = (
        "Edit a study's rubric from a JSON file shaped like rubric_show's output: criteria (key, title, question, "
        "better_when, worse_when; leave the key out for a new criterion) in order, and optionally scale_points, "
        "rationale_mode, rationale_required, rationale_min_length. Saves a new rubric version; once the study "
        "has opened, --confirm is required."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--from-json", required=True, dest="path", help="the rubric file (JSON)")
        parser.add_argument("--note", default="", help="what changed and why, kept with the version")
        parser.add_argument("--user", help="username recorded as the editor (default: none)")
        parser.add_argument("--confirm", action="store_true", help="save although the study has opened")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"No study {options['study']}.")
        actor = None
        if options["user"]:
            actor = get_user_model().objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"--user: no account {options['user']}.")
        try:
            spec = json.loads(Path(options["path"]).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--from-json: cannot read {options['path']}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"--from-json: {options['path']} line {exc.lineno}: {exc.msg}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("criteria"), list):
            raise CommandError("--from-json: expected an object with a list of criteria.")
        try:
            outcome = rubric_edit(
                study=study,
                actor=actor,
                criteria=spec["criteria"],
                settings={name: spec[name] for name in SETTINGS if name in spec},
                note=options["note"] or str(spec.get("note") or ""),
                confirm=options["confirm"],
            )
        except ValidationError as exc:
            lines = (
                [m for messages in exc.message_dict.values() for m in messages]
                if hasattr(exc, "error_dict")
                else exc.messages
            )
            raise CommandError("Rubric not saved:\n  " + "\n  ".join(lines)) from None
        if outcome.version is None:
            self.stdout.write("Nothing changed; no new rubric version.")
            return
        self.stdout.write(f"Saved rubric v{outcome.version.number}:")
        for line in outcome.changes:
            self.stdout.write(f"  {line}")
