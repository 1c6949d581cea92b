"""Fixtures for training-job tests: a tiny model and a synthetic export snapshot, built once per session."""

import json
import os
from pathlib import Path

import pytest

from annotations.models import JobStatus, PreferenceExport

# The shared worker fixture writes its log under the var dir; make sure it exists.
Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp/evalplatform-test-var")).mkdir(parents=True, exist_ok=True)

CRITERIA = ["empathy", "safety", "active_listening"]
# Small and fast on one CPU core: a few steps of a two-layer model.
FAST = {"batch_size": 4, "logging_steps": 1, "learning_rate": 3e-3, "max_length": 64, "max_steps": 3}


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    """A tiny base model (tokenizer trained on the fly) and a trl-dpo snapshot written by the synthetic generator."""
    import torch

    from annotations.training.synthetic import phrase_vocabulary, write_snapshot
    from annotations.training.tiny import build_tiny_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("jobs")
    return {
        "base": str(build_tiny_model(root / "base", phrase_vocabulary(CRITERIA))),
        "snapshot": str(write_snapshot(root / "snapshot", criteria=CRITERIA, train_count=32, test_count=8)),
    }


def make_export(study, snapshot_dir: str) -> PreferenceExport:
    manifest = json.loads((Path(snapshot_dir) / "manifest.json").read_text())
    manifest["agreement"] = {"empathy": {"krippendorff_alpha": 0.61}}  # what the export service records
    return PreferenceExport.objects.create(
        study=study,
        format=manifest["format"],
        criterion_keys=manifest["criteria"],
        status=JobStatus.SUCCEEDED,
        manifest=manifest,
        path=snapshot_dir,
    )


@pytest.fixture
def export(study, tiny_assets):
    return make_export(study, tiny_assets["snapshot"])
