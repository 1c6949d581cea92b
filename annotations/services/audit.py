"""The audit log: one writer (`audit_record`) that chains every row to its predecessor, and the verifier.

Each row's `row_hash` is sha256 over a canonical JSON of its content and the previous row's hash, in
`sequence` order (1, 2, 3, ... per deployment). Editing, deleting or inserting a row anywhere but at the
head breaks the chain; `audit_chain_verify` (`manage.py audit_verify`) names the first broken link.
What this does and does not defend against is written in docs/security.md.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import product, zip_longest
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, models, transaction
from django.utils import timezone

from annotations import compiled
from annotations.models import AuditEvent, Study

# The predecessor of the first row.
GENESIS_HASH = "0" * 64
# Key of the PostgreSQL transaction advisory lock that serializes appends to the chain (any fixed bigint
# works; this one is "auditlog" in ASCII, far from the two-int keys the export runs use).
CHAIN_LOCK_KEY = 0x6175646974_6C6F67
# Rows the verifier reads per round trip.
VERIFY_CHUNK = 2000
# Most (actor, study) combinations tried to recover the ids behind cleared links of one row.
RECOVERY_LIMIT = 200_000


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    study: Study | None = None,
    obj: models.Model | None = None,
    data: dict[str, Any] | None = None,
    actor_label: str = "",
) -> AuditEvent:
    """Append an audit row. Call inside the transaction of the change, so both commit or neither does.

    The chain's head is read under a lock held until that transaction ends: two transactions appending at
    once would otherwise both take the same predecessor. Call it last in a long transaction, since other
    audited writes wait for the lock."""
    entry = {"actor": actor, "action": action, "study": study, "obj": obj, "data": data, "actor_label": actor_label}
    return audit_record_many([entry])[0]


def audit_record_many(entries: list[dict[str, Any]]) -> list[AuditEvent]:
    """Append several audit rows (each a dict of audit_record's arguments) in one go: the chain's head is read
    once under the same lock and the rows go in with one INSERT, chained to each other in the order given.
    The chain is the same as from that many audit_record calls; the hot rating loop saves a round trip per row."""
    events = []
    for entry in entries:
        actor = entry.get("actor")
        obj = entry.get("obj")
        user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
        events.append(
            AuditEvent(
                actor=user,
                actor_label=entry.get("actor_label") or (user.get_username() if user else ""),
                action=entry["action"],
                study=entry.get("study"),
                object_type=obj._meta.model_name if obj is not None else "",
                object_id=str(obj.pk) if obj is not None else "",
                # The form a JSON column gives back (tuples become lists, keys strings): the hash is of what is stored.
                data=json.loads(json.dumps(entry.get("data") or {})),
            )
        )
    if not events:
        return events
    # No savepoint: a failure here must fail the caller's transaction anyway, and a savepoint costs two queries.
    with transaction.atomic(savepoint=False):
        sequence, prev_hash = _chain_head_locked()
        now = timezone.now()
        for event in events:
            event.sequence, event.prev_hash, event.created_at = sequence + 1, prev_hash, now
            event.row_hash = audit_row_hash(_hashed_fields(event))
            sequence, prev_hash = event.sequence, event.row_hash
        _insert_hashed(events)
    return events


def _insert_hashed(events: list[AuditEvent]) -> None:
    """The rows as hashed, in one statement: created_at is written as set (auto_now_add would replace it with
    a later clock reading). On PostgreSQL the statement is built once per process (annotations/compiled.py)."""
    meta = AuditEvent._meta
    if connection.vendor != "postgresql":
        fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
        returned = AuditEvent._base_manager._insert(
            events, fields=fields, returning_fields=[meta.pk], raw=True, using=transaction.get_connection().alias
        )
        for event, row in zip(events, returned or [], strict=False):
            event.pk = row[0]
            event._state.adding = False
        return
    compiled.writes(AuditEvent).insert(events, raw=True)


def audit_download(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    kind: str,
    study: Study,
    obj: models.Model,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record that someone took a copy of clinical data out of the platform (an export zip, a job's artifacts,
    a report file). Action `download.<kind>`, so the audit page's prefix filter `download.` lists them all."""
    return audit_record(actor=actor, action=f"download.{kind}", study=study, obj=obj, data=data)


def _chain_head_locked() -> tuple[int, str]:
    """(sequence, row_hash) of the newest chained row, (0, GENESIS_HASH) for an empty log, with the append lock
    held until the transaction ends.

    PostgreSQL: the function `annotations_audit_chain_head()` (migration 0006) takes a transaction advisory
    lock, then reads the head in a statement of its own, which sees the row of the previous lock holder,
    committed before the lock was granted; one round trip. SQLite: settings open every transaction with
    BEGIN IMMEDIATE, which already holds the database's single write lock."""
    if connection.vendor != "postgresql":
        return audit_chain_head()
    with connection.cursor() as cursor:
        cursor.execute("SELECT sequence, row_hash FROM annotations_audit_chain_head(%s)", [CHAIN_LOCK_KEY])
        sequence, row_hash = cursor.fetchone()
    return (sequence, row_hash) if sequence is not None else (0, GENESIS_HASH)


def audit_chain_head() -> tuple[int, str]:
    """(sequence, row_hash) of the newest chained row, (0, GENESIS_HASH) for an empty log. Also the value to
    copy somewhere the database's owners cannot write (`audit_verify --print-head`), so that a later
    verification can prove nothing was cut off the end or rewritten before it."""
    head = AuditEvent.objects.filter(sequence__isnull=False).order_by("-sequence").values_list("sequence", "row_hash")
    return head.first() or (0, GENESIS_HASH)


# ---- the hash --------------------------------------------------------------------------------------------

HASHED_FIELDS = (
    "sequence",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "study_id",
    "object_type",
    "object_id",
    "data",
    "prev_hash",
)


def _hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in HASHED_FIELDS}


