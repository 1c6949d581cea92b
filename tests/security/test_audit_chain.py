"""The audit log is a hash chain: audit_verify proves it untouched, or names the first row where it breaks.

Tampering is done the way an attacker would: raw SQL as the app's database user, or, for a deleted or edited
row, as a superuser who first disables the append-only trigger.
"""

import itertools
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.http import QueryDict

from annotations.models import AuditEvent, JobStatus, PreferenceExport, Rating, TrainingJob
from annotations.services.audit import GENESIS_HASH, audit_chain_head, audit_chain_verify, audit_record
from annotations.services.exports import export_zip_path
from annotations.services.reports import report_params_from_query, report_request
from annotations.services.studies import study_criteria

pytestmark = pytest.mark.django_db


def verify(*args: str) -> str:
    """audit_verify's output; raises CommandError (exit 1) with the broken link on standard error."""
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except CommandError as error:
        raise AssertionError(err.getvalue()) from error
    return out.getvalue()


def broken(*args: str) -> str:
    err = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("audit_verify", *args, stdout=StringIO(), stderr=err)
    assert raised.value.returncode == 1
    return err.getvalue()


def as_superuser_without_the_trigger(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses while foreign-key checks are pending
        cursor.execute("ALTER TABLE annotations_auditevent DISABLE TRIGGER annotations_auditevent_append_only")
        cursor.execute(sql, params or [])
        cursor.execute("ALTER TABLE annotations_auditevent ENABLE TRIGGER annotations_auditevent_append_only")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.fixture
def events(researcher, study) -> list[AuditEvent]:
    for index in range(3):
        audit_record(actor=researcher, action="test.event", study=study, data={"index": index, "scores": [0.5, 2.0]})
    return list(AuditEvent.objects.order_by("sequence"))


# ---- the chain ----------------------------------------------------------------------------------------------


def test_each_row_carries_the_hash_of_the_one_before(events):
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.row_hash for earlier, later in itertools.pairwise(events))
    assert len({event.row_hash for event in events}) == len(events)
    assert audit_chain_head() == (events[-1].sequence, events[-1].row_hash)


def test_audit_verify_passes_on_an_untouched_log_and_counts_its_rows(events):
    assert f"Audit chain intact: {len(events)} rows" in verify()


def test_numbers_come_back_from_jsonb_as_they_were_hashed(researcher):
    audit_record(actor=researcher, action="test.numbers", data={"big": 1e16, "small": 1.5e-7, "whole": 2.0})
    assert "intact" in verify()


def test_audit_verify_names_a_row_forged_with_raw_sql(events):
    with connection.cursor() as cursor:  # what the app's database user can do: INSERT is allowed
        cursor.execute(
            "INSERT INTO annotations_auditevent (actor_label, action, object_type, object_id, data, created_at, "
            "prev_hash, row_hash) VALUES ('alice', 'rating.create', '', '', '{}', now(), '', '') RETURNING id"
        )
        forged_id = cursor.fetchone()[0]
    assert f"no sequence (id {forged_id}): outside the chain" in broken()


def test_audit_verify_names_a_forged_row_that_claims_the_next_place_in_the_chain(events):
    head = events[-1]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO annotations_auditevent (actor_label, action, object_type, object_id, data, created_at, "
            "sequence, prev_hash, row_hash) VALUES ('alice', 'rating.create', '', '', '{}', now(), %s, %s, %s) "
            "RETURNING id",
            [head.sequence + 1, head.row_hash, "f" * 64],
        )
        forged_id = cursor.fetchone()[0]
    assert f"sequence {head.sequence + 1} (id {forged_id}): content changed" in broken()


def test_audit_verify_names_the_row_after_a_deleted_one(events):
    as_superuser_without_the_trigger("DELETE FROM annotations_auditevent WHERE id = %s", [events[1].pk])
    assert f"sequence 3 (id {events[2].pk}): gap: row missing before it (sequence 2 deleted)" in broken()


def test_audit_verify_names_an_edited_row(events):
    as_superuser_without_the_trigger(
        "UPDATE annotations_auditevent SET data = '{\"index\": 7}' WHERE id = %s", [events[1].pk]
    )
    report = broken()
    assert f"sequence 2 (id {events[1].pk}): content changed" in report and "also" not in report


