"""Heavy reports never slow the clinicians down: reports are computed on a worker, not in the web process.

A live server on loopback (gunicorn, as in production and `make run`, on the test database); three clinicians
rate in a loop over HTTP (next pair, submit every criterion, as bench/rating_loop.py does, with a short pause
between pairs) while a researcher keeps asking for reports with the most resamples allowed. The clinicians'
95th percentile latency stays under 300 ms. Before reports left the request path, a sync web worker computed
the report and every clinician request behind it waited for the whole bootstrap.
"""

import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from annotations.models import JobStatus, Profile, ReportSnapshot
from annotations.services.assignment import clinician_assign
from annotations.services.comparisons import comparisons_build
from annotations.services.importing import import_study_file
from annotations.services.studies import study_create, study_open
from tests.conftest import PASSWORD, ROOT, _database_url, make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLINICIANS = 3
THINK_SECONDS = 0.1
WARMUP_SECONDS = 2.0
BASELINE_SECONDS = 6.0
MEASURE_SECONDS = 15.0
P95_LIMIT_MS = 300.0


@pytest.fixture
def web_server(django_db_setup):
    """gunicorn on a free loopback port, serving the test database; its URL."""
    from django.conf import settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalplatform.test_settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "LOG_LEVEL": "WARNING",
    }
    log = open(Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp")) / "latency-gunicorn.log", "w")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [
        str(gunicorn),
        "evalplatform.wsgi",
        "--workers",
        "2",
        "--threads",
        "4",
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "120",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/accounts/login/", timeout=10)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"gunicorn did not start; see {log.name}") from None
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.close()


def rating_study(owner, clinicians, prompts: int = 80):
    """An open study of `prompts` prompts x 3 systems, the clinicians assigned, overlap 2."""
    lines = []
    for p in range(prompts):
        lines.append({"kind": "prompt", "id": f"p{p}", "messages": [{"role": "user", "content": f"Message {p}."}]})
        lines += [
            {"kind": "response", "id": f"r{p}-{s}", "prompt": f"p{p}", "system": f"sys{s}", "content": f"Reply {s}."}
            for s in range(3)
        ]
    study = study_create(slug="busy", title="Busy clinic", owner=owner, overlap_k=2, criterion_keys=["empathy"])
    data = "\n".join(json.dumps(line) for line in lines).encode()
    import_study_file(study=study, stream=io.BytesIO(data), filename="busy.jsonl", actor=owner)
    comparisons_build(study=study, actor=owner)
    study_open(study=study, actor=owner)
    for user in clinicians:
        clinician_assign(study=study, user=user, actor=owner)
    return study


def logged_in(base: str, username: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        allow_redirects=False,
    )
    assert response.status_code == 302, f"login failed for {username}"
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    return session


class Clinician(threading.Thread):
    def __init__(self, base: str, username: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base, self.stop = base, stop
        self.session = logged_in(base, username)
        self.latencies_ms: list[float] = []
        self.measuring = False
        self.errors: list[str] = []

    def timed_post(self, url: str, **kwargs) -> requests.Response:
        started = time.perf_counter()
        response = self.session.post(url, timeout=30, **kwargs)
        if self.measuring:
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
        return response

    def run(self) -> None:
        while not self.stop.is_set():
            response = self.timed_post(f"{self.base}/api/v1/workspace/studies/busy/next")
            if response.status_code != 200:
                self.errors.append(f"next {response.status_code}")
                return
            pair = response.json()
            values = {criterion["key"]: 1 for criterion in pair["criteria"]}
            response = self.timed_post(
                f"{self.base}/api/v1/workspace/pairs/{pair['id']}/submit",
                json={"values": values, "total_seconds": 1.0, "active_seconds": 1.0},
            )
            if response.status_code != 200:
                self.errors.append(f"submit {response.status_code}")
                return
            self.stop.wait(THINK_SECONDS)


class Researcher(threading.Thread):
    """A report tab as reports.js drives it: ask for a heavy report (the most resamples, a new seed), poll its
    status every 1.5 s until it is done, then ask for the next one."""

    def __init__(self, base: str, username: str, stop: threading.Event, resamples: int) -> None:
        super().__init__(daemon=True)
        self.base, self.stop, self.resamples = base, stop, resamples
        self.session = logged_in(base, username)
        self.statuses: list[int] = []

    def run(self) -> None:
        seed = 0
        while not self.stop.is_set():
            seed += 1
            page = self.session.get(
                f"{self.base}/studies/paper/reports", params={"resamples": self.resamples, "seed": seed}, timeout=60
            )
            self.statuses.append(page.status_code)
            found = re.search(r'data-status-url="([^"]+)"', page.text)
            while found and not self.stop.wait(1.5):
                if self.session.get(f"{self.base}{found.group(1)}", timeout=60).json()["status"] not in (
                    "queued",
                    "running",
                ):
                    break
            self.stop.wait(1.5)


def p95(latencies: list[float]) -> float:
    return statistics.quantiles(sorted(latencies), n=100, method="inclusive")[94]


def test_clinicians_p95_stays_under_300_ms_while_researchers_ask_for_heavy_reports(
    web_server, celery_worker, paper_study, researcher, django_user_model, settings
):
    from evalplatform.celery import app

    clinicians = [make_user(django_user_model, f"busy-clin-{i}", Profile.Role.CLINICIAN) for i in range(CLINICIANS)]
    rating_study(researcher, clinicians)
    stop = threading.Event()
    raters = [Clinician(web_server, user.username, stop) for user in clinicians]
    # Two report tabs: before the fix, each held one of the two web workers for a whole bootstrap.
    heavy = [Researcher(web_server, researcher.username, stop, settings.REPORT_MAX_RESAMPLES) for _ in range(2)]

    def measure(seconds: float) -> tuple[list[float], bool]:
        for rater in raters:
            rater.latencies_ms, rater.measuring = [], True
        deadline, computing_seen = time.monotonic() + seconds, False
        while time.monotonic() < deadline:
            computing_seen |= ReportSnapshot.objects.filter(status=JobStatus.RUNNING).exists()
            time.sleep(0.25)
        for rater in raters:
            rater.measuring = False
        return [value for rater in raters for value in rater.latencies_ms], computing_seen

    try:
        for thread in raters:
            thread.start()
        time.sleep(WARMUP_SECONDS)
        quiet, _ = measure(BASELINE_SECONDS)  # the same loop with no report asked for: what this machine gives
        for thread in heavy:
            thread.start()
        busy, computing_seen = measure(MEASURE_SECONDS)
    finally:
        stop.set()
        for thread in (*raters, *heavy):
            thread.join(timeout=60)
        app.control.purge()  # the reports still queued are not needed by any other test

    # On a machine already too loaded to give 300 ms without any report (shared CI), the bound is the quiet
    # loop's own p95 with half again as slack: heavy reports must still add nothing that matters.
    limit = max(P95_LIMIT_MS, 1.5 * p95(quiet))
    print(f"clinicians: quiet p95 {p95(quiet):.0f} ms ({len(quiet)} requests); with heavy reports p50 "
          f"{statistics.median(busy):.0f} ms, p95 {p95(busy):.0f} ms ({len(busy)} requests)")  # fmt: skip
    assert [error for rater in raters for error in rater.errors] == []
    assert len(busy) > 100, "the clinicians barely rated: the measurement says nothing"
    # The load was real: a heavy report was computed on the worker while the clinicians rated, and every report
    # page answered (queued, or refused past the per-user limit), with fewer reports queued than asked for.
    assert computing_seen
    statuses = [status for tab in heavy for status in tab.statuses]
    assert statuses and set(statuses) == {200}
    assert ReportSnapshot.objects.filter(requested_by=researcher).count() < len(statuses)
    assert p95(busy) < limit, f"clinicians' p95 {p95(busy):.0f} ms while reports were requested (limit {limit:.0f})"
