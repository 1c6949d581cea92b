"""A real client: exported files load with `datasets` and train in TRL as they are, on a tiny CPU model."""

import json
import math
import os

import pytest

# Nothing is downloaded: `datasets` and the Hub stay offline (set before they are imported).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")

from annotations.services.exports import export_create, export_directory  # noqa: E402
from annotations.training.models import load_tokenizer  # noqa: E402
from annotations.training.tiny import build_tiny_model, texts_of_rows  # noqa: E402
from tests.exports.conftest import CRITERIA  # noqa: E402

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
torch.set_num_threads(1)


def tiny_model(tmp_path, rows):
    """A two-layer model whose tokenizer is trained on the export's own text (CPU, no download)."""
    return str(build_tiny_model(tmp_path / "tiny", texts_of_rows(rows)))


def common_args(tmp_path):
    """Like annotations/training/runner.py configures a tiny CPU run: one step, nothing saved."""
    return {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "max_length": 64,
        "bf16": False,
        "fp16": False,
    }


def test_a_trl_dpo_export_trains_with_dpo_trainer_unchanged(rated, researcher, tmp_path):
    export = export_create(study=rated.study, actor=researcher, format="trl-dpo", criterion_keys=CRITERIA, inline=True)
    data_dir = export_directory(export) / "data" / "empathy"

    dataset = datasets.load_dataset(
        "json",
        data_files={"train": str(data_dir / "train.jsonl"), "test": str(data_dir / "test.jsonl")},
        cache_dir=str(tmp_path / "cache"),
    )
    train = dataset["train"]
    assert len(train) == export.manifest["rows"]["empathy"]["train"] > 2
    assert set(train.column_names) == {"prompt", "chosen", "rejected", "comparison_id"}
    assert train[0]["prompt"][0]["role"] == "user" and train[0]["chosen"][0]["role"] == "assistant"

    from transformers import AutoModelForCausalLM

    base = tiny_model(tmp_path, train)
    trainer = trl.DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(base, local_files_only=True),
        args=trl.DPOConfig(**common_args(tmp_path), beta=0.1),
        train_dataset=train,
        processing_class=load_tokenizer(base),
    )
    result = trainer.train()

    assert trainer.state.global_step == 1
    # Policy and reference start equal, so the first DPO loss on the exported pairs is log 2.
    assert result.training_loss == pytest.approx(math.log(2), abs=0.05)


def test_a_reward_export_in_parquet_trains_with_reward_trainer_and_its_margins(rated, researcher, tmp_path):
    export = export_create(
        study=rated.study,
        actor=researcher,
        format="reward",
        file_format="parquet",
        criterion_keys=CRITERIA,
        inline=True,
    )
    path = export_directory(export) / "data" / "safety" / "train.parquet"

    train = datasets.load_dataset("parquet", data_files={"train": str(path)}, cache_dir=str(tmp_path / "cache"))[
        "train"
    ]
    assert len(train) == export.manifest["rows"]["safety"]["train"] > 2
    assert "margin" in train.column_names and all(0 < m <= 1 for m in train["margin"])

    from transformers import AutoModelForSequenceClassification

    base = tiny_model(tmp_path, train)
    tokenizer = load_tokenizer(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, local_files_only=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = trl.RewardTrainer(
        model=model, args=trl.RewardConfig(**common_args(tmp_path)), train_dataset=train, processing_class=tokenizer
    )
    trainer.train()

    assert trainer.state.global_step == 1
    # The card tells a reader how to load exactly these files.
    card = (export_directory(export) / "README.md").read_text()
    assert 'load_dataset("parquet"' in card and "data/safety/train.parquet" in card
    assert json.loads((export_directory(export) / "manifest.json").read_text())["rows"] == export.manifest["rows"]
