"""Fixtures for training-job tests: a tiny model and a synthetic export snapshot, built once per session."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from annotations.models import JobStatus, PreferenceExport, TrainingJob
from annotations.services.training_jobs import FINISHED
from tests.conftest import ROOT, _database_url

# The shared worker fixture writes its log under the var dir; make sure it exists.
VAR_DIR = Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp/evalplatform-test-var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

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
        "reward_snapshot": str(
            write_snapshot(
                root / "reward-snapshot", snapshot_format="reward", criteria=CRITERIA, train_count=16, test_count=4
            )
        ),
    }


AGREEMENT = {
    "method": {"confidence": 0.95, "n_resamples": 200, "seed": 0, "source": "annotations.services.reports"},
    "by_criterion": {
        "empathy": {
            "n_items": 24,
            "n_raters": 3,
            "n_ratings": 72,
            "alpha_nominal": {"estimate": 0.612, "ci_low": 0.41, "ci_high": 0.78},
            "alpha_ordinal": {"estimate": 0.7, "ci_low": 0.52, "ci_high": 0.83},
            "percent_agreement": {"estimate": 0.81, "ci_low": 0.7, "ci_high": 0.9},
        }
    },
}


def make_export(study, snapshot_dir: str) -> PreferenceExport:
    manifest = json.loads((Path(snapshot_dir) / "manifest.json").read_text())
    manifest["agreement"] = AGREEMENT  # the shape services.exports.export_agreement records
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


@pytest.fixture(autouse=True)
def artifacts_root(settings, tmp_path):
    """Each test's job folders under its own tmp dir (the launch records the absolute path on the row)."""
    settings.ARTIFACTS_ROOT = tmp_path / "artifacts"
    return settings.ARTIFACTS_ROOT


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll until predicate() returns something truthy; fail with the worker logs' tails otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    logs = sorted(VAR_DIR.glob("*worker*.log"))
    tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tails}")


def wait_until_finished(jobs, *, timeout: float = 120):
    ids = [job.pk for job in jobs]

    def finished():
        rows = TrainingJob.objects.filter(pk__in=ids, status__in=FINISHED)
        return rows.count() == len(ids)

    wait_for(finished, timeout=timeout, interval=0.2, what=f"jobs {ids} to finish")
    for job in jobs:
        job.refresh_from_db()


def spawn_worker(name: str, queues: str, **env_extra: str) -> subprocess.Popen:
    """A solo Celery worker on the test database, not waited for."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalplatform.test_settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or "",
        **env_extra,
    }
    log = open(VAR_DIR / f"{name.split('@')[0]}-worker.log", "w")
    command = [sys.executable, "-m", "celery", "-A", "evalplatform", "worker", "-Q", queues, "-n", name]
    command += ["--pool", "solo", "--concurrency", "1", "--prefetch-multiplier", "1", "--loglevel", "INFO"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
