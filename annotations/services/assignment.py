"""Handing out comparisons to raters (the workspace's "next pair").

In the spirit of Label Studio's next-task logic, but claimed atomically:

- a rater's own live lease is resumed first (a reload or a second tab never claims a second pair);
- new raters do the study's calibration set (gold comparisons, in id order) before anything else;
- afterwards gold comparisons are mixed in, unmarked, at the study's gold rate;
- otherwise the rater gets a comparison that is below k live assignments, breadth-first (the most
  started first), never one they have seen, optionally never a prompt they have seen;
- leases expire and their comparison returns to the pool; per-rater quotas stop the flow.

Concurrency: a claim locks the rater row (serialising one rater's requests), picks a comparison with
`SELECT ... FOR NO KEY UPDATE SKIP LOCKED` and then raises `active_assignments` with a conditional
update (`active_assignments < k`) that must change exactly one row. PostgreSQL re-checks that condition
against the latest committed row, so k can never be exceeded, however many raters ask at once. On SQLite
every write transaction is serialised (BEGIN IMMEDIATE), which gives the same guarantee.

Left/right order: each assignment stores a random seed; the side is drawn from `random.Random(seed)` with
Efron's biased coin (p = 2/3 towards the side that balances the rater's history for the two systems, and
certainty once the imbalance reaches a bound, as in the "big stick" design), so
each rater sees each system on the left about half the time, and the draw can be replayed from the seed
and the imbalance recorded in the audit log. The history is kept as a counter per (study, rater, system)
(SideBalance: shown on the left minus on the right), raised in the transaction that makes the assignment, so
a claim reads two rows whatever the rater's history. A shown side stays shown: expiry and skips keep it.

Spacing: with `Study.space_prompts` the claim first looks for a pair whose prompt is not among the prompts of
the rater's last SPACE_PROMPTS_LAST pairs, and takes one of them only when nothing else is left.

Cost: the clinician's page loop is hot, so a claim is a handful of statements. On PostgreSQL the pick and the
count-in are one `UPDATE comparison ... WHERE id = (SELECT ... FOR NO KEY UPDATE SKIP LOCKED LIMIT 1) AND
active_assignments < k RETURNING ...` that also returns the two systems and their side counters; the general
ORM path (any database, every candidate locked, overlap steering) stays as the fallback.
"""

import functools
import math
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from annotations import compiled
from annotations.models import (
    Assignment,
    Comparison,
    Rater,
    Rating,
    Response,
    SideBalance,
    Study,
    StudyMembership,
)
from annotations.services.accounts import clinician_rater_ensure, study_member_set
from annotations.services.audit import audit_record
from annotations.services.studies import study_criteria

LIVE_STATUSES = (Assignment.Status.LEASED, Assignment.Status.SUBMITTED)
COUNTED_PURPOSES = (Assignment.Purpose.RATING,)  # only these hold one of a comparison's k places
BIASED_COIN_P = 2 / 3  # Efron (1971): probability of the balancing side when the history is unbalanced
BIG_STICK = 3  # Soares & Wu (1983): beyond this imbalance the balancing side is certain
EXPIRE_BATCH = 500
SPACE_PROMPTS_LAST = 3  # with Study.space_prompts: avoid the prompts of the rater's last three pairs


# ---- raters -----------------------------------------------------------------------------------


def rater_for_user(*, user: AbstractBaseUser) -> Rater:
    """The clinician rater of an account, with the account attached (saves a query for audit rows)."""
    rater = clinician_rater_ensure(user=user)
    rater.user = user
    return rater


@transaction.atomic
def clinician_assign(
    *, study: Study, user: AbstractBaseUser, actor: AbstractBaseUser | None, quota: int | None = None
) -> StudyMembership:
    """Make `user` a clinician member of `study` (with an optional personal quota) and ensure their rater.

    Refuses to turn a researcher or owner of the study into a rater of it."""
    existing = StudyMembership.objects.filter(study=study, user=user).first()
    if existing is not None and existing.role != StudyMembership.Role.CLINICIAN:
        raise ValidationError({"user": f"{user.get_username()} is already a {existing.role} of this study."})
    return study_member_set(study=study, user=user, role=StudyMembership.Role.CLINICIAN, actor=actor, quota=quota)


def rater_quota(*, study: Study, rater: Rater) -> int | None:
    """The rater's personal quota in the study, else the study's per-rater quota, else None (no limit)."""
    quota = None
    if rater.user_id is not None:
        quota = (
            StudyMembership.objects.filter(study=study, user_id=rater.user_id).values_list("quota", flat=True).first()
        )
    return quota_of(study=study, member_quota=quota)


def quota_of(*, study: Study, member_quota: int | None) -> int | None:
    """A member's quota: their own (`member_quota`, from their membership), else the study's, else None."""
    return member_quota if member_quota is not None else study.quota_per_rater


# ---- left/right order -------------------------------------------------------------------------


def order_draw(*, seed: int, imbalance: int) -> bool:
    """Whether the comparison's first response goes on the left.

    `imbalance` is (times the first response's system was on the left - times on the right) minus the same
    for the second system, over the rater's earlier assignments. Pure: the same seed and imbalance always
    give the same side, so any assignment's order can be replayed.
    """
    if imbalance == 0:
        p_first_left = 0.5
    elif abs(imbalance) >= BIG_STICK:
        p_first_left = 0.0 if imbalance > 0 else 1.0
    elif imbalance > 0:
        p_first_left = 1 - BIASED_COIN_P
    else:
        p_first_left = BIASED_COIN_P
    return random.Random(seed).random() < p_first_left


