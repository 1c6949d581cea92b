import json
import zipfile

import pyarrow.parquet as pq
import pytest

from annotations.exporting import (
    AggregationPolicy,
    CriterionSpec,
    ExportInputError,
    ExportSpec,
    SplitConfig,
    StudyInfo,
    VoteRecord,
    verify_export,
    write_export,
    write_zip,
)
from annotations.exporting.synthetic import generate_comparisons, make_comparison

CRITERIA = (CriterionSpec("empathy", "v2"), CriterionSpec("safety", "v1"))


def make_spec(**changes) -> ExportSpec:
    values = {
        "format": "trl-dpo",
        "file_format": "jsonl",
        "criteria": CRITERIA,
        "scale_points": 7,
        "policy": AggregationPolicy(),
        "split": SplitConfig(seed=0, test_fraction=0.25),
        "study": StudyInfo("demo", "Demo study"),
        "code_version": "0123abc",
        "agreement": {"empathy": {"krippendorff_alpha": 0.61}},
        "filters": {"systems": ["base", "new"]},
        "created_at": "2025-01-01T00:00:00Z",
    }
    values.update(changes)
    return ExportSpec(**values)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_rows(result, prefix="data/"):
    rows = []
    for path in result.manifest["files"]:
        if path.startswith(prefix) and path.endswith(".jsonl"):
            rows += read_jsonl(result.directory / path)
    return rows


def hand_built_records():
    """c1 prefers the first response on empathy, c2 ties, c3 prefers the second, c4 is flagged."""
    return [
        make_comparison(
            [("empathy", "x", -3), ("empathy", "y", -2)],
            comparison_id="c1",
            prompt_id="p1",
            first="kind",
            second="curt",
        ),
        make_comparison(
            [("empathy", "x", 0), ("empathy", "y", 0)],
            comparison_id="c2",
            prompt_id="p2",
            first="same-1",
            second="same-2",
        ),
        make_comparison(
            [("empathy", "x", 1), ("empathy", "y", 2)], comparison_id="c3", prompt_id="p3", first="cold", second="warm"
        ),
        make_comparison(
            [("empathy", "x", -3), VoteRecord("empathy", "y", False, -3, both_unacceptable=True)],
            comparison_id="c4",
            prompt_id="p4",
            first="unsafe-1",
            second="unsafe-2",
        ),
    ]


def one_criterion_spec(**changes):
    return make_spec(
        criteria=(CriterionSpec("empathy", "v2"),), split=SplitConfig(seed=0, test_fraction=0.0), **changes
    )


def test_chosen_and_rejected_follow_the_votes(tmp_path):
    result = write_export(hand_built_records(), one_criterion_spec(), tmp_path / "out")
    rows = {row["comparison_id"]: row for row in all_rows(result)}
    assert set(rows) == {"c1", "c3"}
    assert rows["c1"]["chosen"] == [{"role": "assistant", "content": "kind"}]
    assert rows["c1"]["rejected"] == [{"role": "assistant", "content": "curt"}]
    assert rows["c3"]["chosen"][0]["content"] == "warm"
    assert rows["c1"]["prompt"] == [{"role": "user", "content": "message of p1"}]
    assert set(rows["c1"]) == {"prompt", "chosen", "rejected", "comparison_id"}


def test_reward_rows_carry_the_vote_margin(tmp_path):
    result = write_export(hand_built_records(), one_criterion_spec(format="reward"), tmp_path / "out")
    rows = {row["comparison_id"]: row for row in all_rows(result)}
    assert rows["c1"]["margin"] == pytest.approx(5 / 6, abs=1e-6)
    assert rows["c3"]["margin"] == pytest.approx(3 / 6, abs=1e-6)


