"""Failed-login lockout: who the client is, how long a (username, address) pair waits, and which pairs wait now.

django-axes counts failures per username *and* address together (AXES_LOCKOUT_PARAMETERS), so a typo in a
clinic behind one NAT address does not lock the team, and knowing a username does not let anyone lock it
from elsewhere. Instead of a flat hour, a pair waits LOCKOUT_FIRST_DELAY_SECONDS after AXES_FAILURE_LIMIT
failures, and every further failure after that wait doubles it, up to LOCKOUT_MAX_DELAY_SECONDS. Failures are
forgotten AXES_COOLOFF_TIME (LOCKOUT_FORGET_AFTER_HOURS) after the last one, or when the pair logs in.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone


def client_address(request: HttpRequest) -> str:
    """The client's address, for the lockout, DRF's throttles and the audit log alike.

    X-Forwarded-For is trusted only behind the TLS proxy (BEHIND_TLS_PROXY), and then only the entry that the
    TRUSTED_PROXY_COUNT-th proxy from us appended: anything to its left was written by the client and is forged
    at will. Without the proxy the header is ignored, so varying it changes nothing.
    """
    remote_addr = request.META.get("REMOTE_ADDR", "") or ""
    if not settings.BEHIND_TLS_PROXY or settings.TRUSTED_PROXY_COUNT < 1:
        return remote_addr
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote_addr
    return forwarded[-min(settings.TRUSTED_PROXY_COUNT, len(forwarded))][:45]


def lockout_delay_seconds(failures: int, *, limit: int, first: int, maximum: int) -> int:
    """Seconds a pair waits after its last failure: 0 below the limit, `first` at it, doubling per failure
    beyond it, capped at `maximum`."""
    if failures < limit:
        return 0
    return min(maximum, first * 2 ** min(failures - limit, 32))


def _delay(failures: int) -> timedelta:
    return timedelta(
        seconds=lockout_delay_seconds(
            failures,
            limit=settings.AXES_FAILURE_LIMIT,
            first=settings.LOCKOUT_FIRST_DELAY_SECONDS,
            maximum=settings.LOCKOUT_MAX_DELAY_SECONDS,
        )
    )


@dataclass(frozen=True)
class Lockout:
    """One (username, address) pair that may not log in until `until`."""

    username: str
    ip_address: str
    failures: int
    last_failure: datetime
    until: datetime

    @property
    def retry_after_seconds(self) -> int:
        return max(1, int((self.until - timezone.now()).total_seconds() + 0.999))


def _lockout_of(username: str, ip_address: str, failures: int, last_failure: datetime) -> Lockout | None:
    if failures < settings.AXES_FAILURE_LIMIT:
        return None
    until = last_failure + _delay(failures)
    if until <= timezone.now():
        return None
    return Lockout(username=username, ip_address=ip_address, failures=failures, last_failure=last_failure, until=until)


def lockout_for(*, username: str, ip_address: str) -> Lockout | None:
    """The pair's lockout now, or None if it may try to log in."""
    totals = (
        _recent_attempts()
        .filter(username=username, ip_address=ip_address)
        .aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
    )
    if not totals["failures"]:
        return None
    return _lockout_of(username, ip_address, totals["failures"], totals["last"])


def lockouts_active(*, usernames: QuerySet | list[str] | None = None) -> list[Lockout]:
    """Pairs locked out now, newest failure first; only those usernames when given."""
    attempts = _recent_attempts()
    if usernames is not None:
        attempts = attempts.filter(username__in=usernames)
    rows = (
        attempts.values("username", "ip_address")
        .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        .filter(failures__gte=settings.AXES_FAILURE_LIMIT)
        .order_by("-last")
    )
    found = (_lockout_of(row["username"] or "", row["ip_address"] or "", row["failures"], row["last"]) for row in rows)
    return [lockout for lockout in found if lockout is not None]


def _recent_attempts() -> QuerySet[AccessAttempt]:
    return AccessAttempt.objects.filter(attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)


class GrowingDelayHandler(AxesDatabaseHandler):
    """AXES_HANDLER: a pair counts as failing `limit` times only while its growing delay lasts.

    axes decides "locked" by comparing get_failures() with the limit; below, a pair whose delay has passed
    reports one failure fewer than the limit, so it may try again, and its next failure (recorded on the same
    row, which is kept until AXES_COOLOFF_TIME passes) locks it again for twice as long.
    """

    def get_failures(self, request, credentials: dict | None = None) -> int:
        limit = settings.AXES_FAILURE_LIMIT
        worst = 0
        for attempts in self.get_user_attempts(request, credentials):
            totals = attempts.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
            failures = totals["failures"] or 0
            if failures >= limit and totals["last"] + _delay(failures) <= timezone.now():
                failures = limit - 1
            worst = max(worst, failures)
        return worst
