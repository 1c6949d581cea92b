"""`make run`'s embedded default, end to end from the command line: SQLite and the filesystem broker.

The rest of the suite runs on PostgreSQL; this drives the real manage.py commands in subprocesses against a
fresh SQLite database, so SQL or options that only work on PostgreSQL (or clash with Django's own
command-line options) are caught.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
# What scripts/run.sh exports for plain http on localhost: DEBUG stays off, as in production.
MAKE_RUN_ENV = {
    "DEBUG": "false",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_HSTS_SECONDS": "0",
}

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
pair_url = clinician.post("/workspace/demo/next", secure=True).url
pair = clinician.get(pair_url, secure=True)
statuses["pair"] = pair.status_code
# Rate it through the form: the submit and the next pair's page run the compiled hot queries on SQLite.
import json, re
keys = re.findall(r'name="v_([a-z_]+)" value="0"', pair.content.decode())
form = {**{f"v_{key}": "1" for key in keys}, "mode": "submit"}
submitted = clinician.post(pair_url.rstrip("/") + "/submit", form, secure=True)
statuses["submit"] = submitted.status_code if len(keys) == 7 else f"{len(keys)} criteria"
statuses["next pair"] = clinician.get(submitted.url, secure=True).status_code if submitted.status_code == 302 else 0
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
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        EVALPLATFORM_VAR_DIR=str(tmp_path / "var"),
        **MAKE_RUN_ENV,
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
    assert statuses.pop("submit") == 302  # answers stored, on to the next pair
    assert statuses == dict.fromkeys(statuses, 200), statuses


def test_make_run_serves_with_gunicorn_and_debug_off():
    script = (ROOT / "scripts" / "run.sh").read_text()
    assert 'DEBUG="${DEBUG:-false}"' in script and "runserver" not in script
    assert "gunicorn evalplatform.wsgi" in script and '--bind "127.0.0.1:' in script
    for name, value in MAKE_RUN_ENV.items():
        if name != "DEBUG":
            assert f"{name}={value}" in script, name
    # The worker and the local judge server still start with it.
    assert "celery -A evalplatform worker" in script and "annotations.judges.testserver" in script


@pytest.fixture(scope="module")
def served(demo):
    """gunicorn on the demo database as `make run` serves it; its URL and log file."""
    env, tmp_path = demo
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "evalplatform.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT,
            env={**env, "LOG_LEVEL": "INFO"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/accounts/login/", timeout=10)
            break
        except requests.RequestException:
            assert time.monotonic() < deadline and process.poll() is None, log_path.read_text()
            time.sleep(0.2)
    yield url, log_path
    process.terminate()
    process.wait(timeout=20)


def logged_in(url: str, tmp_path: Path, username: str) -> requests.Session:
    passwords = dict(line.split() for line in (tmp_path / "var" / "demo-credentials.txt").read_text().splitlines())
    session = requests.Session()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get(f"{url}/accounts/login/").text)
    response = session.post(
        f"{url}/accounts/login/",
        data={"username": username, "password": passwords[username], "csrfmiddlewaretoken": token.group(1)},
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return session


def test_a_mistyped_pair_link_gives_the_styled_404_without_the_url_map(demo, served):
    url, _ = served
    clinician = logged_in(url, demo[1], "clinician1")
    for link in ("/workspace/pair/3f2a-not-a-pair/", f"/workspace/pair/{uuid.uuid4()}/"):
        response = clinician.get(f"{url}{link}")
        assert response.status_code == 404, link
        assert "<h1>Page not found</h1>" in response.text and 'href="/"' in response.text  # a way back
        assert "URLconf" not in response.text and "workspace/pair/<uuid" not in response.text
        assert "Log out clinician1" in response.text  # the site's own layout, not a bare page
    stylesheet = clinician.get(f"{url}/static/css/app.css")  # served by whitenoise with DEBUG off
    assert stylesheet.status_code == 200 and "text/css" in stylesheet.headers["Content-Type"]


def test_a_403_is_a_styled_page_and_one_log_line(demo, served):
    url, log_path = served
    clinician = logged_in(url, demo[1], "clinician2")
    response = clinician.get(f"{url}/studies/")  # studies are for researchers
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in response.text and "Back to the start page" in response.text
    time.sleep(0.5)  # let the log reach the file
    log = log_path.read_text()
    assert log.count("Forbidden (Permission denied): /studies/") == 1, log
    assert "Traceback" not in log and "PermissionDenied" not in log, log