def test_ties_are_dropped_or_written_to_their_own_file(tmp_path):
    dropped = write_export(hand_built_records(), one_criterion_spec(), tmp_path / "dropped")
    separate = write_export(
        hand_built_records(), one_criterion_spec(policy=AggregationPolicy(ties="separate_file")), tmp_path / "separate"
    )
    assert not (dropped.directory / "ties").exists()
    assert "c2" not in {row["comparison_id"] for row in all_rows(dropped)}
    assert "c2" not in {row["comparison_id"] for row in all_rows(separate)}
    ties = all_rows(separate, prefix="ties/")
    assert [row["comparison_id"] for row in ties] == ["c2"]
    assert ties[0]["votes"] == {"a": 0, "tie": 2, "b": 0}
    assert separate.manifest["tie_rows"]["empathy"]["train"] == 1
    assert dropped.manifest["outcomes"]["empathy"]["tie"] == 1


@pytest.mark.parametrize("fmt", ["trl-dpo", "reward", "multi-objective"])
def test_a_flagged_comparison_never_yields_a_row_and_is_counted(tmp_path, fmt):
    result = write_export(hand_built_records(), one_criterion_spec(format=fmt), tmp_path / "out")
    assert "c4" not in {row["comparison_id"] for row in all_rows(result)}
    for text in ("unsafe-1", "unsafe-2"):
        assert all(text not in json.dumps(row) for row in all_rows(result))
    assert result.manifest["comparisons"]["both_unacceptable"] == 1
    assert result.manifest["outcomes"]["empathy"]["both_unacceptable"] == 1


def test_flagged_comparisons_are_absent_from_a_large_generated_export(tmp_path):
    records = list(generate_comparisons(3000, both_unacceptable_rate=0.05))
    flagged_ids = {r.comparison_id for r in records if any(v.both_unacceptable for v in r.votes)}
    result = write_export(iter(records), make_spec(), tmp_path / "out")
    written = {row["comparison_id"] for row in all_rows(result)}
    assert len(flagged_ids) > 50
    assert written and not (written & flagged_ids)
    assert result.manifest["comparisons"]["both_unacceptable"] == len(flagged_ids)


def test_multi_objective_rows_hold_a_label_per_criterion(tmp_path):
    result = write_export(
        generate_comparisons(200, judges=1),
        make_spec(format="multi-objective", policy=AggregationPolicy(include_judges=True)),
        tmp_path / "out",
    )
    rows = all_rows(result)
    assert rows
    for row in rows:
        assert set(row) == {"comparison_id", "prompt", "response_a", "response_b", "labels"}
        assert set(row["labels"]) == {"empathy", "safety"}
        for label in row["labels"].values():
            assert label["preferred"] in ("a", "b", "tie", None)
            assert sum(label["votes"].values()) == 4  # three clinicians and the counted judge
            assert sum(label["judge_votes"].values()) == 1
            assert 0.0 <= label["agreement"] <= 1.0 and 0.0 <= label["margin"] <= 1.0
    assert result.manifest["raters"] == {"clinicians": 3, "judges": 1}


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
@pytest.mark.parametrize("fmt", ["trl-dpo", "reward", "multi-objective"])
def test_the_same_inputs_give_byte_identical_exports_and_zips(tmp_path, fmt, file_format):
    spec = make_spec(format=fmt, file_format=file_format, policy=AggregationPolicy(ties="separate_file"))
    first = write_export(generate_comparisons(600), spec, tmp_path / "first")
    second = write_export(generate_comparisons(600), spec, tmp_path / "second")
    names = sorted(p.relative_to(first.directory) for p in first.directory.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second.directory) for p in second.directory.rglob("*") if p.is_file())
    for name in names:
        assert (first.directory / name).read_bytes() == (second.directory / name).read_bytes(), name
    first_zip = write_zip(first.directory, tmp_path / "first.zip")
    second_zip = write_zip(second.directory, tmp_path / "second.zip")
    assert first_zip == second_zip
    assert (tmp_path / "first.zip").read_bytes() == (tmp_path / "second.zip").read_bytes()
    assert verify_export(tmp_path / "first.zip") == []


