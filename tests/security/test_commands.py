"""manage.py invite_user, create_account and audit_export."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from annotations.models import AuditEvent, Invitation

pytestmark = pytest.mark.django_db


def test_invite_user_prints_a_working_link(study):
    out = io.StringIO()
    call_command("invite_user", "fay@example.org", "--role", "clinician", "--study", study.slug, stdout=out)
    invitation = Invitation.objects.get(email="fay@example.org")
    assert f"/invitations/{invitation.token}/" in out.getvalue()
    assert invitation.study == study
    event = AuditEvent.objects.get(action="invitation.create")
    assert invitation.token not in json.dumps(event.data)


def test_create_account_reads_the_password_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-and-unusual-passphrase-93\n"))
    call_command(
        "create_account",
        "gus",
        "--email",
        "gus@example.org",
        "--role",
        "researcher",
        "--password-stdin",
        stdout=io.StringIO(),
    )
    gus = get_user_model().objects.get(username="gus")
    assert gus.check_password("a-long-and-unusual-passphrase-93")
    assert AuditEvent.objects.get(action="account.create").data["via"] == "admin"


def test_audit_export_writes_json_lines(study, tmp_path):
    target = tmp_path / "audit.jsonl"
    call_command("audit_export", "--format", "jsonl", "--output", str(target), stderr=io.StringIO())
    actions = [json.loads(line)["action"] for line in target.read_text().splitlines()]
    assert "study.create" in actions
    assert AuditEvent.objects.filter(action="audit.export").exists()
