"""Bad input never gives a 500: each cause the fault probe found answers 400 (409 for a race) with a clear
message, and stores nothing."""

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from annotations.models import AuditEvent, Prompt, Rating, Response, Study, StudyMembership
from annotations.services.importing import ImportFailed, import_study_file
from annotations.services.studies import study_create

pytestmark = pytest.mark.django_db

NUL_ESCAPE = "\\u0000"  # JSON's spelling of NUL: the text backslash, u, 0000


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def deeply_nested(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def assert_refused(response, status: int = 400, words: str = "NUL") -> None:
    assert response.status_code == status, response.content[:300]
    if response["Content-Type"].startswith("application/json"):
        assert words in response.json()["error"]["message"]
    else:
        assert words in response.content.decode()


# ---- NUL characters, refused once by BadInputMiddleware ------------------------------------------


def test_an_anonymous_invitation_link_with_a_nul_is_refused(client):
    assert_refused(client.get("/invitations/%00/"))


def test_a_nul_in_an_admin_filter_is_refused(world):
    assert_refused(logged_in(world.admin).get("/admin/annotations/study/?q=%00"))
    assert_refused(logged_in(world.admin).get("/admin/annotations/study/?status__exact=a%00b"))


def test_a_nul_in_an_html_form_field_is_refused_and_nothing_is_stored(world):
    response = logged_in(world.researcher).post("/studies/", {"slug": "s9", "title": "bad\x00title"})
    assert_refused(response)
    assert "title" in response.content.decode()
    assert not Study.objects.filter(slug="s9").exists()


def test_an_html_draft_with_an_escaped_nul_is_refused(world):
    before = AuditEvent.objects.count()
    response = logged_in(world.clinician).post(
        f"/workspace/pair/{world.assignment.public_id}/draft", {"draft": '{"note": "a' + NUL_ESCAPE + 'b"}'}
    )
    assert_refused(response)
    world.assignment.refresh_from_db()
    assert world.assignment.draft in ({}, None)
    assert AuditEvent.objects.count() == before


def test_an_api_draft_with_an_escaped_nul_is_refused_in_the_api_error_shape(world):
    body = '{"draft": {"note": "a' + NUL_ESCAPE + 'b"}}'
    response = logged_in(world.clinician).put(
        f"/api/v1/workspace/pairs/{world.assignment.public_id}/draft", body, content_type="application/json"
    )
    assert_refused(response)
    assert response.json()["error"]["code"] == "bad_input"


def test_an_escaped_backslash_before_u0000_is_ordinary_text(world):
    body = json.dumps({"draft": {"note": "C:\\u0000 is a folder name"}})  # the text backslash-u0000, no NUL
    response = logged_in(world.clinician).put(
        f"/api/v1/workspace/pairs/{world.assignment.public_id}/draft", body, content_type="application/json"
    )
    assert response.status_code == 200


def test_deeply_nested_json_in_an_api_body_is_refused(world):
    response = logged_in(world.clinician).put(
        f"/api/v1/workspace/pairs/{world.assignment.public_id}/draft",
        '{"draft": ' + deeply_nested() + "}",
        content_type="application/json",
    )
    assert_refused(response, words="nested too deeply")


def test_deeply_nested_json_in_a_form_field_is_refused(world):
    response = logged_in(world.researcher).post(
        f"/studies/{world.study.slug}/gold", {"comparison": world.comparison.pk, "expected": deeply_nested()}
    )
    assert_refused(response, words="nested too deeply")


# ---- imports: the error names the file, the line and the field -----------------------------------


def _import(study, *lines: str, filename: str = "bad.jsonl"):
    return import_study_file(study=study, stream=io.BytesIO("\n".join(lines).encode()), filename=filename)


GOOD_PROMPT = '{"kind": "prompt", "id": "p1", "messages": [{"role": "user", "content": "Hello"}]}'


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (
            '{"kind": "prompt", "id": "p2", "messages": [{"role": "user", "content": "Hi' + NUL_ESCAPE + '"}]}',
            "messages[0].content",
            "NUL",
        ),
        (
            '{"kind": "prompt", "id": "p2", "messages": [{"role": "user", "content": "Hi"}], "meta": {"src": {"a": "x'
            + NUL_ESCAPE
            + '"}}}',
            "meta.src.a",
            "NUL",
        ),
        (
            '{"kind": "prompt", "id": "p2", "messages": [{"role": "user", "content": "Hi"}], "meta": {"n": '
            + "9" * 5000
            + "}}",
            "meta.n",
            "5000 digits",
        ),
        (
            '{"kind": "prompt", "id": "p2", "messages": [{"role": "user", "content": "Hi"}], "meta": {"x": 1e999}}',
            "meta.x",
            "finite",
        ),
        (
            '{"kind": "prompt", "id": "p2", "messages": [{"role": "user", "content": "Hi"}], "meta": {"x": NaN}}',
            "meta.x",
            "finite",
        ),
        ('{"kind": "prompt", "id": "p2", "meta": ' + deeply_nested(50_000) + "}", "", "nested"),
        (
            '{"kind": "prompt", "id": "p2", "messages": [{"role": "user", "content": "Hi"}], "meta": '
            + '{"a": ' * 100
            + "1"
            + "}" * 100
            + "}",
            "meta",
            "nested",
        ),
    ],
    ids=["nul-in-content", "nul-in-meta", "huge-integer", "infinite-float", "nan", "deep-nesting", "deep-meta"],
)
def test_an_unstorable_import_line_is_refused_naming_file_line_and_field(study, line, field, words):
    with pytest.raises(ImportFailed) as caught:
        _import(study, GOOD_PROMPT, line)
    (issue,) = caught.value.issues
    assert (issue.filename, issue.line) == ("bad.jsonl", 2)
    assert issue.field.startswith(field)
    assert words in issue.message
    assert not Prompt.objects.filter(study=study).exists()


