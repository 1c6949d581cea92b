from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import PreferenceExport, Study
from annotations.services.followup import followup_study_create, followup_summary
from annotations.views.common import error_dict


class Command(BaseCommand):
    help = (
        "Create a follow-up study comparing chosen systems of a study on the prompts they all answered "
        "(same rubric versions; comparisons built, responses screened)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="source", required=True, help="slug of the source study")
        parser.add_argument("--new", dest="slug", required=True, help="slug of the new study")
        parser.add_argument("--systems", nargs="+", required=True, metavar="NAME", help="systems to compare")
        parser.add_argument("--title", default="")
        parser.add_argument("--carry-clinicians", action="store_true", help="the source's clinicians join it")
        parser.add_argument("--export", help="public id of an export: only its test-split prompts")
        parser.add_argument("--user", help="username of the researcher who owns the new study")

    def handle(self, *args, source, slug, systems, title, carry_clinicians, export, user, **options) -> None:
        study = Study.objects.filter(slug=source).first()
        if study is None:
            raise CommandError(f"No study {source!r}.")
        snapshot = None
        if export:
            try:
                snapshot = PreferenceExport.objects.filter(study=study, public_id=export).first()
            except ValidationError:
                snapshot = None
            if snapshot is None:
                raise CommandError(f"No export {export} in study {source}.")
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"No user {user!r}.")
        try:
            created = followup_study_create(
                source=study,
                slug=slug,
                title=title,
                system_names=systems,
                export=snapshot,
                carry_clinicians=carry_clinicians,
                actor=actor,
            )
        except ValidationError as exc:
            errors = error_dict(exc, "error")
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())) from None
        summary = followup_summary(created)
        self.stdout.write(
            f"Created study {created.slug}: {summary.systems} systems, {summary.prompts} prompts, "
            f"{summary.comparisons} comparisons, {summary.clinicians} clinicians, "
            f"{summary.screening_hits} open screening hit(s)."
        )
