import pytest
from django.db import DatabaseError, transaction

from annotations.models import AuditEvent
from annotations.services.audit import audit_record

pytestmark = pytest.mark.django_db


def test_the_database_refuses_bulk_updates_and_deletes_of_audit_events(researcher):
    audit_record(actor=researcher, action="study.create", data={"slug": "s"})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(action="tampered")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().action == "study.create"


@pytest.mark.parametrize("column", ["sequence", "prev_hash", "row_hash"])
def test_the_database_refuses_rewriting_the_chain_columns(researcher, column):
    audit_record(actor=researcher, action="study.create", data={"slug": "s"})
    forged = 99 if column == "sequence" else "1" * 64
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(**{column: forged})


def test_deleting_the_actor_keeps_the_audit_row(django_user_model):
    user = django_user_model.objects.create_user(username="gone", password="x-long-password-123")
    audit_record(actor=user, action="login.failed")
    user.delete()
    event = AuditEvent.objects.get()
    assert event.actor is None and event.actor_label == "gone"