def audit_row_hash(fields: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of one row: the HASHED_FIELDS, keys sorted, no spaces, the time in
    UTC with microseconds. Also used by migration 0006 to chain the rows written before the chain existed."""
    created_at: datetime = fields["created_at"]
    canonical = {
        **{name: fields[name] for name in HASHED_FIELDS},
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": _canonical_json_value(fields["data"]),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _canonical_json_value(value: Any) -> Any:
    # PostgreSQL's jsonb gives a float with an integral value back as an integer (1e16 -> 10000000000000000),
    # so whole floats hash as integers on both sides.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(key): _canonical_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_json_value(item) for item in value]
    return value


# ---- verification ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProblem:
    sequence: int | None
    event_id: int | None
    kind: str  # "gap", "link broken", "content changed", "outside the chain", "anchor"
    detail: str

    def describe(self) -> str:
        where = f"sequence {self.sequence}" if self.sequence is not None else "no sequence"
        row = f" (id {self.event_id})" if self.event_id is not None else ""
        return f"{where}{row}: {self.kind}: {self.detail}"


@dataclass
class ChainReport:
    rows: int = 0
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    links_cleared: int = 0  # rows whose user or study was deleted since; the hash still proves the original ids
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def audit_chain_verify(*, anchor: tuple[int, str] | None = None, max_problems: int = 20) -> ChainReport:
    """Recompute the whole chain in sequence order. A problem is reported at the first row where the chain
    stops holding; checking then goes on from that row as stored, so one edited row is one problem.

    `anchor` is a (sequence, row_hash) recorded earlier (`audit_verify --print-head`): that row must still be
    there with that hash, which catches a log cut off at the end or rewritten from the start."""
    report = ChainReport()
    recovery = _LinkRecovery()
    expected_sequence, prev_hash = 1, GENESIS_HASH
    rows = AuditEvent.objects.filter(sequence__isnull=False).order_by("sequence")
    for row in rows.values("id", *HASHED_FIELDS, "row_hash").iterator(chunk_size=VERIFY_CHUNK):
        report.rows += 1
        problem = _broken_link(row, expected_sequence, prev_hash)
        if problem is None and audit_row_hash(row) != row["row_hash"]:
            if (row["actor_id"] is None or row["study_id"] is None) and recovery.recovers(row):
                report.links_cleared += 1
            else:
                explained = recovery.explain(row) if len(report.problems) < max_problems else ""
                problem = ("content changed", "row_hash does not match the row's fields" + explained)
        if problem is not None and len(report.problems) < max_problems:
            report.problems.append(ChainProblem(row["sequence"], row["id"], *problem))
        if anchor is not None and row["sequence"] == anchor[0] and row["row_hash"] != anchor[1]:
            report.problems.append(
                ChainProblem(row["sequence"], row["id"], "anchor", "the row's hash differs from the recorded one")
            )
        expected_sequence, prev_hash = row["sequence"] + 1, row["row_hash"]
        report.head_sequence, report.head_hash = row["sequence"], row["row_hash"]
    if anchor is not None and anchor[0] > report.head_sequence:
        report.problems.append(
            ChainProblem(anchor[0], None, "anchor", f"rows missing at the end: the log stops at {report.head_sequence}")
        )
    outside = AuditEvent.objects.filter(sequence__isnull=True).order_by("id")
    report.rows += outside.count()
    for event_id in outside.values_list("id", flat=True)[:max_problems]:
        report.problems.append(
            ChainProblem(
                None, event_id, "outside the chain", "no sequence: not written by audit_record (forged insert)"
            )
        )
    return report


def _broken_link(row: dict[str, Any], expected_sequence: int, prev_hash: str) -> tuple[str, str] | None:
    sequence = row["sequence"]
    if sequence != expected_sequence:
        missing = str(expected_sequence) if sequence == expected_sequence + 1 else f"{expected_sequence}-{sequence - 1}"
        return "gap", f"row missing before it (sequence {missing} deleted)"
    if row["prev_hash"] != prev_hash:
        return "link broken", "prev_hash is not the previous row's row_hash"
    return None


class _LinkRecovery:
    """Deleting a user or a study clears `actor_id` / `study_id` on its audit rows (SET_NULL), which changes
    what the hash covers. Such a row is accepted when some id of a *deleted* user or study, put back, gives
    the stored hash: the hash then still proves what the row said. Clearing a link to a user or study that
    still exists is reported as tampering."""

    def __init__(self) -> None:
        self._ids: dict[str, tuple[list[int], set[int]]] = {}
        self._recent: dict[str, int] = {}

    def recovers(self, row: dict[str, Any]) -> bool:
        return self._search(row, deleted_only=True) is not None

    def explain(self, row: dict[str, Any]) -> str:
        found = self._search(row, deleted_only=False)
        if found is None:
            return ""
        cleared = [
            f"{name[:-3]} {found[name]}" for name in ("actor_id", "study_id") if row[name] is None and found[name]
        ]
        return f" (the link to {' and '.join(cleared)} was cleared, but that row still exists)"

    def _search(self, row: dict[str, Any], *, deleted_only: bool) -> dict[str, int | None] | None:
        choices = []
        for name, model in (("actor_id", get_user_model()), ("study_id", Study)):
            if row[name] is not None:
                choices.append([row[name]])
                continue
            deleted, existing = self._candidates(name, model)
            recent = [self._recent[name]] if name in self._recent else []
            # Explaining a broken row looks for a link to a row that still exists: those first.
            choices.append([None, *recent, *([] if deleted_only else sorted(existing, reverse=True)), *deleted])
        tried = 0
        for actor_id, study_id in _fewest_links_first(choices):
            tried += 1
            if tried > RECOVERY_LIMIT:
                return None
            if audit_row_hash({**row, "actor_id": actor_id, "study_id": study_id}) == row["row_hash"]:
                for name, value in (("actor_id", actor_id), ("study_id", study_id)):
                    if row[name] is None and value is not None:
                        self._recent[name] = value
                return {"actor_id": actor_id, "study_id": study_id}
        return None

    def _candidates(self, name: str, model: type[models.Model]) -> tuple[list[int], set[int]]:
        if name not in self._ids:
            existing = set(model.objects.values_list("pk", flat=True))
            highest = max(_last_issued_id(model), max(existing, default=0))
            # Newest first: the rows being verified are most often those of the latest deletions.
            self._ids[name] = ([pk for pk in range(highest, 0, -1) if pk not in existing], existing)
        return self._ids[name]


def _fewest_links_first(choices: list[list[int | None]]):
    """(actor, study) candidates: first those putting back one link only (a row usually lost one: its user or
    its study), then every combination; so the usual case costs one pass over one list, not their product."""
    actors, studies = choices
    missing = object()
    # Alternating between the two lists, newest ids first on both sides.
    for actor, study in zip_longest(actors, studies[1:], fillvalue=missing):
        if actor is not missing:
            yield actor, studies[0]
        if study is not missing:
            yield actors[0], study
    yield from product(actors[1:], studies[1:])


def _last_issued_id(model: type[models.Model]) -> int:
    """The highest primary key the table has ever handed out, including rows deleted since (0 if unknown)."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass)", [table])
        elif connection.vendor == "sqlite":
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        else:
            return 0
        found = cursor.fetchone()
    return int(found[0]) if found and found[0] is not None else 0