def test_a_csv_import_with_a_nul_names_the_column(study):
    with pytest.raises(ImportFailed) as caught:
        _import(study, "prompt_id,prompt,sys-a,sys-b", "p1,Hello,fine,bad\x00reply", filename="bad.csv")
    (issue,) = caught.value.issues
    assert (issue.line, issue.field) == (2, "sys-b")
    assert not Response.objects.filter(study=study).exists()


def test_an_uploaded_import_with_a_nul_answers_400_through_the_api(world):
    upload = io.BytesIO((GOOD_PROMPT.replace("Hello", "Hel" + NUL_ESCAPE + "lo") + "\n").encode())
    upload.name = "upload.jsonl"
    response = logged_in(world.researcher).post(f"/api/v1/studies/{world.study.slug}/import", {"file": upload})
    assert response.status_code == 400
    assert "upload.jsonl, line 1, field 'messages[0].content'" in response.json()["error"]["details"]["file"][0]


# ---- numbers out of range -------------------------------------------------------------------------


def test_a_limit_above_two_to_the_63_is_capped(world):
    client = logged_in(world.researcher)
    for path in ("/api/v1/studies/", f"/api/v1/studies/{world.study.slug}/comparisons"):
        response = client.get(path, {"limit": str(2**64), "offset": str(2**64)})
        assert response.status_code == 200
        assert client.get(path, {"limit": str(2**64)}).json()["results"]


def test_a_clinician_quota_above_two_to_the_31_is_refused_in_the_api_and_the_form(world):
    client = logged_in(world.researcher)
    api = client.post(
        f"/api/v1/studies/{world.study.slug}/clinicians",
        {"username": world.other_clinician.username, "quota": 2**31},
        content_type="application/json",
    )
    assert api.status_code == 400
    assert "quota" in api.json()["error"]["details"]
    form = client.post(
        f"/studies/{world.study.slug}/clinicians/add",
        {"username": world.other_clinician.username, "quota": str(2**31)},
        follow=True,
    )
    assert form.status_code == 200
    assert "quota" in form.content.decode().lower()
    assert not StudyMembership.objects.filter(study=world.study, user=world.other_clinician).exists()


@pytest.mark.parametrize("expected", ["[1, 2]", "3", '"text"', "null"])
def test_the_gold_form_given_something_other_than_an_object_says_so(world, expected):
    response = logged_in(world.researcher).post(
        f"/studies/{world.study.slug}/gold", {"comparison": world.comparison.pk, "expected": expected}, follow=True
    )
    assert response.status_code == 200
    world.comparison.refresh_from_db()
    assert not world.comparison.is_gold
    if expected != "null":  # null is the documented way to remove a gold mark
        assert "criterion keys" in response.content.decode()