def _side_imbalance(*, study: Study, rater: Rater, first_system: int, second_system: int) -> int:
    """(left - right) of first_system minus (left - right) of second_system in the rater's shown pairs.

    Two rows of the SideBalance counter, whatever the length of the rater's history."""
    lead = dict(
        SideBalance.objects.filter(study=study, rater=rater, system_id__in=(first_system, second_system)).values_list(
            "system_id", "lead"
        )
    )
    return lead.get(first_system, 0) - lead.get(second_system, 0)


def _side_balance_sql(*, study_id: int, rater_id: int, left_system: int, right_system: int) -> tuple[str, list]:
    """Count one shown pair: its left system +1, its right system -1. One upsert (PostgreSQL and SQLite), adding
    to the stored value, so it is right even without the rater's lock."""
    table = connection.ops.quote_name(SideBalance._meta.db_table)
    return (
        # Table names and placeholders only.
        f"INSERT INTO {table} (study_id, rater_id, system_id, lead) VALUES (%s, %s, %s, 1), (%s, %s, %s, -1) "  # noqa: S608
        f"ON CONFLICT (study_id, rater_id, system_id) DO UPDATE SET lead = {table}.lead + excluded.lead",
        [study_id, rater_id, left_system, study_id, rater_id, right_system],
    )


def _insert_counted(assignment: Assignment, *, left_system: int, right_system: int) -> None:
    """Insert the new assignment and count its sides in the rater's SideBalance (nothing to balance between a
    system and itself). On PostgreSQL one statement, built once per process (annotations/compiled.py)."""
    balance = None
    if left_system != right_system:
        balance = _side_balance_sql(
            study_id=assignment.study_id,
            rater_id=assignment.rater_id,
            left_system=left_system,
            right_system=right_system,
        )
    if connection.vendor != "postgresql":
        assignment.save(force_insert=True)
        if balance is not None:
            with connection.cursor() as cursor:
                cursor.execute(*balance)
        return
    compiled.writes(Assignment).insert([assignment], along=balance)


# ---- leases -----------------------------------------------------------------------------------


def leases_expire(*, study: Study, now: datetime | None = None, exclude_rater: Rater | None = None) -> int:
    """Expire leases past their time and return their comparisons to the pool. Returns how many expired.

    Each row is expired with a conditional update, so two sweeps running at once never decrement twice.
    """
    now = now or timezone.now()
    stale = Assignment.objects.filter(study=study, status=Assignment.Status.LEASED, leased_until__lt=now)
    if exclude_rater is not None:
        stale = stale.exclude(rater=exclude_rater)
    rows = list(stale.order_by("comparison_id", "pk").values_list("pk", "comparison_id", "purpose")[:EXPIRE_BATCH])
    expired = 0
    for pk, comparison_id, purpose in rows:
        with transaction.atomic():
            changed = Assignment.objects.filter(pk=pk, status=Assignment.Status.LEASED, leased_until__lt=now).update(
                status=Assignment.Status.EXPIRED
            )
            if not changed:
                continue
            expired += 1
            if purpose in COUNTED_PURPOSES:
                Comparison.objects.filter(pk=comparison_id, active_assignments__gt=0).update(
                    active_assignments=F("active_assignments") - 1
                )
            audit_record(
                actor=None,
                actor_label="system",
                action="assignment.expire",
                study=study,
                obj=None,
                data={"assignment": pk},
            )
    return expired


# Leases last tens of minutes, so sweeping a study once every few seconds per process is as good as on
# every request, and it saves a query on the hot path. Leases are also swept from the study page.
SWEEP_INTERVAL = timedelta(seconds=10)
_last_sweep: dict[int, datetime] = {}


def _sweep_due(*, study_id: int, now: datetime) -> bool:
    last = _last_sweep.get(study_id)
    if last is not None and last <= now < last + SWEEP_INTERVAL:
        return False
    _last_sweep[study_id] = now
    return True


# ---- the next pair ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RaterCounts:
    submitted: int
    leased: int
    calibration_started: int  # calibration items submitted or leased
    counted_for_quota: int  # live rating and gold items


def rater_counts(*, study: Study, rater: Rater) -> RaterCounts:
    live = Q(status__in=LIVE_STATUSES)
    counts = Assignment.objects.filter(study=study, rater=rater).aggregate(
        submitted=Count("id", filter=Q(status=Assignment.Status.SUBMITTED)),
        leased=Count("id", filter=Q(status=Assignment.Status.LEASED)),
        calibration=Count("id", filter=live & Q(purpose=Assignment.Purpose.CALIBRATION)),
        quota=Count("id", filter=live & ~Q(purpose=Assignment.Purpose.CALIBRATION)),
    )
    return RaterCounts(
        submitted=counts["submitted"],
        leased=counts["leased"],
        calibration_started=counts["calibration"],
        counted_for_quota=counts["quota"],
    )


