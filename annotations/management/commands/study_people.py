"""manage.py study_people SLUG {list,invite,resend,revoke,quota,remove,history}: a study's people, for scripts.

    manage.py study_people pilot list
    manage.py study_people pilot invite ana@example.org --role clinician [--quota 40] [--days 7] [--base-url URL]
    manage.py study_people pilot resend INVITATION_ID [--base-url URL]
    manage.py study_people pilot revoke INVITATION_ID
    manage.py study_people pilot quota USERNAME 40        (or `none` to clear it)
    manage.py study_people pilot remove USERNAME
    manage.py study_people pilot history [--kind lifecycle]

The same services as the People page and the API; every change is audited (actor "manage.py").
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from annotations.models import Invitation, Profile, Study, StudyMembership
from annotations.plain import error_text
from annotations.selectors_history import HISTORY_KINDS, history_line, study_history_events
from annotations.services import accounts as account_services


class Command(BaseCommand):
    help = "List, invite, resend, revoke, set quotas and remove a study's people (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The study's slug.")
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Members and invitations with their state.")
        invite = sub.add_parser("invite", help="Invite a clinician or researcher; prints the link to send.")
        invite.add_argument("email")
        invite.add_argument("--role", required=True, choices=[Profile.Role.CLINICIAN, Profile.Role.RESEARCHER])
        invite.add_argument("--quota", type=int, help="Pairs a clinician is asked to rate.")
        invite.add_argument("--days", type=int, default=account_services.DEFAULT_INVITATION_DAYS)
        invite.add_argument("--base-url", default="", help="Prefix for the printed link, e.g. https://eval.example.org")
        resend = sub.add_parser("resend", help="New expiry from now; prints the link again.")
        resend.add_argument("invitation", type=int, help="Invitation id (see `list`).")
        resend.add_argument("--days", type=int, default=account_services.DEFAULT_INVITATION_DAYS)
        resend.add_argument("--base-url", default="")
        revoke = sub.add_parser("revoke", help="The link stops working at once.")
        revoke.add_argument("invitation", type=int, help="Invitation id (see `list`).")
        quota = sub.add_parser("quota", help="Set a clinician's quota (a number of pairs, or `none`).")
        quota.add_argument("username")
        quota.add_argument("quota")
        remove = sub.add_parser("remove", help="Remove a member: pairs in hand are released, ratings kept.")
        remove.add_argument("username")
        history = sub.add_parser("history", help="The study's history in plain words, newest first.")
        history.add_argument("--kind", choices=list(HISTORY_KINDS), default="changes")
        history.add_argument("--limit", type=int, default=50)

    def handle(self, *args, slug: str, action: str, **options) -> None:
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study with the slug “{slug}”.")
        try:
            getattr(self, f"_{action}")(study, **options)
        except ValidationError as exc:
            raise CommandError(error_text(exc)) from None

    def _link(self, base_url: str, invitation: Invitation) -> str:
        return base_url.rstrip("/") + reverse("invitation-accept", args=[invitation.token])

    def _member(self, study: Study, username: str):
        user = get_user_model().objects.filter(username=username, study_memberships__study=study).first()
        if user is None:
            raise CommandError(f"{username} is not a member of this study.")
        return user

    def _invitation(self, study: Study, invitation_id: int) -> Invitation:
        invitation = Invitation.objects.filter(pk=invitation_id, study=study).first()
        if invitation is None:
            raise CommandError(f"No invitation {invitation_id} in this study (see `list`).")
        return invitation

    def _list(self, study: Study, **options) -> None:
        members = StudyMembership.objects.filter(study=study).select_related("user").order_by("role", "user__username")
        self.stdout.write(f"Members of {study.slug}:")
        for member in members:
            quota = f", quota {member.quota} pairs" if member.quota is not None else ""
            self.stdout.write(f"  {member.user.get_username()} ({member.role}{quota})")
        if not members:
            self.stdout.write("  none yet")
        self.stdout.write("Invitations:")
        invitations = account_services.invitations_of_study(study=study)
        for invitation in invitations:
            state = account_services.invitation_state(invitation)
            quota = f", quota {invitation.quota}" if invitation.quota else ""
            self.stdout.write(
                f"  #{invitation.pk} {invitation.email} ({invitation.role}{quota}): {state}, sent "
                f"{invitation.sent_count}x, expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        if not invitations:
            self.stdout.write("  none yet")

    def _invite(self, study: Study, *, email: str, role: str, quota, days: int, base_url: str, **options) -> None:
        invitation = account_services.invitation_create(
            email=email, role=role, study=study, quota=quota, valid_for=timedelta(days=days), actor=None
        )
        self.stdout.write(
            f"Invitation #{invitation.pk} for {email} ({role}), valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC:"
        )
        self.stdout.write(self._link(base_url, invitation))

    def _resend(self, study: Study, *, invitation: int, days: int, base_url: str, **options) -> None:
        sent = account_services.invitation_resend(
            invitation=self._invitation(study, invitation), actor=None, valid_for=timedelta(days=days)
        )
        self.stdout.write(
            f"Invitation #{sent.pk} for {sent.email} valid until {sent.expires_at:%Y-%m-%d %H:%M} UTC "
            f"(sent {sent.sent_count} times):"
        )
        self.stdout.write(self._link(base_url, sent))

    def _revoke(self, study: Study, *, invitation: int, **options) -> None:
        revoked = account_services.invitation_revoke(invitation=self._invitation(study, invitation), actor=None)
        self.stdout.write(f"Invitation #{revoked.pk} for {revoked.email} is revoked.")

    def _quota(self, study: Study, *, username: str, quota: str, **options) -> None:
        value = None if quota.lower() in ("none", "") else quota
        if value is not None and not value.isdigit():
            raise CommandError("The quota is a whole number of pairs, or `none`.")
        user = self._member(study, username)
        account_services.membership_quota_set(
            study=study, user=user, quota=int(value) if value is not None else None, actor=None
        )
        self.stdout.write(f"{username}: quota {value or 'none'}.")

    def _remove(self, study: Study, *, username: str, **options) -> None:
        work = account_services.study_member_remove(study=study, user=self._member(study, username), actor=None)
        self.stdout.write(
            f"{username} removed; {work.leased} pair(s) in hand released, {work.submitted} submitted rating set(s) kept."
        )

    def _history(self, study: Study, *, kind: str, limit: int, **options) -> None:
        for event in study_history_events(study=study, kind=kind)[: max(limit, 1)]:
            line = history_line(event)
            self.stdout.write(f"{line.when:%Y-%m-%d %H:%M} {line.who}: {line.what}")