@pytest.mark.parametrize("seed", ["-1", str(2**40)])
def test_a_report_seed_outside_its_range_is_refused(world, seed):
    client = logged_in(world.researcher)
    api = client.get(f"/api/v1/studies/{world.study.slug}/report", {"seed": seed})
    assert api.status_code == 400
    assert "seed" in api.json()["error"]["details"]
    page = client.get(f"/studies/{world.study.slug}/reports", {"seed": seed})
    assert page.status_code in (200, 302, 400)


# ---- the same study slug twice ---------------------------------------------------------------------


def test_creating_a_taken_slug_again_is_a_conflict_not_a_crash(world):
    with pytest.raises(ValidationError) as caught:
        study_create(slug=world.study.slug, title="Again", owner=world.researcher)
    assert [error.code for error in caught.value.error_dict["slug"]] == ["slug_taken"]
    assert Study.objects.filter(slug=world.study.slug).count() == 1

    response = logged_in(world.researcher).post(
        "/api/v1/studies/", {"slug": world.study.slug, "title": "Again"}, content_type="application/json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slug_taken"
    page = logged_in(world.researcher).post("/studies/", {"slug": world.study.slug, "title": "Again"}, follow=True)
    assert "not available" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creations_of_one_slug_give_one_study_and_one_conflict(researcher):
    import threading

    from django.db import connection

    barrier = threading.Barrier(2)
    outcomes: list[int] = []

    def create() -> None:
        client = logged_in(researcher)
        barrier.wait()
        outcomes.append(
            client.post(
                "/api/v1/studies/", {"slug": "race", "title": "Race"}, content_type="application/json"
            ).status_code
        )
        connection.close()

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [201, 409]
    assert Study.objects.filter(slug="race").count() == 1
    assert not Rating.objects.exists()


# ---- import_study --create is all or nothing, the study included ---------------------------------


def test_import_study_create_leaves_no_study_when_the_file_is_rejected(tmp_path):
    from django.core.management import CommandError, call_command

    bad = tmp_path / "bad.jsonl"
    bad.write_text(GOOD_PROMPT + "\n" + '{"kind": "prompt", "id": "p2"}\n')
    with pytest.raises(CommandError, match=r"bad\.jsonl, line 2, field 'messages'"):
        call_command("import_study", str(bad), "--study", "fresh", "--create")
    assert not Study.objects.filter(slug="fresh").exists()
    assert not AuditEvent.objects.filter(action="study.create").exists()

    good = tmp_path / "good.jsonl"
    good.write_text(GOOD_PROMPT + "\n")
    call_command("import_study", str(good), "--study", "fresh", "--create")
    assert Prompt.objects.filter(study__slug="fresh").count() == 1


# ---- bounds on numbers and sizes ----------------------------------------------------------------------


def test_time_on_task_through_the_api_is_bounded_like_the_form(world):
    client = logged_in(world.clinician)
    url = f"/api/v1/workspace/pairs/{world.assignment.public_id}/draft"
    for field in ("total_seconds", "active_seconds"):
        response = client.put(url, {"draft": {}, field: 8 * 24 * 3600}, content_type="application/json")
        assert response.status_code == 400
        assert field in response.json()["error"]["details"]
    world.assignment.refresh_from_db()
    assert world.assignment.total_seconds == 0


def test_an_upload_over_the_limit_is_refused_naming_the_limit(world, settings):
    settings.MAX_UPLOAD_BYTES = 1024
    upload = io.BytesIO((GOOD_PROMPT + "\n").encode() * 40)
    upload.name = "big.jsonl"
    client = logged_in(world.researcher)
    api = client.post(f"/api/v1/studies/{world.study.slug}/import", {"file": upload})
    assert api.status_code == 413
    assert "the limit is 1.0\xa0KB" in api.json()["error"]["message"]
    upload.seek(0)
    page = client.post(f"/studies/{world.study.slug}/import", {"file": upload})
    assert page.status_code == 413
    assert "the limit is 1.0" in page.content.decode()
    assert not Prompt.objects.filter(study=world.study, external_id="p1").exists()
