"""manage.py invite_user EMAIL --role clinician [--study SLUG] [--days 7] [--base-url https://host]: print a link."""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from annotations.models import Profile, Study
from annotations.services.accounts import DEFAULT_INVITATION_DAYS, invitation_create


class Command(BaseCommand):
    help = "Create an invitation link that expires; accepting it creates the account (and study membership)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--role", required=True, choices=Profile.Role.values)
        parser.add_argument("--study", help="Slug of a study the new account joins.")
        parser.add_argument("--days", type=int, default=DEFAULT_INVITATION_DAYS)
        parser.add_argument("--base-url", default="", help="Prefix for the printed link, e.g. https://eval.example.org")

    def handle(self, *args, email: str, role: str, study: str | None, days: int, base_url: str, **options) -> None:
        study_obj = None
        if study:
            study_obj = Study.objects.filter(slug=study).first()
            if study_obj is None:
                raise CommandError(f"No study {study!r}.")
        try:
            invitation = invitation_create(
                email=email, role=role, study=study_obj, valid_for=timedelta(days=days), actor=None
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        link = base_url.rstrip("/") + reverse("invitation-accept", args=[invitation.token])
        self.stdout.write(f"Invitation for {email} ({role}), valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC:")
        self.stdout.write(link)
