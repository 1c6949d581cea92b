"""`make run`'s embedded default, end to end from the command line: SQLite and the filesystem broker.

The rest of the suite runs on PostgreSQL; this drives the real manage.py commands in subprocesses against a
fresh SQLite database, so SQL or options that only work on PostgreSQL (or clash with Django's own
command-line options) are caught.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

PAGES_SCRIPT = """
from django.test import Client
from django.contrib.auth import get_user_model
from annotations.models import PreferenceExport, TrainingJob
users = get_user_model().objects
researcher, clinician = Client(), Client()
researcher.force_login(users.get(username="researcher"))
clinician.force_login(users.get(username="clinician1"))
export = PreferenceExport.objects.latest("created_at")
pages = ["/studies/", "/studies/demo/", "/studies/demo/progress", "/studies/demo/reports?resamples=20",
         "/studies/demo/exports/", f"/studies/demo/exports/{export.public_id}/", "/studies/demo/jobs/",
         f"/studies/demo/jobs/{TrainingJob.objects.latest('created_at').public_id}/", "/api/v1/studies/demo/comparisons"]
statuses = {page: researcher.get(page, secure=True).status_code for page in pages}
statuses["next"] = clinician.post("/workspace/demo/next", secure=True).status_code
pair = clinician.get(clinician.post("/workspace/demo/next", secure=True).url, secure=True)
statuses["pair"] = pair.status_code
import json
print(json.dumps(statuses))
"""


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A migrated SQLite database with the demo loaded, as `make run` leaves it; the environment to use it."""
    tmp_path = tmp_path_factory.mktemp("embedded")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="evalplatform.settings",
        SECRET_KEY="embedded-default-test-secret-key-0123456789",
        DEBUG="true",
        ALLOWED_HOSTS="testserver",
        EVALPLATFORM_VAR_DIR=str(tmp_path / "var"),
    )
    manage(env, "migrate", "--noinput", "-v", "0")
    out = manage(env, "demo_setup")
    assert "clinician1" in out and "Tiny base model" in out
    assert (tmp_path / "var" / "db.sqlite3").is_file()
    return env, tmp_path


def test_the_demo_reports_exports_queues_training_and_renders_on_sqlite(demo):
    env, tmp_path = demo

    report = json.loads(manage(env, "agreement_report", "--study", "demo", "--format", "json", "--resamples", "50"))
    overall = report["report"]["criteria"]["overall"]["reliability"]
    assert overall["n_raters"] == 4 and overall["alpha"]["nominal"]["estimate"] > 0.2

    out = manage(env, "export_preferences", "--study", "demo", "--format", "trl-dpo", "--criterion", "safety",
                 "--out", str(tmp_path / "export"))  # fmt: skip
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["criteria"] == ["safety"] and sum(manifest["rows"]["safety"].values()) > 40
    export_id = out.split()[1].rstrip(":")

    out = manage(env, "training_job", "launch", "--study", "demo", "--kind", "dpo", "--criterion", "safety",
                 "--export", export_id, "--base-model", str(tmp_path / "var" / "models" / "tiny-chat"),
                 "--set", "max_steps=2", "--user", "researcher")  # fmt: skip
    assert "Queued job" in out

    # Every main page renders on SQLite, for the researcher and the clinician.
    statuses = json.loads(manage(env, "shell", "-c", PAGES_SCRIPT).strip().splitlines()[-1])
    assert statuses.pop("next") == 302  # to the claimed pair
    assert statuses == dict.fromkeys(statuses, 200), statuses