def test_parquet_files_have_small_row_groups_and_the_jsonl_rows(tmp_path):
    jsonl = write_export(generate_comparisons(500), make_spec(format="reward"), tmp_path / "jsonl")
    parquet = write_export(
        generate_comparisons(500),
        make_spec(format="reward", file_format="parquet"),
        tmp_path / "parquet",
        row_group_rows=64,
    )
    table_file = pq.ParquetFile(parquet.directory / "data/empathy/train.parquet")
    assert table_file.metadata.num_row_groups > 1
    assert all(table_file.metadata.row_group(i).num_rows <= 64 for i in range(table_file.metadata.num_row_groups))
    assert table_file.read().to_pylist() == read_jsonl(jsonl.directory / "data/empathy/train.jsonl")
    assert table_file.metadata.metadata is not None and b"created" not in b"".join(table_file.metadata.metadata)


def test_the_manifest_matches_the_files(tmp_path):
    result = write_export(
        generate_comparisons(300), make_spec(policy=AggregationPolicy(ties="separate_file")), tmp_path / "out"
    )
    manifest = json.loads((result.directory / "manifest.json").read_text())
    assert manifest == result.manifest
    on_disk = {p.relative_to(result.directory).as_posix() for p in result.directory.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(manifest["files"])
    assert verify_export(result.directory) == []
    for split in manifest["splits"]:
        for criterion in manifest["criteria"]:
            path = f"data/{criterion}/{split}.jsonl"
            assert (
                len(read_jsonl(result.directory / path))
                == manifest["rows"][criterion][split]
                == manifest["file_rows"][path]
            )
    assert manifest["format"] == "trl-dpo" and manifest["splits"] == ["train", "test"]
    assert manifest["rubric_versions"] == {"empathy": "v2", "safety": "v1"}
    assert manifest["agreement"] == {"empathy": {"krippendorff_alpha": 0.61}}
    assert manifest["policy"] == AggregationPolicy(ties="separate_file").to_dict()
    assert manifest["raters"] == {"clinicians": 3, "judges": 0}


def test_verification_catches_changed_missing_and_extra_files(tmp_path):
    result = write_export(generate_comparisons(100), make_spec(), tmp_path / "out")
    write_zip(result.directory, tmp_path / "good.zip")
    assert verify_export(tmp_path / "good.zip") == []
    train = result.directory / "data/empathy/train.jsonl"
    train.write_bytes(train.read_bytes().replace(b"a", b"b", 1))
    (result.directory / "data/safety/test.jsonl").unlink()
    (result.directory / "notes.txt").write_text("x")
    problems = verify_export(result.directory)
    assert any(p.startswith("data/empathy/train.jsonl: sha256") for p in problems)
    assert any(p.startswith("data/safety/test.jsonl: listed") for p in problems)
    assert any(p.startswith("notes.txt: present") for p in problems)


def test_zip_entries_are_sorted_with_fixed_times(tmp_path):
    result = write_export(generate_comparisons(50), make_spec(), tmp_path / "out")
    write_zip(result.directory, tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names) and "manifest.json" in names and "README.md" in names
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_the_dataset_card_tells_where_rows_came_from(tmp_path):
    result = write_export(generate_comparisons(100), make_spec(), tmp_path / "out")
    card = (result.directory / "README.md").read_text()
    for expected in (
        "Demo study",
        "`demo`",
        "0123abc",
        "| empathy | v2 |",
        "krippendorff_alpha",
        "load_dataset",
        "DPOTrainer",
    ):
        assert expected in card
    assert "path: data/empathy/train.jsonl" in card
    assert result.manifest["files"]["README.md"]


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
@pytest.mark.parametrize(
    ("fmt", "columns"),
    [
        ("trl-dpo", {"prompt", "chosen", "rejected", "comparison_id"}),
        ("reward", {"prompt", "chosen", "rejected", "comparison_id", "margin"}),
        ("multi-objective", {"prompt", "response_a", "response_b", "comparison_id", "labels"}),
    ],
)
def test_rows_load_with_datasets(tmp_path, fmt, file_format, columns):
    datasets = pytest.importorskip("datasets")
    result = write_export(generate_comparisons(200), make_spec(format=fmt, file_format=file_format), tmp_path / "out")
    subdir = "" if fmt == "multi-objective" else "empathy/"
    data_files = {
        split: str(result.directory / f"data/{subdir}{split}.{file_format}") for split in result.manifest["splits"]
    }
    loader = "json" if file_format == "jsonl" else "parquet"
    dataset = datasets.load_dataset(loader, data_files=data_files, cache_dir=str(tmp_path / "cache"))
    assert set(dataset["train"].column_names) == columns
    if fmt == "multi-objective":
        assert len(dataset["train"]) == result.manifest["file_rows"][f"data/train.{file_format}"]
        assert set(dataset["train"][0]["labels"]) == {"empathy", "safety"}
    else:
        assert len(dataset["train"]) == result.manifest["rows"]["empathy"]["train"]
        assert dataset["train"][0]["chosen"][0]["role"] == "assistant"


def test_a_failure_leaves_no_export_behind(tmp_path):
    def records():
        yield from generate_comparisons(20)
        yield make_comparison([("empathy", "x", 9)], comparison_id="bad")

    with pytest.raises(ExportInputError, match=r"comparison 'bad': votes\[0\]\.value 9 is outside the 7-point scale"):
        write_export(records(), make_spec(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_cancelling_from_the_progress_callback_leaves_no_export(tmp_path):
    class Cancelled(Exception):
        pass

    seen = []

    def on_progress(done):
        seen.append(done)
        if done >= 200:
            raise Cancelled

    with pytest.raises(Cancelled):
        write_export(
            generate_comparisons(1000), make_spec(), tmp_path / "out", on_progress=on_progress, progress_every=100
        )
    assert seen == [100, 200]
    assert list(tmp_path.iterdir()) == []


def test_it_refuses_to_overwrite_an_export(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        write_export(generate_comparisons(1), make_spec(), tmp_path / "out")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (make_comparison([("empathy", "x", 1), ("empathy", "x", 2)]), "rater 'x' voted twice on criterion 'empathy'"),
        (make_comparison([("empathy", "x", 1.0)]), r"votes\[0\]\.value must be an int"),
        (make_comparison([], prompt_id=""), "prompt_id must not be empty"),
    ],
)
def test_bad_records_are_named_in_the_error(tmp_path, record, message):
    with pytest.raises(ExportInputError, match=message):
        write_export([record], make_spec(), tmp_path / "out")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "dpo"}, "format must be one of"),
        ({"file_format": "csv"}, "file_format must be one of"),
        ({"scale_points": 4}, "scale_points must be 3, 5 or 7"),
        ({"criteria": (CriterionSpec("../etc", "v1"),)}, "criteria: key '../etc'"),
        ({"agreement": {"x": object()}}, "agreement must be JSON-serialisable"),
        ({"rater_gold_accuracy": {"x": 2.0}}, r"rater_gold_accuracy\['x'\]"),
    ],
)
def test_bad_specs_are_named_in_the_error(changes, message):
    with pytest.raises(ExportInputError, match=message):
        make_spec(**changes)


def test_records_can_be_built_from_plain_dicts():
    from annotations.exporting import ComparisonRecord

    record = ComparisonRecord.from_dict(
        {
            "comparison_id": "c1",
            "prompt_id": "p1",
            "prompt": [{"role": "user", "content": "hello"}],
            "first": {"id": "r1", "content": "one", "system": "base"},
            "second": {"id": "r2", "content": "two", "system": "new"},
            "votes": [
                {"criterion": "empathy", "rater": "x", "is_judge": False, "value": -1, "both_unacceptable": False}
            ],
        }
    )
    assert record.votes[0].value == -1 and record.prompt[0].content == "hello"
    with pytest.raises(ExportInputError, match=r"comparison 'c1': second: missing field 'system'"):
        ComparisonRecord.from_dict(
            {
                **{"comparison_id": "c1", "prompt_id": "p", "prompt": [], "votes": []},
                "first": {"id": "a", "content": "", "system": "s"},
                "second": {"id": "b", "content": ""},
            }
        )