def test_audit_verify_names_an_edited_hash_as_a_broken_link(events):
    as_superuser_without_the_trigger(
        "UPDATE annotations_auditevent SET row_hash = %s WHERE id = %s", ["a" * 64, events[0].pk]
    )
    assert f"sequence 2 (id {events[1].pk}): link broken" in broken()


def test_an_anchor_kept_outside_catches_rows_cut_off_the_end(events):
    anchor = verify("--print-head").strip()
    assert anchor == f"{events[-1].sequence}:{events[-1].row_hash}"
    as_superuser_without_the_trigger("DELETE FROM annotations_auditevent WHERE id = %s", [events[-1].pk])
    assert "intact" in verify()  # without the anchor, a shorter log is indistinguishable from a younger one
    assert "rows missing at the end" in broken("--anchor", anchor)


def test_concurrent_appends_form_one_unbroken_chain(transactional_db):
    def append(worker: int) -> None:
        try:
            for index in range(15):
                with transaction.atomic():
                    audit_record(actor=None, action="test.concurrent", data={"worker": worker, "index": index})
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for finished in [pool.submit(append, worker) for worker in range(4)]:
            finished.result()  # re-raises a worker's error
    report = audit_chain_verify()
    assert report.intact and report.rows == AuditEvent.objects.count() == 60


# ---- links cleared by deleting a user or a study --------------------------------------------------------------


def test_a_deleted_users_rows_still_verify(django_user_model):
    user = django_user_model.objects.create_user(username="gone", password="x-long-password-123")
    audit_record(actor=user, action="login.failed")
    user.delete()
    report = audit_chain_verify()
    assert report.intact and report.links_cleared == 1


def test_deleted_links_verify_when_ids_run_high(django_user_model, study):
    """Ids come from sequences that never go back (rolled-back tests, years of use): recovering a deleted user's
    and a deleted study's ids must not depend on how many ids were ever issued below them."""
    with connection.cursor() as cursor:
        for table in ("auth_user", "annotations_study"):
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), 400000)", [table])
    user = django_user_model.objects.create_user(username="gone-late", password="x-long-password-123")
    late_study = type(study).objects.create(slug="late", title="Late")
    audit_record(actor=user, action="login.failed")
    audit_record(actor=None, action="study.create", study=late_study)
    user.delete()
    late_study.delete()
    report = audit_chain_verify()
    assert report.intact and report.links_cleared == 2


def test_clearing_the_link_to_a_study_that_still_exists_is_refused_and_detected(events, study):
    AuditEvent.objects.filter(pk=events[1].pk).update(study=None)  # allowed now; checked at commit
    assert f"the link to study {study.pk} was cleared, but that row still exists" in broken()
    with pytest.raises(DatabaseError, match="only when its user or study is deleted"), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT would do


# ---- the database refuses ------------------------------------------------------------------------------------


@pytest.fixture
def app_role():
    """A role like the app's own; the transaction of the test rolls its creation back."""
    name = f"ep_test_app_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} NOLOGIN")
    return name


def as_role(role: str):
    class _AsRole:
        def __enter__(self):
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL ROLE {role}")

        def __exit__(self, *exc):
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")

    return _AsRole()


def refused(sql: str, match: str) -> None:
    with pytest.raises(DatabaseError, match=match), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


def test_truncate_is_refused_even_for_a_role_with_the_privilege(events, app_role):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # as in a fresh transaction: no foreign-key checks pending
        cursor.execute(f"GRANT ALL ON annotations_auditevent TO {app_role}")
    with as_role(app_role):
        refused("TRUNCATE annotations_auditevent", "TRUNCATE is refused")
    assert AuditEvent.objects.count() == len(events)


def test_the_restricted_role_reads_and_appends_but_cannot_rewrite_the_log(events, app_role, researcher):
    out = StringIO()
    call_command("audit_db_role", app_role, "--print-sql", stdout=out)
    statements = [line for line in out.getvalue().splitlines() if not line.startswith("--")]
    assert statements[0] == "BEGIN;" and statements[-1] == "COMMIT;"
    with connection.cursor() as cursor:
        for statement in statements[1:-1]:
            cursor.execute(statement)
    with as_role(app_role):
        appended = audit_record(actor=researcher, action="test.as_app_role")
        assert AuditEvent.objects.filter(pk=appended.pk).exists()
        refused("UPDATE annotations_auditevent SET action = 'x'", "permission denied")
        refused("DELETE FROM annotations_auditevent", "permission denied")
        refused("TRUNCATE annotations_auditevent", "permission denied")
        refused("ALTER TABLE annotations_auditevent DISABLE TRIGGER ALL", "must be owner")
    assert audit_chain_verify().intact and AuditEvent.objects.count() == len(events) + 1


