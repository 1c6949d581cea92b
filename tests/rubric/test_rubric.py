"""Editing a study's rubric: criteria versions, rubric versions with what changed, the confirmation once a
study has opened, the scale lock, and ratings, reports and exports that keep every version."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.models import AuditEvent, Criterion, PreferenceExport, Rating, RubricVersion, Study
from annotations.rubric import RubricError, rubric_changes, rubric_clean, text_diff
from annotations.selectors_reports import ReportFilters, report_table
from annotations.services.assignment import assignment_next
from annotations.services.exports import export_query, export_spec
from annotations.services.rating import RatingInput, rating_revise, rating_submit
from annotations.services.rubric_edit import rubric_edit, rubric_snapshot, rubric_versions_ensure
from annotations.services.studies import study_create, study_criteria
from tests.workspace.conftest import add_clinicians, build_study

pytestmark = pytest.mark.django_db


def _spec(study: Study) -> list[dict]:
    return [
        {k: item[k] for k in ("key", "title", "question", "better_when", "worse_when")}
        for item in rubric_snapshot(study)
    ]


def _with(study: Study, key: str, **changes) -> list[dict]:
    return [{**item, **changes} if item["key"] == key else item for item in _spec(study)]


def _rate(study: Study, user, values: dict[str, int]):
    assignment = assignment_next(study=study, rater=user.rater)
    rating_submit(assignment=assignment, rater=user.rater, data=RatingInput(values=values))
    return assignment


# ---- the pure core -----------------------------------------------------------------------------------


def test_changes_are_plain_language_lines():
    old = [
        {"key": "a", "title": "Empathy", "question": "Q", "better_when": "B", "worse_when": "W"},
        {"key": "b", "title": "Safety", "question": "Q", "better_when": "B", "worse_when": "W"},
        {"key": "overall", "title": "Overall", "question": "Q", "better_when": "B", "worse_when": "W"},
    ]
    new = [
        {**old[1], "question": "Q2", "worse_when": "W2"},
        {**old[0], "title": "Warmth"},
        {"key": "c", "title": "Hope", "question": "Q", "better_when": "B", "worse_when": "W"},
        old[2],
    ]
    assert rubric_changes(old, new) == [
        "Safety: question and worse when changed",
        "Empathy: renamed to Warmth",
        "Added: Hope",
        "Order changed: Safety, Warmth, Hope, Overall",
    ]
    assert rubric_changes(old, old[:1] + old[2:]) == ["Removed: Safety"]


def test_text_diff_marks_removed_and_added_words():
    runs = text_diff("Names the feelings warmly", "Names the feelings accurately and warmly")
    assert {"op": "added", "text": "accurately and "} in [r for r in runs if r["op"] == "added"] or any(
        r["op"] == "added" and "accurately" in r["text"] for r in runs
    )
    assert "".join(r["text"] for r in runs if r["op"] != "removed") == "Names the feelings accurately and warmly"
    assert "".join(r["text"] for r in runs if r["op"] != "added") == "Names the feelings warmly"


def test_the_overall_item_goes_last_and_may_not_be_removed():
    items = [
        {"key": "overall", "title": "Overall", "question": "Q", "better_when": "B", "worse_when": "W"},
        {"title": "Hope and agency", "question": "Q", "better_when": "B", "worse_when": "W"},
    ]
    cleaned = rubric_clean(items, overall_key="overall")
    assert [c["key"] for c in cleaned] == ["hope_and_agency", "overall"]
    with pytest.raises(RubricError) as error:
        rubric_clean(items[1:], overall_key="overall")
    assert "overall preference item cannot be removed" in str(error.value)


def test_a_bad_criterion_is_named_by_its_position_and_title():
    with pytest.raises(RubricError) as error:
        rubric_clean(
            [{"key": "a", "title": "Empathy", "question": "", "better_when": "B", "worse_when": "W"}], overall_key=None
        )
    assert error.value.errors == {"criteria.0.question": ["Criterion 1 (Empathy): write its question."]}


# ---- the service -------------------------------------------------------------------------------------


def test_the_history_starts_with_version_1_recorded_lazily(researcher):
    study = study_create(slug="r1", title="R", owner=researcher)
    assert not RubricVersion.objects.filter(study=study).exists()
    first = rubric_versions_ensure(study=study)
    assert first.number == 1 and [c["key"] for c in first.criteria] == [c.key for c in study_criteria(study)]
    assert rubric_versions_ensure(study=study).pk == first.pk


def test_an_edited_question_makes_a_new_criterion_version_and_a_rubric_version(researcher):
    study = study_create(slug="r2", title="R", owner=researcher)
    outcome = rubric_edit(
        study=study, actor=researcher, criteria=_with(study, "empathy", question="Does it name the feeling?")
    )
    assert outcome.version.number == 2 and outcome.changes == ["Empathy: question changed"]
    empathy = next(c for c in study_criteria(study) if c.key == "empathy")
    assert (empathy.version, empathy.question) == (2, "Does it name the feeling?")
    assert Criterion.objects.get(key="empathy", version=1).question != empathy.question  # v1 untouched
    event = AuditEvent.objects.get(action="rubric.edit")
    assert event.data["version"] == 2 and event.data["changes"] == ["Empathy: question changed"]
    # Another study created now still gets the default text (version 1).
    other = study_create(slug="r2b", title="R", owner=researcher)
    assert next(c for c in study_criteria(other) if c.key == "empathy").version == 1


def test_saving_the_same_rubric_makes_no_version(researcher):
    study = study_create(slug="r3", title="R", owner=researcher)
    outcome = rubric_edit(study=study, actor=researcher, criteria=_spec(study))
    assert outcome.version is None and RubricVersion.objects.filter(study=study).count() == 1


def test_adding_removing_and_reordering_are_recorded(researcher):
    study = study_create(slug="r4", title="R", owner=researcher, criterion_keys=["empathy", "safety", "overall"])
    spec = _spec(study)
    new = {"title": "Hope", "question": "Which gives more hope?", "better_when": "B", "worse_when": "W"}
    outcome = rubric_edit(study=study, actor=researcher, criteria=[spec[2], spec[1], new])
    assert [c.key for c in study_criteria(study)] == ["safety", "hope", "overall"]
    assert outcome.changes == ["Added: Hope", "Removed: Empathy"]


def test_settings_change_is_a_version(researcher):
    study = study_create(slug="r5", title="R", owner=researcher)
    outcome = rubric_edit(
        study=study,
        actor=researcher,
        criteria=_spec(study),
        settings={"scale_points": 5, "rationale_required": True, "rationale_min_length": 20},
    )
    study.refresh_from_db()
    assert (study.scale_points, study.rationale_required, study.rationale_min_length) == (5, True, 20)
    assert outcome.changes == [
        "Scale: 3-point → 5-point",
        "Rationale: optional → required, at least 20 characters",
    ]


def test_after_opening_an_edit_needs_confirmation_and_the_scale_is_locked_once_rated(researcher, django_user_model):
    study = build_study(owner=researcher, slug="r6")
    rubric_versions_ensure(study=study)  # as the page does on its first visit
    spec = _with(study, "safety", better_when="Notices risk and names help.")
    with pytest.raises(ValidationError) as error:
        rubric_edit(study=study, actor=researcher, criteria=spec)
    assert "rubric v1" in error.value.message_dict["confirm"][0] and "v2" in error.value.message_dict["confirm"][0]
    assert RubricVersion.objects.filter(study=study).count() == 1  # nothing written
    (carol,) = add_clinicians(django_user_model, study, ["rc1"])
    _rate(study, carol, {"empathy": -1, "safety": 0, "overall": 1})
    with pytest.raises(ValidationError) as error:
        rubric_edit(study=study, actor=researcher, criteria=_spec(study), settings={"scale_points": 5}, confirm=True)
    assert "scale cannot change" in error.value.message_dict["scale_points"][0]
    outcome = rubric_edit(study=study, actor=researcher, criteria=spec, confirm=True)
    assert outcome.version.after_open and outcome.version.number == 2


def test_ratings_keep_their_version_and_reports_and_exports_group_by_key(researcher, django_user_model):
    study = build_study(owner=researcher, slug="r7", prompts=2)
    first, second = add_clinicians(django_user_model, study, ["rc2", "rc3"])
    before = _rate(study, first, {"empathy": -1, "safety": 0, "overall": -1})
    rubric_edit(
        study=study, actor=researcher, criteria=_with(study, "empathy", question="Who names the feeling?"), confirm=True
    )
    after = _rate(study, second, {"empathy": 1, "safety": 0, "overall": 1})
    assert Rating.objects.get(assignment=before, criterion__key="empathy").criterion.version == 1
    assert Rating.objects.get(assignment=after, criterion__key="empathy").criterion.version == 2

    data = report_table(study=study, filters=ReportFilters())
    keys = [c["key"] for c in data.criteria]
    assert keys == ["empathy", "safety", "overall"]  # one entry per key, not one per version
    empathy = data.criteria[0]
    assert empathy["versions"] == [1, 2] and empathy["version"] == "1,2"
    assert empathy["title"] == "Empathy"
    assert (data.table.criterion == 0).sum() == 2  # both clinicians' empathy answers count together

    export = PreferenceExport(study=study, format="reward", criterion_keys=["empathy", "safety"], policy={})
    ids = set(export_query(export).criterion_ids)
    assert set(Criterion.objects.filter(key="empathy").values_list("pk", flat=True)) <= ids
    spec = export_spec(export=export, agreement={}, created_at=None)
    assert [(c.key, c.rubric_version) for c in spec.criteria] == [("empathy", "1,2"), ("safety", 1)]


def test_a_revised_answer_after_an_edit_moves_to_the_new_version_and_an_unchanged_one_stays(
    researcher, django_user_model
):
    study = build_study(owner=researcher, slug="r8", prompts=2)
    (carol,) = add_clinicians(django_user_model, study, ["rc4"])
    assignment = _rate(study, carol, {"empathy": -1, "safety": 0, "overall": -1})
    spec = _with(study, "empathy", question="Who names the feeling?")
    spec = [{**item, "question": "Safer?"} if item["key"] == "safety" else item for item in spec]
    rubric_edit(study=study, actor=researcher, criteria=spec, confirm=True)
    rating_revise(
        assignment=assignment, rater=carol.rater, data=RatingInput(values={"empathy": 1, "safety": 0, "overall": -1})
    )
    versions = dict(Rating.objects.filter(assignment=assignment).values_list("criterion__key", "criterion__version"))
    assert versions == {"empathy": 2, "safety": 1, "overall": 1}


# ---- pages, API and commands -------------------------------------------------------------------------


def test_the_rubric_page_saves_a_version_and_names_bad_fields(client, researcher):
    study = study_create(slug="r9", title="R", owner=researcher, criterion_keys=["empathy", "overall"])
    client.force_login(researcher)
    page = client.get(f"/studies/{study.slug}/rubric/")
    assert page.status_code == 200 and "Rubric v1" in page.content.decode() and "Empathy" in page.content.decode()
    form = {
        "rows": "2",
        "action": "save",
        "rationale_mode": "overall",
        "rationale_min_length": "0",
        "scale_points": "3",
    }
    for i, item in enumerate(_spec(study)):
        form.update({f"c-{i}-{k}": v for k, v in item.items()})
    bad = client.post(f"/studies/{study.slug}/rubric/", {**form, "c-0-question": ""})
    assert bad.status_code == 400 and "Criterion 1 (Empathy): write its question." in bad.content.decode()
    moved = client.post(f"/studies/{study.slug}/rubric/", {**form, "action": "", "move": "0:down"})
    assert moved.status_code == 200  # the overall item stays last: nothing to swap with
    saved = client.post(f"/studies/{study.slug}/rubric/", {**form, "c-0-worse_when": "Rushes to fix."})
    assert saved.status_code == 302
    assert RubricVersion.objects.get(study=study, number=2).changes == ["Empathy: worse when changed"]
    history = client.get(f"/studies/{study.slug}/rubric/versions/").content.decode()
    assert "Empathy: worse when changed" in history and "Compare v2 with v1" in history
    diff = client.get(f"/studies/{study.slug}/rubric/versions/2/").content.decode()
    assert '<del class="diff-removed">Skips past' in diff and '<ins class="diff-added">Rushes</ins> to fix.' in diff


def test_the_page_warns_once_the_study_has_opened(client, researcher):
    study = build_study(owner=researcher, slug="r10")
    client.force_login(researcher)
    html = client.get(f"/studies/{study.slug}/rubric/").content.decode()
    assert "Ratings already given were made under rubric v1; saving creates v2" in html
    assert 'name="confirm"' in html


def test_the_api_reads_edits_and_diffs(client, researcher):
    study = study_create(slug="r11", title="R", owner=researcher, criterion_keys=["empathy", "overall"])
    client.force_login(researcher)
    rubric = client.get(f"/api/v1/studies/{study.slug}/rubric").json()
    assert rubric["version"] == 1 and [c["key"] for c in rubric["criteria"]] == ["empathy", "overall"]
    body = {"criteria": _with(study, "empathy", title="Warmth"), "note": "plainer word"}
    edited = client.put(f"/api/v1/studies/{study.slug}/rubric", body, content_type="application/json").json()
    assert edited == {"version": 2, "changes": ["Empathy: renamed to Warmth"]}
    bad = client.put(
        f"/api/v1/studies/{study.slug}/rubric", {"criteria": [body["criteria"][0]]}, content_type="application/json"
    )
    assert bad.status_code == 400 and "overall preference" in json.dumps(bad.json()["error"]["details"])
    versions = client.get(f"/api/v1/studies/{study.slug}/rubric/versions").json()
    assert [v["number"] for v in versions] == [2, 1] and versions[0]["note"] == "plainer word"
    diff = client.get(f"/api/v1/studies/{study.slug}/rubric/versions/2").json()
    assert diff["previous"] == 1 and diff["diff"][0]["status"] == "changed"


def test_the_commands_show_and_edit(researcher, tmp_path, capsys):
    study = study_create(slug="r12", title="R", owner=researcher, criterion_keys=["empathy", "overall"])
    call_command("rubric_show", "--study", study.slug)
    spec = json.loads(capsys.readouterr().out)
    spec["criteria"][0]["better_when"] = "Names the feeling."
    path = tmp_path / "rubric.json"
    path.write_text(json.dumps(spec))
    call_command("rubric_edit", "--study", study.slug, "--from-json", str(path), "--user", "alice")
    assert "Saved rubric v2" in capsys.readouterr().out
    call_command("rubric_show", "--study", study.slug, "--versions")
    assert json.loads(capsys.readouterr().out)[0]["changes"] == ["Empathy: better when changed"]
    path.write_text("{not json")
    with pytest.raises(CommandError, match="line 1"):
        call_command("rubric_edit", "--study", study.slug, "--from-json", str(path))