def _unseen_by(rater_id: int, study_id: int):
    """Comparisons the rater has no assignment of. As NOT IN over the rater's comparison ids, which PostgreSQL
    reads once and hashes (a hashed SubPlan): an anti-join's plan hangs on the statistics, and with a rater's
    count underestimated (a table analysed while it was small) it rescanned the rater's whole history for every
    candidate, a claim quadratic in the history (14 ms at 500 pairs, bench/rating_loop.py --clients 1)."""
    # This study's pairs only (by the assignment_rater_recent index): the rater's other studies never count.
    return ~Q(pk__in=Subquery(Assignment.objects.filter(rater_id=rater_id, study_id=study_id).values("comparison_id")))


def _pick_gold(*, study: Study, rater: Rater, calibration: bool = False) -> Comparison | None:
    # Calibration takes the calibration set first; hidden gold checks take the other gold items first.
    return (
        Comparison.objects.filter(study=study, is_gold=True, excluded=False)
        .filter(_unseen_by(rater.pk, study.pk))
        .annotate(first_system=F("response_first__system_id"), second_system=F("response_second__system_id"))
        .select_related("prompt", "response_first", "response_second")
        .order_by("-is_calibration" if calibration else "is_calibration", "id")
        .first()
    )


def _overlap_partners(*, study: Study, rater: Rater) -> list[int]:
    """Other clinician raters this rater still shares fewer than the required comparisons with."""
    needed = study.min_shared_per_rater_pair
    mine = Assignment.objects.filter(
        study=study, rater=rater, status__in=LIVE_STATUSES, purpose=Assignment.Purpose.RATING
    ).values("comparison_id")
    shared = dict(
        Assignment.objects.filter(
            study=study, comparison_id__in=mine, status__in=LIVE_STATUSES, purpose=Assignment.Purpose.RATING
        )
        .exclude(rater=rater)
        .values_list("rater_id")
        .annotate(n=Count("id"))
    )
    others = Rater.objects.filter(
        kind=Rater.Kind.CLINICIAN,
        user__study_memberships__study=study,
        user__study_memberships__role=StudyMembership.Role.CLINICIAN,
    ).exclude(pk=rater.pk)
    return [pk for pk in others.values_list("pk", flat=True) if shared.get(pk, 0) < needed]


@dataclass
class _Claim:
    """A comparison just counted in for the rater (its place among the k is taken)."""

    comparison_id: int
    first_system: int
    second_system: int
    imbalance: int
    comparison: Comparison | None = None  # loaded with its texts on the ORM path


def _recent_prompts(*, study_id: int, rater_id: int):
    """The prompts of the rater's last few pairs (newest ids first: the primary key follows creation)."""
    return (
        Assignment.objects.filter(study_id=study_id, rater_id=rater_id)
        .order_by("-pk")
        .values("comparison__prompt_id")[:SPACE_PROMPTS_LAST]
    )


