"""Fast checks of the training core that need no torch: spec validation, data loading, import cost."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotations.training import TrainingSpec, TrainingSpecError, validate_spec
from annotations.training.data import preference_pairs
from annotations.training.synthetic import write_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_dir(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    return directory


def test_importing_the_package_does_not_import_torch():
    code = "import sys, annotations.training; print('torch' in sys.modules, 'transformers' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["False", "False"]


def test_it_refuses_a_base_model_that_cannot_load_offline(tmp_path):
    spec = TrainingSpec(kind="dpo", base_model="nobody-owns-this/missing-model-xyz", criterion="empathy")
    with pytest.raises(TrainingSpecError) as caught:
        validate_spec(spec)
    assert "base_model" in caught.value.errors
    assert "never downloaded" in caught.value.errors["base_model"]

    spec = TrainingSpec(kind="dpo", base_model=str(tmp_path / "absent"), criterion="empathy")
    with pytest.raises(TrainingSpecError, match="no model directory"):
        validate_spec(spec)


def test_it_accepts_a_local_model_directory(model_dir, tmp_path):
    snapshot = write_snapshot(tmp_path / "snapshot", train_count=4, test_count=2)
    validate_spec(TrainingSpec(kind="dpo", base_model=str(model_dir), criterion="empathy"), dataset_dir=snapshot)


def test_it_refuses_a_criterion_the_snapshot_lacks(model_dir, tmp_path):
    snapshot = write_snapshot(tmp_path / "snapshot", train_count=4, test_count=2)
    spec = TrainingSpec(kind="reward", base_model=str(model_dir), criterion="humour")
    with pytest.raises(TrainingSpecError) as caught:
        validate_spec(spec, dataset_dir=snapshot)
    assert "humour" in caught.value.errors["dataset"]


def test_modpo_weights_must_lie_on_the_simplex_and_have_reward_models(model_dir):
    def modpo(weights, reward_models=None):
        return TrainingSpec(
            kind="modpo",
            base_model=str(model_dir),
            criterion="empathy",
            weights=weights,
            reward_models=reward_models or {},
        )

    with pytest.raises(TrainingSpecError) as caught:
        validate_spec(modpo({"empathy": 0.5, "safety": 0.2}))
    assert "sum to 1" in caught.value.errors["weights"]
    with pytest.raises(TrainingSpecError) as caught:
        validate_spec(modpo({"empathy": 0.0, "safety": 1.0}, {"safety": str(model_dir)}))
    assert "primary" in caught.value.errors["weights"]
    with pytest.raises(TrainingSpecError) as caught:
        validate_spec(modpo({"empathy": 0.6, "safety": 0.4}))
    assert "safety" in caught.value.errors["reward_models"]
    # A zero weight needs no reward model: (1, 0) is plain DPO.
    validate_spec(modpo({"empathy": 1.0, "safety": 0.0}))


def test_jsonl_and_parquet_snapshots_give_the_same_pairs(tmp_path):
    jsonl = write_snapshot(tmp_path / "jsonl", train_count=12, test_count=4)
    parquet = write_snapshot(tmp_path / "parquet", train_count=12, test_count=4, file_format="parquet")
    assert preference_pairs(jsonl, "safety", "train") == preference_pairs(parquet, "safety", "train")


def test_multi_objective_rows_become_pairs_without_ties(tmp_path):
    snapshot = write_snapshot(tmp_path / "mo", snapshot_format="multi-objective", train_count=40, test_count=4)
    rows = [json.loads(line) for line in (snapshot / "data" / "train.jsonl").read_text().splitlines()]
    decided = {r["comparison_id"]: r for r in rows if r["labels"]["empathy"]["preferred"] in ("a", "b")}
    pairs = preference_pairs(snapshot, "empathy", "train")
    assert 0 < len(pairs) == len(decided) < len(rows)
    for pair in pairs:
        row = decided[pair["comparison_id"]]
        winner = row["labels"]["empathy"]["preferred"]
        assert pair["chosen"] == row[f"response_{winner}"]
