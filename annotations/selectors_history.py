"""A study's history in plain words: its audit rows (who, when, what), worded for the researcher's History page,
the API and `manage.py study_people`.

The audit log stays the record; this module only reads it. Per-pair rows (claims, skips, expiries, ratings) are
left out by default: they are thousands of lines of rating work, not changes to the study.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from annotations.models import AuditEvent, Study
from annotations.plain import field_label, value_text

# Which audit actions each view of the history shows.
LIFECYCLE_ACTIONS = ("study.create", "study.open", "study.reopen", "study.close", "study.followup_create")
PEOPLE_PREFIXES = ("invitation.", "membership.", "account.create")
WORK_PREFIXES = ("assignment.", "rating.")

HISTORY_KINDS = {
    "changes": "Changes to the study",
    "lifecycle": "Opening and closing",
    "people": "People",
    "all": "Everything, including each rating",
}


def study_history_events(*, study: Study, kind: str = "changes") -> QuerySet[AuditEvent]:
    """The study's audit rows of one kind, newest first."""
    events = AuditEvent.objects.filter(study=study).select_related("actor").order_by("-created_at", "-id")
    if kind == "lifecycle":
        return events.filter(action__in=LIFECYCLE_ACTIONS)
    if kind == "people":
        people = events.none()
        for prefix in PEOPLE_PREFIXES:
            people = people | events.filter(action__startswith=prefix)
        return people
    if kind == "all":
        return events
    for prefix in WORK_PREFIXES:
        events = events.exclude(action__startswith=prefix)
    return events


def _n(count: Any, one: str, many: str | None = None) -> str:
    try:
        number = int(count)
    except (TypeError, ValueError):
        number = 0
    return f"{number} {one if number == 1 else (many or one + 's')}"


def _article(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _describe(action: str, data: dict[str, Any]) -> str:
    """One plain sentence for one audit row."""
    user = data.get("user") or data.get("username") or "someone"
    role = str(data.get("role") or "member")
    if action == "study.create":
        return "Created the study."
    if action == "study.open":
        text = "Opened the study for rating."
        if data.get("override"):
            text += f" Opened despite {_n(data.get('open_hits'), 'unresolved screening hit')}."
        return text
    if action == "study.reopen":
        return "Reopened the study for rating."
    if action == "study.close":
        text = "Closed the study: no new pairs, no submissions until it is reopened."
        if data.get("leases_open"):
            text += f" {_n(data['leases_open'], 'pair was', 'pairs were')} in clinicians' hands."
        return text
    if action == "study.followup_create":
        return "Created this study as a follow-up."
    if action == "invitation.create":
        text = f"Invited {data.get('email', 'someone')} as {_article(role)}."
        if data.get("quota"):
            text += f" Quota: {_n(data['quota'], 'pair')}."
        return text
    if action == "invitation.resend":
        return f"Sent the invitation to {data.get('email', 'someone')} again (send {data.get('sent_count', '?')})."
    if action == "invitation.revoke":
        return f"Withdrew the invitation to {data.get('email', 'someone')}; its link no longer works."
    if action == "account.create":
        return f"{user} accepted the invitation and created an account."
    if action == "membership.set":
        if data.get("created"):
            return f"Added {user} to the study as {_article(role)}."
        return f"{user} is now {_article(role)} of the study."
    if action == "membership.remove":
        text = f"Removed {user} ({role}) from the study."
        if "leases_released" in data:
            text += (
                f" {_n(data.get('leases_released'), 'pair')} in hand released to others;"
                f" {_n(data.get('ratings_kept'), 'submitted rating set')} kept."
            )
        return text
    if action == "membership.quota":
        if data.get("to") is None:
            return f"Cleared {user}'s quota (the study's default applies)."
        return f"Set {user}'s quota to {_n(data.get('to'), 'pair')}."
    # Any other action: its name and data in words, never a dict.
    name = field_label(action.replace(".", " "))
    details = value_text(data, empty="")
    return f"{name}." + (f" {details}." if details else "")


@dataclass(frozen=True)
class HistoryLine:
    when: datetime
    who: str
    what: str
    action: str


def history_line(event: AuditEvent) -> HistoryLine:
    who = event.actor_label or (event.actor.get_username() if event.actor_id else "") or "a script or the system"
    return HistoryLine(
        when=event.created_at, who=who, what=_describe(event.action, event.data or {}), action=event.action
    )
