"""Chain the audit log (docs/security.md, "Audit trail"), and close what the 0003 trigger left open.

1. Rows written before the chain existed get a sequence and hashes, in id order, by the same function that
   audit_record uses. (The 0003 trigger does not guard the three new columns yet, so no trigger is disabled.)
2. PostgreSQL only:
   - annotations_audit_chain_head(key): audit_record's lock and read of the chain's head, one round trip;
   - the append-only trigger now also guards id, sequence, prev_hash and row_hash;
   - a link to a user or study may be cleared (Django's SET_NULL when one is deleted), but a deferred check
     refuses it at commit unless that user or study is really gone by then;
   - TRUNCATE is refused for every role but a superuser (who could disable any trigger anyway; letting one
     through keeps Django's test flush and `manage.py flush` on a development database working).
SQLite (`make run`) has none of these triggers; audit_verify still detects the same changes there.
"""

from django.conf import settings
from django.db import migrations

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION annotations_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are append-only';
    END IF;
    IF (NEW.id, NEW.actor_label, NEW.action, NEW.object_type, NEW.object_id, NEW.data, NEW.created_at,
        NEW.sequence, NEW.prev_hash, NEW.row_hash)
       IS DISTINCT FROM (OLD.id, OLD.actor_label, OLD.action, OLD.object_type, OLD.object_id, OLD.data, OLD.created_at,
        OLD.sequence, OLD.prev_hash, OLD.row_hash)
       OR (NEW.actor_id IS DISTINCT FROM OLD.actor_id AND NEW.actor_id IS NOT NULL)
       OR (NEW.study_id IS DISTINCT FROM OLD.study_id AND NEW.study_id IS NOT NULL) THEN
        RAISE EXCEPTION 'audit events are append-only';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

# The 0003 version, put back when this migration is reversed.
APPEND_ONLY_0003 = """
CREATE OR REPLACE FUNCTION annotations_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are append-only';
    END IF;
    IF (NEW.actor_label, NEW.action, NEW.object_type, NEW.object_id, NEW.data, NEW.created_at)
       IS DISTINCT FROM (OLD.actor_label, OLD.action, OLD.object_type, OLD.object_id, OLD.data, OLD.created_at)
       OR (NEW.actor_id IS DISTINCT FROM OLD.actor_id AND NEW.actor_id IS NOT NULL)
       OR (NEW.study_id IS DISTINCT FROM OLD.study_id AND NEW.study_id IS NOT NULL) THEN
        RAISE EXCEPTION 'audit events are append-only';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

LINK_CLEARED = """
CREATE OR REPLACE FUNCTION annotations_auditevent_link_cleared() RETURNS trigger AS $$
BEGIN
    IF (NEW.actor_id IS NULL AND OLD.actor_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM {user_table} WHERE {user_pk} = OLD.actor_id))
       OR (NEW.study_id IS NULL AND OLD.study_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM annotations_study WHERE id = OLD.study_id)) THEN
        RAISE EXCEPTION 'audit events are append-only: a link is cleared only when its user or study is deleted';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER annotations_auditevent_link_cleared
    AFTER UPDATE ON annotations_auditevent DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION annotations_auditevent_link_cleared();

CREATE OR REPLACE FUNCTION annotations_auditevent_no_truncate() RETURNS trigger AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: TRUNCATE is refused';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER annotations_auditevent_no_truncate
    BEFORE TRUNCATE ON annotations_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION annotations_auditevent_no_truncate();
"""

# audit_record's lock and read of the chain's head in one round trip. The read must come after the lock in a
# statement of its own (each statement of a PL/pgSQL function takes a fresh snapshot under READ COMMITTED);
# in one plain SELECT it would use a snapshot taken before the lock was granted and could miss the row of the
# transaction that held it.
CHAIN_HEAD = """
CREATE OR REPLACE FUNCTION annotations_audit_chain_head(lock_key bigint, OUT sequence bigint, OUT row_hash text)
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.sequence, e.row_hash INTO sequence, row_hash
        FROM annotations_auditevent e WHERE e.sequence IS NOT NULL ORDER BY e.sequence DESC LIMIT 1;
END;
$$ LANGUAGE plpgsql VOLATILE;
"""

DROP_NEW = """
DROP FUNCTION IF EXISTS annotations_audit_chain_head(bigint);
DROP TRIGGER IF EXISTS annotations_auditevent_no_truncate ON annotations_auditevent;
DROP FUNCTION IF EXISTS annotations_auditevent_no_truncate();
DROP TRIGGER IF EXISTS annotations_auditevent_link_cleared ON annotations_auditevent;
DROP FUNCTION IF EXISTS annotations_auditevent_link_cleared();
"""


def chain_existing_rows(apps, schema_editor):
    from annotations.services.audit import GENESIS_HASH, HASHED_FIELDS, audit_row_hash

    AuditEvent = apps.get_model("annotations", "AuditEvent")
    head = AuditEvent.objects.filter(sequence__isnull=False).order_by("-sequence").values_list("sequence", "row_hash")
    sequence, prev_hash = head.first() or (0, GENESIS_HASH)
    unchained = AuditEvent.objects.filter(sequence__isnull=True).order_by("id")
    for row in unchained.values("id", *(name for name in HASHED_FIELDS if name not in ("sequence", "prev_hash"))):
        sequence += 1
        row_hash = audit_row_hash({**row, "sequence": sequence, "prev_hash": prev_hash})
        AuditEvent.objects.filter(pk=row["id"]).update(sequence=sequence, prev_hash=prev_hash, row_hash=row_hash)
        prev_hash = row_hash


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    user_meta = apps.get_model(settings.AUTH_USER_MODEL)._meta
    schema_editor.execute(APPEND_ONLY)
    schema_editor.execute(CHAIN_HEAD)
    schema_editor.execute(
        LINK_CLEARED.format(
            user_table=schema_editor.quote_name(user_meta.db_table),
            user_pk=schema_editor.quote_name(user_meta.pk.column),
        )
    )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(DROP_NEW)
    schema_editor.execute(APPEND_ONLY_0003)


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0005_hardening"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(chain_existing_rows, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
