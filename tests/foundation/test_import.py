"""Import: the happy path, every error class with its line and field, idempotency, and all-or-nothing."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Assignment, AuditEvent, Comparison, Judgment, Prompt, Rater, Rating, Response, System
from annotations.services.importing import ImportFailed, import_study_file
from annotations.services.studies import study_create

pytestmark = pytest.mark.django_db


def jsonl(*records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def prompt(pid="p1", text="I can't sleep before exams."):
    return {"kind": "prompt", "id": pid, "messages": [{"role": "user", "content": text}], "meta": {"topic": "anxiety"}}


def response(rid, pid="p1", system="alpha", content=None):
    return {
        "kind": "response",
        "id": rid,
        "prompt": pid,
        "system": system,
        "content": f"Reply {rid}." if content is None else content,
    }


def rating(a="r1", b="r2", value=-1, rater="ext-1", criterion="empathy", **extra):
    return {
        "kind": "rating",
        "rater": rater,
        "response_a": a,
        "response_b": b,
        "criterion": criterion,
        "value": value,
        **extra,
    }


HAPPY = jsonl(
    prompt("p1"),
    prompt("p2", "My partner and I argue every night."),
    response("r1", "p1", "alpha"),
    response("r2", "p1", "beta"),
    response("r3", "p2", "alpha"),
    response("r4", "p2", "beta"),
    rating("r1", "r2", -1, "ext-1"),
    rating("r2", "r1", 1, "ext-2"),  # the file's A is our second response: stored flipped
    {
        "kind": "judgment",
        "judge": "llm-judge",
        "response_a": "r4",
        "response_b": "r3",
        "criterion": "safety",
        "value": 1,
    },
)


def table_counts() -> dict[str, int]:
    models = [Prompt, Response, System, Comparison, Assignment, Rating, Judgment, Rater]
    return {m.__name__: m.objects.count() for m in models} | {
        "audit": AuditEvent.objects.filter(action="study.import").count()
    }


@pytest.fixture
def s3():
    return study_create(slug="imp", title="Import study")


def run(study, data: bytes, name="data.jsonl"):
    return import_study_file(study=study, stream=io.BytesIO(data), filename=name)


def test_it_imports_prompts_responses_ratings_and_judgments(s3):
    summary = run(s3, HAPPY)
    assert summary.created == {"prompt": 2, "response": 4, "rating": 2, "judgment": 1}
    assert set(System.objects.filter(study=s3).values_list("name", flat=True)) == {"alpha", "beta"}
    r1, r2 = Response.objects.get(external_id="r1"), Response.objects.get(external_id="r2")
    comparison = Comparison.objects.get(study=s3, prompt__external_id="p1")
    assert (comparison.response_first_id, comparison.response_second_id) == (r1.pk, r2.pk)
    values = dict(
        Rating.objects.filter(assignment__comparison=comparison).values_list("assignment__rater__label", "value")
    )
    # ext-1 preferred r1 (A); ext-2 preferred r1 too (it was their B): both are -1 in canonical orientation.
    assert values == {"ext-1": -1, "ext-2": -1}
    judgment = Judgment.objects.get()
    assert judgment.value == -1 and judgment.judge.rater.kind == Rater.Kind.JUDGE
    assert AuditEvent.objects.filter(action="study.import", study=s3).count() == 1


def test_reimporting_the_same_file_changes_nothing_and_says_so(s3):
    run(s3, HAPPY)
    before = table_counts()
    summary = run(s3, HAPPY)
    assert summary.changed_nothing
    assert "nothing changed" in summary.describe()
    assert table_counts() == {**before, "audit": before["audit"] + 1}


def test_a_conflicting_reimport_fails_and_names_the_record(s3):
    run(s3, HAPPY)
    changed = jsonl(prompt("p1"), response("r1", "p1", "alpha", content="A different reply."))
    with pytest.raises(ImportFailed) as failed:
        run(s3, changed, "again.jsonl")
    assert [(i.line, i.field) for i in failed.value.issues] == [(2, "id")]
    assert "'r1' was already imported with different content" in str(failed.value)


@pytest.mark.parametrize(
    ("line", "expected_line", "expected_field", "expected_text"),
    [
        (b'{"kind": "prompt", "id": "p9", \n', 3, "", "malformed JSON"),
        (
            b'{"kind": "prompt", "id": "p9", "messages": [{"role": "user", "content": "caf\xe9"}]}\n',
            3,
            "",
            "not valid UTF-8",
        ),
        (jsonl({"kind": "rumour", "id": "x"}), 3, "kind", "unknown kind 'rumour'"),
        (jsonl({"kind": "prompt", "messages": [{"role": "user", "content": "hi"}]}), 3, "id", "is missing"),
        (
            jsonl({"kind": "prompt", "id": 7, "messages": [{"role": "user", "content": "hi"}]}),
            3,
            "id",
            "expected a string, got int",
        ),
        (
            jsonl({"kind": "prompt", "id": "p9", "messages": [{"role": "user", "content": "  "}]}),
            3,
            "messages[0].content",
            "non-empty",
        ),
        (
            jsonl({"kind": "prompt", "id": "p9", "messages": [{"role": "doctor", "content": "x"}]}),
            3,
            "messages[0].role",
            "expected one of",
        ),
        (jsonl(response("r9", "p1", "alpha", content="")), 3, "content", "is empty"),
        (jsonl(response("r9", "nope", "alpha")), 3, "prompt", "prompt 'nope' is not defined"),
        (jsonl(rating("r1", "r2", value=2)), 3, "value", "outside the study's 3-point scale"),
        (jsonl(rating("r1", "r2", value="A")), 3, "value", "expected an integer"),
        (jsonl(rating("r1", "r2", criterion="humour")), 3, "criterion", "unknown criterion 'humour'"),
        (jsonl(rating("r1", "r1")), 3, "response_b", "the same response as response_a"),
        (jsonl(rating("r1", "r9")), 3, "response_b", "response 'r9' is not defined"),
        (jsonl(rating("r1", "r2", both_unacceptable="yes")), 3, "both_unacceptable", "expected true or false"),
    ],
)
def test_every_error_names_the_file_line_and_field(s3, line, expected_line, expected_field, expected_text):
    data = jsonl(prompt("p1"), response("r1", "p1", "alpha")) + line
    if b"r2" in line:
        data = jsonl(prompt("p1"), response("r1", "p1", "alpha"), response("r2", "p1", "beta"))[:-1] + b"\n" + line
        expected_line += 1
    with pytest.raises(ImportFailed) as failed:
        run(s3, data, "bad.jsonl")
    issues = failed.value.issues
    assert len(issues) == 1, issues
    assert (issues[0].filename, issues[0].line, issues[0].field) == ("bad.jsonl", expected_line, expected_field)
    assert expected_text in issues[0].message
    assert f"bad.jsonl, line {expected_line}" in str(failed.value)


def test_two_responses_of_one_comparison_must_answer_the_same_prompt(s3):
    data = jsonl(prompt("p1"), prompt("p2"), response("r1", "p1"), response("r2", "p2", "beta"), rating("r1", "r2"))
    with pytest.raises(ImportFailed) as failed:
        run(s3, data)
    assert [(i.line, i.field) for i in failed.value.issues] == [(5, "response_b")]
    assert "different prompt" in failed.value.issues[0].message


def test_texts_over_the_cap_are_refused(s3, settings):
    settings.IMPORT_MAX_TEXT_CHARS = 50
    with pytest.raises(ImportFailed) as failed:
        run(s3, jsonl(prompt("p1", "x" * 51)))
    assert failed.value.issues[0].field == "messages[0].content"
    assert "51 characters; the limit is 50" in failed.value.issues[0].message


def test_a_failure_in_the_middle_of_a_file_leaves_every_table_unchanged(s3, settings):
    settings.IMPORT_MAX_ERRORS = 50
    run(s3, HAPPY)
    before = table_counts()
    # Many good records (enough to be flushed in more than one chunk), one bad line in the middle.
    records = [prompt(f"q{i}") for i in range(1500)] + [response(f"s{i}", f"q{i}", "gamma") for i in range(1500)]
    records.insert(1700, rating("s1", "s2", value=5))
    with pytest.raises(ImportFailed) as failed:
        run(s3, jsonl(*records))
    assert failed.value.issues[0].line == 1701
    assert table_counts() == before


def test_all_errors_are_listed_up_to_the_cap(s3, settings):
    settings.IMPORT_MAX_ERRORS = 3
    data = b"not json\n" * 10
    with pytest.raises(ImportFailed) as failed:
        run(s3, data)
    assert [i.line for i in failed.value.issues] == [1, 2, 3]
    assert failed.value.truncated


def test_csv_holds_prompts_with_one_column_per_system(s3):
    data = b'prompt_id,prompt,alpha,beta\nc1,"I feel alone, since the move.",Reply one,Reply two\n'
    summary = run(s3, data, "data.csv")
    assert summary.created["prompt"] == 1 and summary.created["response"] == 2
    assert set(Response.objects.values_list("external_id", flat=True)) == {"c1:alpha", "c1:beta"}


def test_the_command_imports_and_exits_non_zero_listing_errors(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_bytes(HAPPY)
    call_command("import_study", str(good), "--study", "cmd", "--create", "--scale", "5")
    assert "created 2 prompts" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{}\n" + b"oops\n")
    with pytest.raises(CommandError) as failed:
        call_command("import_study", str(bad), "--study", "cmd")
    message = str(failed.value)
    assert f"{bad}, line 1, field 'kind'" in message and f"{bad}, line 2: malformed JSON" in message


def test_5_point_values_are_accepted_on_a_5_point_study():
    study = study_create(slug="five", title="Five", scale_points=5)
    run(study, jsonl(prompt("p1"), response("r1"), response("r2", system="beta"), rating("r1", "r2", value=-2)))
    assert Rating.objects.get().value == -2


def test_the_reader_streams_line_by_line(s3):
    """The importer iterates the stream; it never calls read() for the whole file."""

    class LineOnly(io.BytesIO):
        def read(self, *args):  # pragma: no cover - reaching this fails the test
            raise AssertionError("the whole file was read at once")

    summary = import_study_file(study=s3, stream=LineOnly(HAPPY), filename="x.jsonl")
    assert summary.created["prompt"] == 2


def votes_file(n_prompts: int) -> bytes:
    records = []
    for p in range(n_prompts):
        records += [prompt(f"p{p}"), response(f"p{p}a", f"p{p}", "alpha"), response(f"p{p}b", f"p{p}", "beta")]
    for p in range(n_prompts):
        for rater in ("x1", "x2", "x3"):
            records.append(rating(f"p{p}a", f"p{p}b", -1, rater))
        records.append(
            {
                "kind": "judgment",
                "judge": "j",
                "response_a": f"p{p}a",
                "response_b": f"p{p}b",
                "criterion": "safety",
                "value": 1,
            }
        )
    return jsonl(*records)


def test_votes_are_written_in_bulk_so_queries_do_not_grow_with_the_file():
    """A 10x bigger file within one chunk costs the same number of queries (no per-record round trips)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for n in (20, 200):
        study = study_create(slug=f"bulk{n}", title="Bulk")
        with CaptureQueriesContext(connection) as queries:
            summary = run(study, votes_file(n))
        assert summary.created == {"prompt": n, "response": 2 * n, "rating": 3 * n, "judgment": n}
        counts.append(len(queries))
    assert counts[1] <= counts[0] + 2, counts