def _claim_in_one_statement(*, study: Study, rater: Rater, pick: "compiled.CompiledQuery") -> _Claim | None:
    """PostgreSQL: pick, lock and count in one comparison of the pool in a single statement that also returns
    its two systems and the rater's side counters for them. None when every candidate is taken or held.
    `pick` is the pool's "first free candidate" query, compiled once per process (_pool_pick)."""
    pick_sql = pick.sql
    pick_params = pick.bind({"study_id": study.pk, "rater_id": rater.pk, "overlap_k": study.overlap_k})
    qn = connection.ops.quote_name
    comparison, response, balance = (
        qn(Comparison._meta.db_table),
        qn(Response._meta.db_table),
        qn(SideBalance._meta.db_table),
    )
    # Table names, placeholders and the ORM's own SQL for the pick only.
    lead = (
        f"(SELECT b.lead FROM {balance} b WHERE b.study_id = %s AND b.rater_id = %s AND b.system_id = {{}}.system_id)"  # noqa: S608
    )
    sql = (
        f"UPDATE {comparison} AS c SET active_assignments = c.active_assignments + 1 "  # noqa: S608
        f"FROM {response} r1, {response} r2 "
        f"WHERE c.id = ({pick_sql}) AND c.active_assignments < %s "
        f"AND r1.id = c.response_first_id AND r2.id = c.response_second_id "
        f"RETURNING c.id, r1.system_id, r2.system_id, {lead.format('r1')}, {lead.format('r2')}"
    )
    params = [*pick_params, study.overlap_k, study.pk, rater.pk, study.pk, rater.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    comparison_id, first_system, second_system, lead_first, lead_second = row
    return _Claim(comparison_id, first_system, second_system, (lead_first or 0) - (lead_second or 0))


def _pool_queries(
    *,
    study_id: int,
    rater_id: int,
    overlap_k: int,
    one_prompt_per_rater: bool,
    spaced: bool,
    partners: list[int] | None = None,
) -> list[QuerySet]:
    """The comparisons the rater may take, as querysets to try in order: with an overlap partner first (when
    `partners` is given), then spaced away from the rater's last prompts (when `spaced`), then any."""
    pool = Comparison.objects.filter(
        study_id=study_id, is_gold=False, excluded=False, active_assignments__lt=overlap_k
    ).filter(_unseen_by(rater_id, study_id))
    if one_prompt_per_rater:
        pool = pool.exclude(
            Exists(Assignment.objects.filter(rater_id=rater_id, comparison__prompt_id=OuterRef("prompt_id")))
        )
    queries = [pool]
    if partners:
        shares_with_partner = Exists(
            Assignment.objects.filter(comparison=OuterRef("pk"), rater_id__in=partners, status__in=LIVE_STATUSES)
        )
        queries.insert(0, pool.filter(shares_with_partner))
    if spaced:
        # Spaced first: a pair of a prompt the rater has just seen only when nothing else is left.
        recent = _recent_prompts(study_id=study_id, rater_id=rater_id)
        queries = [q for query in queries for q in (query.exclude(prompt_id__in=Subquery(recent)), query)]
    return queries


def _pool_pick(*, study_id: int, rater_id: int, overlap_k: int, one_prompt_per_rater: bool, spaced: bool, index: int):
    """The index-th pool query's first free candidate, locked (skipping rows other claims hold)."""
    pool = _pool_queries(
        study_id=study_id,
        rater_id=rater_id,
        overlap_k=overlap_k,
        one_prompt_per_rater=one_prompt_per_rater,
        spaced=spaced,
    )[index]
    return (
        pool.order_by("-active_assignments", "id")
        .values("pk")[:1]
        .select_for_update(skip_locked=True, no_key=True, of=("self",))
    )


def _claim_regular(*, study: Study, rater: Rater) -> _Claim | None:
    """Lock and count in one comparison below k that the rater may take; None when the pool is empty."""
    spaced = study.space_prompts and not study.one_prompt_per_rater
    if connection.vendor == "postgresql" and not study.min_shared_per_rater_pair:
        for index in range(2 if spaced else 1):
            pick = compiled.compiled(
                ("claim_pick", study.one_prompt_per_rater, spaced, index),
                functools.partial(
                    _pool_pick, one_prompt_per_rater=study.one_prompt_per_rater, spaced=spaced, index=index
                ),
                {"study_id": int, "rater_id": int, "overlap_k": int},
            )
            claim = _claim_in_one_statement(study=study, rater=rater, pick=pick)
            if claim is not None:
                return claim
    partners = _overlap_partners(study=study, rater=rater) if study.min_shared_per_rater_pair else None
    queries = _pool_queries(
        study_id=study.pk,
        rater_id=rater.pk,
        overlap_k=study.overlap_k,
        one_prompt_per_rater=study.one_prompt_per_rater,
        spaced=spaced,
        partners=partners,
    )
    for query in queries:
        ordered = (
            query.annotate(first_system=F("response_first__system_id"), second_system=F("response_second__system_id"))
            .select_related("prompt", "response_first", "response_second")
            .order_by("-active_assignments", "id")
        )
        for _ in range(20):
            # Skip rows other claims hold, so fifty raters at once spread over the pool instead of queueing.
            candidate = ordered.select_for_update(skip_locked=True, no_key=True, of=("self",)).first()
            if candidate is None:
                if not ordered.exists():
                    break
                # Every candidate is held by a claim in flight. Wait on just one row, in the conditional update
                # below (no lock is taken here): holding no other comparison lock while waiting rules out
                # deadlocks, and PostgreSQL re-checks "below k" once the row is free.
                candidate = ordered.first()
                if candidate is None:
                    break
            claimed = Comparison.objects.filter(pk=candidate.pk, active_assignments__lt=study.overlap_k).update(
                active_assignments=F("active_assignments") + 1
            )
            if claimed == 1:
                return _Claim(
                    candidate.pk,
                    candidate.first_system,
                    candidate.second_system,
                    _side_imbalance(
                        study=study,
                        rater=rater,
                        first_system=candidate.first_system,
                        second_system=candidate.second_system,
                    ),
                    comparison=candidate,
                )
    return None


def _wants_gold(*, study: Study, rater: Rater, done: int) -> bool:
    if study.gold_rate <= 0:
        return False
    # Seeded by rater and position, so a rater's mix is reproducible yet differs between raters.
    return random.Random(f"gold:{study.pk}:{rater.pk}:{done}").random() < study.gold_rate


def leases_sweep_if_due(*, study: Study, rater: Rater | None = None, now: datetime | None = None) -> None:
    """Expire other raters' stale leases in the study, at most once per SWEEP_INTERVAL in this process."""
    now = now or timezone.now()
    if _sweep_due(study_id=study.pk, now=now):
        leases_expire(study=study, now=now, exclude_rater=rater)


_UNKNOWN: Any = object()


def _comparison_with_texts(*, pk: int):
    return Comparison.objects.select_related("prompt", "response_first", "response_second").filter(pk=pk)[:1]


@dataclass(frozen=True)
class NextClaim:
    assignment: Assignment
    audit: dict[str, Any] | None  # the audit_record() arguments of a new claim; None when a lease is resumed


def assignment_next(
    *,
    study: Study,
    rater: Rater,
    now: datetime | None = None,
    with_content: bool = True,
    member_quota: int | None = _UNKNOWN,
) -> Assignment | None:
    """The rater's current pair, or a newly claimed one; None when nothing is left for them (or the study
    is not open, or their quota is reached).

    `with_content=False` (the pages, which redirect to the pair) skips loading the pair's texts;
    `member_quota` (their membership's quota, when the caller read it with the membership) saves a query."""
    now = now or timezone.now()
    if study.status != Study.Status.OPEN:
        return None
    leases_sweep_if_due(study=study, rater=rater, now=now)
    with transaction.atomic():
        # Serialise this rater's requests: a double click or two tabs must not claim two pairs.
        list(Rater.objects.select_for_update(no_key=True).filter(pk=rater.pk).values_list("pk", flat=True))
        quota = _UNKNOWN if member_quota is _UNKNOWN else quota_of(study=study, member_quota=member_quota)
        claim = assignment_next_locked(study=study, rater=rater, now=now, with_content=with_content, quota=quota)
        if claim is None:
            return None
        if claim.audit is not None:
            audit_record(**claim.audit)
        return claim.assignment


def assignment_next_locked(
    *,
    study: Study,
    rater: Rater,
    now: datetime,
    with_content: bool = True,
    current_pk: int | None = _UNKNOWN,
    quota: int | None = _UNKNOWN,
) -> NextClaim | None:
    """assignment_next's work, inside the caller's transaction, with the rater's row already locked. Leaves
    the audit row to the caller (so a submit and the next claim can append theirs together).

    `current_pk` (the rater's live lease in the study, if any) and `quota` may be passed when the caller has
    already read them; otherwise they are read here."""
    lease_until = now + timedelta(minutes=study.lease_minutes)
    if current_pk is _UNKNOWN:
        # Usually there is no current lease (the rater just submitted): look for its id first, and load the
        # pair's content only when there is one, which keeps the common path to a small query.
        current_pk = (
            Assignment.objects.filter(study=study, rater=rater, status=Assignment.Status.LEASED)
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)
            .first()
        )
    if current_pk is not None:
        # Renew it: still counted in its comparison unless another rater's sweep expired it a moment ago.
        renewed = Assignment.objects.filter(pk=current_pk, status=Assignment.Status.LEASED).update(
            leased_until=lease_until
        )
        if renewed == 1:
            related = ("comparison__prompt", "comparison__response_first", "comparison__response_second")
            current = Assignment.objects.select_related(*(related if with_content else ())).get(pk=current_pk)
            current.study = study
            return NextClaim(current, None)
    if quota is _UNKNOWN:
        quota = rater_quota(study=study, rater=rater)
    # Counting the rater's work is needed only for calibration, quotas and gold.
    needs_counts = study.calibration_size or study.gold_rate > 0 or quota is not None
    counts = rater_counts(study=study, rater=rater) if needs_counts else None
    purpose = Assignment.Purpose.RATING
    picked: Comparison | None = None
    if counts is not None and counts.calibration_started < study.calibration_size:
        picked = _pick_gold(study=study, rater=rater, calibration=True)
        purpose = Assignment.Purpose.CALIBRATION
    if picked is None and counts is not None:
        if quota is not None and counts.counted_for_quota >= quota:
            return None
        if _wants_gold(study=study, rater=rater, done=counts.counted_for_quota):
            picked = _pick_gold(study=study, rater=rater)
            purpose = Assignment.Purpose.GOLD
    if picked is not None:
        claim = _Claim(
            picked.pk,
            picked.first_system,
            picked.second_system,
            _side_imbalance(
                study=study, rater=rater, first_system=picked.first_system, second_system=picked.second_system
            ),
            comparison=picked,
        )
    else:
        claim = _claim_regular(study=study, rater=rater)
        purpose = Assignment.Purpose.RATING
    if claim is None:
        return None
    seed = secrets.randbits(63)
    left_is_first = order_draw(seed=seed, imbalance=claim.imbalance)
    assignment = Assignment(
        study=study,
        comparison_id=claim.comparison_id,
        rater=rater,
        purpose=purpose,
        left_is_first=left_is_first,
        order_seed=seed,
        leased_until=lease_until,
    )
    if claim.comparison is not None:
        assignment.comparison = claim.comparison
    left, right = (
        (claim.first_system, claim.second_system) if left_is_first else (claim.second_system, claim.first_system)
    )
    _insert_counted(assignment, left_system=left, right_system=right)
    if with_content and claim.comparison is None:
        assignment.comparison = compiled.first(
            "claim_content", _comparison_with_texts, {"pk": int}, pk=claim.comparison_id
        )
    audit = {
        "actor": rater.user if rater.user_id else None,
        "actor_label": rater.label,
        "action": "assignment.claim",
        "study": study,
        "obj": assignment,
        "data": {
            "comparison": claim.comparison_id,
            "purpose": purpose,
            "seed": seed,
            "imbalance": claim.imbalance,
            "left_is_first": left_is_first,
        },
    }
    return NextClaim(assignment, audit)


