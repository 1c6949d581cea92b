"""The Django side of exports: the database path, policies, splits, reproducibility, immutability, errors."""

import datetime
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from annotations.exporting import verify_export
from annotations.models import Assignment, AuditEvent, Comparison, JobStatus, Rating
from annotations.services.exports import export_create, export_directory, export_run, export_zip_path
from tests.exports.conftest import CRITERIA, RATERS, build_rated_study

pytestmark = pytest.mark.django_db


def read_rows(directory: Path) -> dict[str, list[dict]]:
    """Every data and ties file of an export (JSONL), by relative path."""
    return {
        str(path.relative_to(directory)): [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(directory.rglob("*.jsonl"))
    }


def export_of(study, researcher, **overrides):
    options = {"format": "trl-dpo", "criterion_keys": CRITERIA, "inline": True, **overrides}
    return export_create(study=study, actor=researcher, **options)


def test_it_streams_the_study_into_a_finished_snapshot_with_provenance(rated, researcher):
    export = export_of(rated.study, researcher)

    assert export.status == JobStatus.SUCCEEDED, export.error
    directory = export_directory(export)
    assert directory == Path(export.path) and directory.parent.name == "exports"
    assert directory.name == str(export.public_id)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest == export.manifest
    assert manifest["study"] == {"slug": "s1", "title": "Study one"}
    assert manifest["rubric_versions"] == dict.fromkeys(CRITERIA, 1)
    assert manifest["raters"] == {"clinicians": 3, "judges": 0}
    assert manifest["comparisons"]["total"] == len(rated.comparisons)
    assert manifest["code_version"].startswith("evalplatform ")
    # Agreement at export time comes from the report service, per criterion.
    agreement = manifest["agreement"]["by_criterion"]
    assert set(agreement) == set(CRITERIA)
    assert agreement["empathy"]["n_raters"] == 3
    assert "estimate" in agreement["empathy"]["alpha_nominal"]
    assert "estimate" in agreement["empathy"]["percent_agreement"]
    # created_at is the newest rating read, so reruns on the same data give the same bytes.
    newest = max(Rating.objects.values_list("updated_at", flat=True))
    assert manifest["created_at"] == newest.astimezone(datetime.UTC).isoformat()
    # The "sys-new" response wins every pair it is in (two votes to a tie), and rows name no system.
    rows = read_rows(directory)
    empathy = rows["data/empathy/train.jsonl"] + rows["data/empathy/test.jsonl"]
    assert len(empathy) == sum(manifest["rows"]["empathy"].values()) == 2 * 12
    new_replies = {c.response_first.content for c in rated.comparisons if c.response_first.system.name == "sys-new"}
    new_replies |= {c.response_second.content for c in rated.comparisons if c.response_second.system.name == "sys-new"}
    assert all(row["chosen"][0]["content"] in new_replies for row in empathy)
    assert "sys-" not in (directory / "data" / "empathy" / "train.jsonl").read_text()
    assert verify_export(directory) == []
    assert verify_export(export_zip_path(export)) == []
    assert AuditEvent.objects.filter(action="export.create", object_id=str(export.pk)).exists()
    assert AuditEvent.objects.filter(action="export.finish", object_id=str(export.pk)).exists()


def test_two_exports_of_the_same_data_and_policy_are_byte_identical(rated, researcher):
    policy = {"min_votes": 2, "ties": "separate_file"}
    first = export_of(rated.study, researcher, policy=policy, split={"seed": 3, "test_fraction": 0.25})
    second = export_of(rated.study, researcher, policy=policy, split={"seed": 3, "test_fraction": 0.25})

    assert first.public_id != second.public_id
    assert first.zip_sha256 == second.zip_sha256
    assert export_zip_path(first).read_bytes() == export_zip_path(second).read_bytes()
    files = sorted(p.relative_to(export_directory(first)) for p in export_directory(first).rglob("*") if p.is_file())
    for relative in files:
        assert (export_directory(first) / relative).read_bytes() == (export_directory(second) / relative).read_bytes()
    # A different seed moves prompts between splits: the bytes change.
    third = export_of(rated.study, researcher, policy=policy, split={"seed": 4, "test_fraction": 0.25})
    assert third.zip_sha256 != first.zip_sha256


def test_a_finished_export_is_never_rewritten(rated, researcher):
    export = export_of(rated.study, researcher)
    zip_before = export_zip_path(export).read_bytes()
    # Ratings change after the export; rerunning the finished export changes nothing.
    Rating.objects.filter(assignment__comparison=rated.comparisons[0]).update(value=1, revision=2)
    assert export_run(export_id=export.pk) == JobStatus.SUCCEEDED
    assert export_zip_path(export).read_bytes() == zip_before


def test_a_comparison_flagged_both_unacceptable_is_never_chosen(study, researcher):
    # Every rater prefers the first response on every pair, strongly.
    rated = build_rated_study(study, prompts=4, vote_rule=lambda index, rater: -1)
    flagged = rated.comparisons[0]
    Assignment.objects.filter(comparison=flagged, rater=rated.raters[RATERS[0]]).update(both_unacceptable=True)

    export = export_of(study, researcher, format="reward")

    rows = read_rows(export_directory(export))
    chosen_ids = {row["comparison_id"] for file_rows in rows.values() for row in file_rows}
    assert str(flagged.pk) not in chosen_ids
    assert len(chosen_ids) == len(rated.comparisons) - 1
    assert export.manifest["comparisons"]["both_unacceptable"] == 1
    assert export.manifest["outcomes"]["safety"]["both_unacceptable"] == 1


def test_raters_below_the_gold_threshold_are_not_counted(study, researcher):
    # rater-a and rater-c disagree on every pair (a tie overall); rater-b does not rate.
    rated = build_rated_study(study, prompts=3, vote_rule=lambda index, rater: {0: -1, 1: None, 2: 1}[rater])
    # Real gold items: the first two pairs, expected "first"; rater-a answers as expected, rater-c never does.
    gold_comparisons = rated.comparisons[:2]
    for comparison in gold_comparisons:
        Comparison.objects.filter(pk=comparison.pk).update(is_gold=True, gold_expected={"empathy": -1, "safety": -1})
    Assignment.objects.filter(comparison__in=gold_comparisons).update(purpose=Assignment.Purpose.GOLD)

    everyone = export_of(study, researcher, filters={"exclude_gold_items": True})
    trusted = export_of(study, researcher, policy={"min_gold_accuracy": 0.8}, filters={"exclude_gold_items": True})

    assert sum(everyone.manifest["rows"]["empathy"].values()) == 0  # one vote each way: ties, dropped
    assert everyone.manifest["raters"]["clinicians"] == 2
    assert trusted.manifest["raters_excluded"]["below_gold_accuracy"] == 1
    assert trusted.manifest["raters"]["clinicians"] == 1
    rows = read_rows(export_directory(trusted))
    empathy = rows["data/empathy/train.jsonl"] + rows["data/empathy/test.jsonl"]
    non_gold = [c for c in rated.comparisons if c not in gold_comparisons]
    assert sorted(row["comparison_id"] for row in empathy) == sorted(str(c.pk) for c in non_gold)
    # rater-a (trusted) always preferred the first response.
    first_content = {str(c.pk): c.response_first.content for c in non_gold}
    assert all(row["chosen"][0]["content"] == first_content[row["comparison_id"]] for row in empathy)


@pytest.mark.parametrize("stratify_by", [None, "category"])
def test_no_prompt_lands_in_two_splits(study, researcher, stratify_by):
    rated = build_rated_study(study, prompts=24)
    export = export_of(
        study,
        researcher,
        format="multi-objective",
        split={"seed": 7, "test_fraction": 0.25, "validation_fraction": 0.25, "stratify_by": stratify_by},
    )

    splits_of_prompt: dict[str, set[str]] = {}
    for path, rows in read_rows(export_directory(export)).items():
        split = Path(path).stem
        for row in rows:
            splits_of_prompt.setdefault(rated.prompt_of[row["comparison_id"]], set()).add(split)
    assert len(splits_of_prompt) == 24
    assert all(len(splits) == 1 for splits in splits_of_prompt.values())
    assert {split for splits in splits_of_prompt.values() for split in splits} == {"train", "validation", "test"}


def test_invalid_settings_name_the_field(rated, researcher):
    cases = [
        ({"format": "csv"}, "format"),
        ({"file_format": "xlsx"}, "file_format"),
        ({"criterion_keys": ["kindness"]}, "criterion_keys"),
        ({"policy": {"min_votes": 0}}, "policy"),
        ({"policy": {"quorum": 2}}, "policy"),
        ({"split": {"test_fraction": 1.5}}, "split"),
        ({"filters": {"systems": ["nobody"]}}, "filters"),
        ({"filters": {"submitted_before": "last week"}}, "filters"),
    ]
    for overrides, field in cases:
        with pytest.raises(ValidationError) as caught:
            export_of(rated.study, researcher, **overrides)
        assert field in caught.value.message_dict, (overrides, caught.value.message_dict)
    assert not rated.study.exports.exists()


def test_filters_limit_the_systems_and_the_time(rated, researcher):
    only_two = export_of(rated.study, researcher, filters={"systems": ["sys-base", "sys-new"]})
    assert only_two.manifest["comparisons"]["total"] == 12
    assert set(only_two.manifest["systems"]) == {"sys-base", "sys-new"}
    before_any = export_of(rated.study, researcher, filters={"submitted_before": "2000-01-01T00:00:00+00:00"})
    assert before_any.manifest["comparisons"]["total"] == 0


def test_the_command_writes_the_snapshot_to_out(rated, tmp_path):
    out = tmp_path / "dataset"
    call_command(
        "export_preferences",
        "--study",
        "s1",
        "--format",
        "reward",
        "--criterion",
        "empathy",
        "--out",
        str(out),
        "--file-format",
        "parquet",
        "--min-votes",
        "2",
        "--test-fraction",
        "0.2",
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "reward" and manifest["file_format"] == "parquet"
    assert manifest["criteria"] == ["empathy"] and manifest["policy"]["min_votes"] == 2
    assert (out / "data" / "empathy" / "train.parquet").is_file()
    assert verify_export(out) == []
    export = rated.study.exports.get()
    assert export.created_by is None and export.status == JobStatus.SUCCEEDED


def test_a_failed_export_says_why_and_leaves_no_files(rated, researcher, monkeypatch):
    from annotations.services import exports as service

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(service, "write_export", broken)
    export = export_of(rated.study, researcher)

    assert export.status == JobStatus.FAILED and "disk full" in export.error
    assert not export_directory(export).exists() and not export_zip_path(export).exists()
    assert AuditEvent.objects.filter(action="export.fail", object_id=str(export.pk)).exists()


def test_a_run_after_a_crash_adopts_the_complete_directory_instead_of_rewriting(rated, researcher):
    export = export_of(rated.study, researcher)
    zip_sha256 = export.zip_sha256
    # The worker died after the directory was renamed into place, before the row was updated.
    export_zip_path(export).unlink()
    type(export).objects.filter(pk=export.pk).update(status=JobStatus.RUNNING, manifest={}, zip_sha256="")

    assert export_run(export_id=export.pk) == "succeeded"
    export.refresh_from_db()
    assert export.status == JobStatus.SUCCEEDED and export.zip_sha256 == zip_sha256
    assert export.manifest["files"] and verify_export(export_zip_path(export)) == []
