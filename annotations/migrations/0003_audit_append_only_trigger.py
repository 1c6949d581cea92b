"""Make the audit log append-only in the database itself (PostgreSQL), not only through the model.

A bulk QuerySet.update() or .delete(), or raw SQL, would bypass AuditEvent.save()/delete(); the trigger
refuses them. Deleting a user or a study sets the audit row's foreign key to NULL, which is allowed: the
row keeps its actor_label and data.
"""

from django.db import migrations

CREATE = """
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
CREATE TRIGGER annotations_auditevent_append_only
    BEFORE UPDATE OR DELETE ON annotations_auditevent
    FOR EACH ROW EXECUTE FUNCTION annotations_auditevent_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS annotations_auditevent_append_only ON annotations_auditevent;
DROP FUNCTION IF EXISTS annotations_auditevent_append_only();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("annotations", "0002_workspace_active_assignments")]

    operations = [migrations.RunPython(create, drop)]