@transaction.atomic
def assignment_skip(*, assignment: Assignment, rater: Rater, reason: str) -> Assignment:
    """Give a pair back with a reason; its place returns to the pool and this rater never sees it again."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"skip_reason": "Say briefly why you are skipping this pair."})
    locked = Assignment.objects.select_for_update(of=("self",)).get(pk=assignment.pk, rater=rater)
    if locked.status == Assignment.Status.SKIPPED:
        return locked  # a repeated click
    if locked.status == Assignment.Status.SUBMITTED:
        raise ValidationError({"skip_reason": "This pair is already submitted."}, code="already_submitted")
    if locked.status == Assignment.Status.LEASED and locked.purpose in COUNTED_PURPOSES:
        Comparison.objects.filter(pk=locked.comparison_id, active_assignments__gt=0).update(
            active_assignments=F("active_assignments") - 1
        )
    locked.status = Assignment.Status.SKIPPED
    locked.skip_reason = reason[:2000]
    locked.save(update_fields=["status", "skip_reason"])
    audit_record(
        actor=rater.user if rater.user_id else None,
        actor_label=rater.label,
        action="assignment.skip",
        study=locked.study,
        obj=locked,
        data={"reason": locked.skip_reason},
    )
    return locked


@transaction.atomic
def assignment_take_back(*, assignment: Assignment, rater: Rater, now: datetime | None = None) -> Assignment:
    """Undo a skip while the study is open: the pair is leased to this rater again, if its place is still free.

    The skip gave the place back to the pool, so another clinician may have filled it since; the conditional
    update claims the place only while the comparison is below k, like a fresh claim does."""
    now = now or timezone.now()
    locked = (
        Assignment.objects.select_for_update(of=("self",)).select_related("study").get(pk=assignment.pk, rater=rater)
    )
    study = locked.study
    if locked.status != Assignment.Status.SKIPPED:
        return locked  # a repeated click, or never skipped
    if study.status != Study.Status.OPEN:
        raise ValidationError("The study is closed, so skipped pairs can no longer be taken back.", code="study_closed")
    if locked.purpose in COUNTED_PURPOSES:
        claimed = Comparison.objects.filter(
            pk=locked.comparison_id, excluded=False, active_assignments__lt=study.overlap_k
        ).update(active_assignments=F("active_assignments") + 1)
        if claimed != 1:
            raise ValidationError(
                "Other clinicians have already rated this pair in your place, so it cannot be taken back.",
                code="place_taken",
            )
    locked.status = Assignment.Status.LEASED
    locked.leased_until = now + timedelta(minutes=study.lease_minutes)
    locked.save(update_fields=["status", "leased_until"])
    audit_record(
        actor=rater.user if rater.user_id else None,
        actor_label=rater.label,
        action="assignment.take_back",
        study=study,
        obj=locked,
        data={"skip_reason": locked.skip_reason},
    )
    return locked


# ---- reads for the researcher's progress page -------------------------------------------------


@dataclass(frozen=True)
class OverlapShortfall:
    rater_a: str
    rater_b: str
    shared: int


def overlap_shortfalls(*, study: Study) -> list[OverlapShortfall]:
    """Pairs of clinician members who share fewer live comparisons than the study requires."""
    needed = study.min_shared_per_rater_pair
    if not needed:
        return []
    raters = dict(
        Rater.objects.filter(
            user__study_memberships__study=study, user__study_memberships__role=StudyMembership.Role.CLINICIAN
        ).values_list("pk", "label")
    )
    by_comparison: dict[int, list[int]] = {}
    for comparison_id, rater_id in Assignment.objects.filter(
        study=study, status__in=LIVE_STATUSES, purpose=Assignment.Purpose.RATING, rater_id__in=list(raters)
    ).values_list("comparison_id", "rater_id"):
        by_comparison.setdefault(comparison_id, []).append(rater_id)
    shared: dict[tuple[int, int], int] = {}
    for members in by_comparison.values():
        for a, b in combinations(sorted(members), 2):
            shared[(a, b)] = shared.get((a, b), 0) + 1
    shortfalls = []
    for a, b in combinations(sorted(raters), 2):
        n = shared.get((a, b), 0)
        if n < needed:
            shortfalls.append(OverlapShortfall(raters[a], raters[b], n))
    return sorted(shortfalls, key=lambda s: (s.shared, s.rater_a, s.rater_b))


def fair_share(*, comparisons: int, overlap_k: int, clinicians: int) -> int:
    """A rater's share of the study's rating work when it is spread evenly."""
    if clinicians <= 0:
        return 0
    return min(comparisons, math.ceil(comparisons * min(overlap_k, clinicians) / clinicians))


@dataclass(frozen=True)
class RaterProgress:
    """Where a clinician stands in a study, for the pair page: "pair n of N", what is left, time today."""

    done: int  # submitted rating and gold pairs (calibration is practice, not counted)
    target: int  # their quota, else their fair share of the study
    seconds_today: float  # active time on pairs submitted today, in any study

    @property
    def remaining(self) -> int:
        return max(self.target - self.done, 0)


def rater_progress(*, study: Study, rater: Rater, now: datetime | None = None) -> RaterProgress:
    """Three queries whatever the study's size (the rater's own counts, the quota, the study's clinicians for the
    fair share), and its comparisons from study_regular_comparisons."""
    today = day_start(now)
    submitted = Q(status=Assignment.Status.SUBMITTED)
    mine = Assignment.objects.filter(rater=rater).aggregate(
        done=Count("id", filter=submitted & Q(study=study) & ~Q(purpose=Assignment.Purpose.CALIBRATION)),
        seconds_today=Sum("active_seconds", filter=submitted & Q(submitted_at__gte=today), default=0.0),
    )
    target = rater_quota(study=study, rater=rater)
    if target is None:
        clinicians = StudyMembership.objects.filter(study=study, role=StudyMembership.Role.CLINICIAN).count()
        target = fair_share(
            comparisons=study_regular_comparisons(study), overlap_k=study.overlap_k, clinicians=clinicians
        )
    return RaterProgress(
        done=mine["done"], target=max(target, mine["done"]), seconds_today=float(mine["seconds_today"])
    )


# How long a process reuses a study's count of comparisons (for "pair n of N"). Counting them on every pair
# page cost more database time than the rest of the page: a scan of the study's comparisons, 0.3 ms at 2,000
# and growing with the study. A pair excluded or made gold shows in N within this many seconds.
STUDY_SIZE_SECONDS = 10.0
_STUDY_SIZE: dict[tuple[int, datetime], tuple[float, int]] = {}


def study_regular_comparisons(study: Study) -> int:
    """The study's comparisons that count towards a clinician's share (not excluded, not gold), from the
    per-process cache when read in the last STUDY_SIZE_SECONDS."""
    key = (study.pk, study.created_at)  # created_at too: a test database hands the same id out again
    found = _STUDY_SIZE.get(key)
    now = time.monotonic()
    if found is None or now - found[0] > STUDY_SIZE_SECONDS:
        found = (now, Comparison.objects.filter(study=study, excluded=False, is_gold=False).count())
        if len(_STUDY_SIZE) > 1000:
            _STUDY_SIZE.clear()
        _STUDY_SIZE[key] = found
    return found[1]


def day_start(now: datetime | None = None) -> datetime:
    """Midnight of `now` (default: now) in the site's time zone: where "time today" starts counting."""
    return timezone.localtime(now or timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)