# ---- the restricted database role ------------------------------------------------------------------------

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def audit_db_role_sql(*, role: str, database: str, schema: str = "public") -> list[str]:
    """PostgreSQL statements, run by the tables' owner, that let `role` run the app with read and append only
    on the audit log (docs/operations.md, "A database role that cannot rewrite the audit log")."""
    if not ROLE_NAME.match(role):
        raise ValueError("The role name must be a lower-case PostgreSQL identifier (letters, digits, _).")
    quote = connection.ops.quote_name
    audit = quote(AuditEvent._meta.db_table)
    role_q, schema_q = quote(role), quote(schema)
    return [
        f"GRANT CONNECT ON DATABASE {quote(database)} TO {role_q}",
        f"GRANT USAGE ON SCHEMA {schema_q} TO {role_q}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_q} TO {role_q}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_q} TO {role_q}",
        # Tables and sequences that later migrations create (run by this same owner) get the same grants.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_q} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role_q}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_q} GRANT USAGE, SELECT ON SEQUENCES TO {role_q}",
        # The audit log: read and append only. Not being the owner, the role cannot disable its triggers either.
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {audit} FROM {role_q}",
        # Deleting a user or a study clears its links on audit rows (SET_NULL); the deferred trigger of
        # migration 0006 refuses a cleared link whose user or study still exists at commit.
        f"GRANT UPDATE ({quote('actor_id')}, {quote('study_id')}) ON {audit} TO {role_q}",
    ]