# ---- the admin -------------------------------------------------------------------------------------------------


def test_a_superuser_cannot_change_a_rating_in_the_admin(world, client):
    criterion = study_criteria(world.study)[0]
    rating = Rating.objects.create(assignment=world.assignment, criterion=criterion, value=-1)
    client.force_login(world.admin)
    url = f"/admin/annotations/rating/{rating.pk}/change/"
    assert client.get(url).status_code == 200  # visible, read-only
    before = AuditEvent.objects.count()
    response = client.post(url, {"assignment": world.assignment.pk, "criterion": criterion.pk, "value": 1})
    assert response.status_code == 403
    rating.refresh_from_db()
    assert rating.value == -1 and rating.revision == 1 and AuditEvent.objects.count() == before
    assert client.post(f"/admin/annotations/rating/{rating.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/annotations/rating/add/").status_code == 403


@pytest.mark.parametrize(
    "model", ["assignment", "judgment", "judgmentcall", "judgerun", "trainingjob", "generationrun", "auditevent"]
)
def test_service_owned_models_are_read_only_in_the_admin(world, client, model):
    client.force_login(world.admin)
    assert client.get(f"/admin/annotations/{model}/add/").status_code == 403


# ---- downloads -----------------------------------------------------------------------------------------------


def downloads(**filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith="download.", **filters))


@pytest.fixture
def finished_export(world, settings, tmp_path) -> PreferenceExport:
    settings.ARTIFACTS_ROOT = tmp_path
    export = PreferenceExport(study=world.study, format="trl-dpo", status=JobStatus.SUCCEEDED, zip_sha256="e" * 64)
    export.path = str(tmp_path / "exports" / str(export.public_id))
    export.save()
    zip_path = export_zip_path(export)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("train.jsonl", "{}\n")
    return export


@pytest.mark.parametrize("via", ["/studies", "/api/v1/studies"])
def test_each_export_download_is_recorded_once_with_who_and_what(world, client, finished_export, via):
    client.force_login(world.researcher)
    response = client.get(f"{via}/s1/exports/{finished_export.public_id}/download.zip")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    (event,) = downloads()
    assert event.action == "download.export_zip" and event.actor == world.researcher
    assert (event.study, event.object_type, event.object_id) == (
        world.study,
        "preferenceexport",
        str(finished_export.pk),
    )


def test_a_refused_export_download_records_nothing(world, client, finished_export):
    client.force_login(world.other_researcher)
    assert client.get(f"/studies/s1/exports/{finished_export.public_id}/download.zip").status_code == 404
    assert downloads() == []


def test_a_job_artifacts_download_is_recorded(world, client, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    job = TrainingJob.objects.create(
        study=world.study, kind=TrainingJob.Kind.DPO, status=JobStatus.SUCCEEDED, artifacts_path=str(tmp_path)
    )
    client.force_login(world.researcher)
    response = client.get(f"/studies/s1/jobs/{job.public_id}/artifacts.zip")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    (event,) = downloads()
    assert event.action == "download.job_artifacts" and event.actor == world.researcher
    assert (event.object_type, event.object_id) == ("trainingjob", str(job.pk))


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/studies/s1/reports/report.csv", "download.report_csv"),
        ("/studies/s1/reports/report.json", "download.report_json"),
        ("/api/v1/studies/s1/report.csv", "download.report_csv"),
        ("/api/v1/studies/s1/report", "download.report_json"),
    ],
)
def test_each_report_download_is_recorded(world, client, path, action):
    snapshot = report_request(study=world.study, params=report_params_from_query(QueryDict("resamples=0")), inline=True)
    assert snapshot.status == JobStatus.SUCCEEDED, snapshot.error
    client.force_login(world.researcher)
    assert client.get(f"{path}?resamples=0").status_code == 200
    (event,) = downloads()
    assert event.action == action and event.actor == world.researcher
    assert (event.study, event.object_type, event.object_id) == (world.study, "reportsnapshot", str(snapshot.pk))