def rater_progress_extra(*, user_id: int, today: datetime) -> tuple[dict[str, str], list]:
    """rater_progress as extra columns of an Assignment query (`.extra(select=..., select_params=...)`), so the
    pair page reads them in its one query: the rater's done count and time since `today` (day_start()), their
    membership's role and quota, and the study's clinicians for the fair share (its comparisons come from
    study_regular_comparisons). Plain SQL subselects on the outer row's study and rater."""
    qn = connection.ops.quote_name
    assignment, membership = (qn(m._meta.db_table) for m in (Assignment, StudyMembership))
    outer_study, outer_rater = f"{assignment}.{qn('study_id')}", f"{assignment}.{qn('rater_id')}"
    submitted = Assignment.Status.SUBMITTED.value
    member = f"FROM {membership} m WHERE m.study_id = {outer_study} AND m.user_id = %s ORDER BY m.id LIMIT 1"
    select = {
        "member_role": f"SELECT m.role {member}",
        "member_quota": f"SELECT m.quota {member}",
        "progress_done": (
            f"SELECT COUNT(*) FROM {assignment} a WHERE a.rater_id = {outer_rater} AND a.study_id = {outer_study} "  # noqa: S608
            f"AND a.status = '{submitted}' AND a.purpose <> '{Assignment.Purpose.CALIBRATION.value}'"
        ),
        "progress_seconds_today": (
            f"SELECT COALESCE(SUM(a.active_seconds), 0) FROM {assignment} a WHERE a.rater_id = {outer_rater} "  # noqa: S608
            f"AND a.status = '{submitted}' AND a.submitted_at >= %s"
        ),
        "study_clinicians": (
            f"SELECT COUNT(*) FROM {membership} m WHERE m.study_id = {outer_study} "  # noqa: S608
            f"AND m.role = '{StudyMembership.Role.CLINICIAN.value}'"
        ),
    }
    return select, [user_id, user_id, today]


def rater_progress_from(*, study: Study, row: Any) -> RaterProgress:
    """The RaterProgress of an assignment fetched with rater_progress_annotations (no further query)."""
    done = row.progress_done or 0
    target = quota_of(study=study, member_quota=row.member_quota)
    if target is None:
        target = fair_share(
            comparisons=study_regular_comparisons(study),
            overlap_k=study.overlap_k,
            clinicians=row.study_clinicians or 0,
        )
    return RaterProgress(done=done, target=max(target, done), seconds_today=float(row.progress_seconds_today or 0))


WORKSPACE_SETTINGS = (
    "overlap_k",
    "lease_minutes",
    "quota_per_rater",
    "one_prompt_per_rater",
    "space_prompts",
    "min_shared_per_rater_pair",
    "calibration_size",
    "gold_rate",
    "rationale_mode",
    "rationale_required",
    "rationale_min_length",
)


@transaction.atomic
def study_workspace_configure(*, study: Study, actor: AbstractBaseUser | None, **changes: object) -> Study:
    """Change how the workspace hands out and checks work (see WORKSPACE_SETTINGS). Validated, audited."""
    unknown = set(changes) - set(WORKSPACE_SETTINGS)
    if unknown:
        raise ValidationError({"settings": f"Unknown settings: {', '.join(sorted(unknown))}."})
    locked = Study.objects.select_for_update().get(pk=study.pk)
    before = {name: getattr(locked, name) for name in changes}
    for name, value in changes.items():
        setattr(locked, name, value)
    if not 0 <= locked.gold_rate <= 1:
        raise ValidationError({"gold_rate": "Expected a share from 0 to 1."})
    if locked.lease_minutes < 1:
        raise ValidationError({"lease_minutes": "Leases last at least one minute."})
    locked.full_clean()
    locked.save(update_fields=list(changes))
    audit_record(
        actor=actor,
        action="study.workspace_settings",
        study=locked,
        obj=locked,
        data={"before": before, "after": changes},
    )
    return locked


def workspace_progress(*, study: Study, now: datetime | None = None, listed: int = 50) -> dict:
    """The researcher's view of rating progress: per criterion, per rater, below k, leases, safety queue."""
    from annotations.services.rating import gold_accuracy  # rating imports this module

    now = now or timezone.now()
    regular = Comparison.objects.filter(study=study, is_gold=False, excluded=False)
    totals = regular.aggregate(
        comparisons=Count("id"),
        below_k=Count("id", filter=Q(active_assignments__lt=study.overlap_k)),
        untouched=Count("id", filter=Q(active_assignments=0)),
    )
    target = totals["comparisons"] * study.overlap_k
    rated = dict(
        Rating.objects.filter(assignment__study=study, assignment__purpose=Assignment.Purpose.RATING)
        .values_list("criterion_id")
        .annotate(n=Count("id"))
    )
    # The three kinds of rater counted apart, as the overview and the report count them: "ratings" stays the
    # platform clinicians' progress towards the target; `by_kind` says what else (imported, judged) there is.
    from annotations.selectors_reports import RATER_KINDS, study_rater_counts

    rater_counts = study_rater_counts(study=study)
    per_criterion = [
        {
            "key": c.key,
            "title": c.title,
            "version": c.version,
            "ratings": rated.get(c.pk, 0),
            "target": target,
            "by_kind": rater_counts["per_criterion"].get(c.pk, dict.fromkeys(RATER_KINDS, 0)),
        }
        for c in study_criteria(study)
    ]
    gold = gold_accuracy(study=study)
    calibration = gold_accuracy(study=study, purpose=Assignment.Purpose.CALIBRATION)
    per_rater = []
    for row in (
        Assignment.objects.filter(study=study)
        .exclude(purpose=Assignment.Purpose.IMPORTED)
        .values("rater__label")
        .annotate(
            submitted=Count("id", filter=Q(status=Assignment.Status.SUBMITTED, purpose=Assignment.Purpose.RATING)),
            gold=Count("id", filter=Q(status=Assignment.Status.SUBMITTED, purpose=Assignment.Purpose.GOLD)),
            calibration=Count(
                "id", filter=Q(status=Assignment.Status.SUBMITTED, purpose=Assignment.Purpose.CALIBRATION)
            ),
            leased=Count("id", filter=Q(status=Assignment.Status.LEASED)),
            skipped=Count("id", filter=Q(status=Assignment.Status.SKIPPED)),
            expired=Count("id", filter=Q(status=Assignment.Status.EXPIRED)),
            flagged=Count("id", filter=Q(both_unacceptable=True)),
            active_seconds=Sum("active_seconds", filter=Q(status=Assignment.Status.SUBMITTED)),
            total_seconds=Sum("total_seconds", filter=Q(status=Assignment.Status.SUBMITTED)),
        )
        .order_by("rater__label")
    ):
        label = row["rater__label"]
        done = row["submitted"] + row["gold"] + row["calibration"]
        per_rater.append(
            {
                "rater": label,
                **{k: v for k, v in row.items() if k not in ("rater__label", "active_seconds", "total_seconds")},
                "mean_active_seconds": (row["active_seconds"] or 0) / done if done else None,
                "mean_total_seconds": (row["total_seconds"] or 0) / done if done else None,
                "gold_accuracy": gold[label].accuracy if label in gold else None,
                "gold_checks": gold[label].checks if label in gold else 0,
                "calibration_accuracy": calibration[label].accuracy if label in calibration else None,
            }
        )
    below_k = list(
        regular.filter(active_assignments__lt=study.overlap_k)
        .order_by("-active_assignments", "id")
        .values("id", "active_assignments", prompt_external_id=F("prompt__external_id"))[:listed]
    )
    leases = Assignment.objects.filter(study=study).aggregate(
        overdue=Count("id", filter=Q(status=Assignment.Status.LEASED, leased_until__lt=now)),
        live=Count("id", filter=Q(status=Assignment.Status.LEASED, leased_until__gte=now)),
        expired=Count("id", filter=Q(status=Assignment.Status.EXPIRED)),
    )
    safety_queue = list(
        Assignment.objects.filter(study=study, both_unacceptable=True, status=Assignment.Status.SUBMITTED)
        .order_by("-submitted_at")
        .values(
            "id",
            "unacceptable_reason",
            "submitted_at",
            rater_label=F("rater__label"),
            prompt_external_id=F("comparison__prompt__external_id"),
            first_system=F("comparison__response_first__system__name"),
            second_system=F("comparison__response_second__system__name"),
            first_response=F("comparison__response_first__external_id"),
            second_response=F("comparison__response_second__external_id"),
        )[:200]
    )
    return {
        "comparisons": totals["comparisons"],
        "comparisons_below_k": totals["below_k"],
        "comparisons_untouched": totals["untouched"],
        "gold_comparisons": Comparison.objects.filter(study=study, is_gold=True, excluded=False).count(),
        "target_ratings_per_criterion": target,
        "per_criterion": per_criterion,
        "rater_counts": rater_counts,
        "per_rater": per_rater,
        "below_k": below_k,
        "leases": leases,
        "safety_queue": safety_queue,
        "overlap_required": study.min_shared_per_rater_pair,
        "overlap_shortfalls": [s.__dict__ for s in overlap_shortfalls(study=study)],
    }
