"""The clinician rating loop under load, against a bare Django loop measured in the same run.

N simulated clinicians (asyncio + aiohttp, one cookie jar each) log in for real, then loop with no think time:

- pages (default): POST the pair form with 7 answers -> 302 -> GET the next pair page, the way a clinician
  rates (7 criteria, messages and responses of about 1,500 characters);
- api: POST /api/v1/workspace/studies/<slug>/next, then POST the pair's submit with 7 values (JSON);
- the baseline (bench/baseline/): a bare Django app doing the same loop with its own tables and the same data
  sizes (one-statement claim, 7-field form, one conditional UPDATE and one bulk insert, 303 to the next page).

Both run under gunicorn (gthread, 2 workers x 4 threads) at the same time; passes are interleaved (baseline
and platform alternate first), at 1, 8 and 32 clients. Printed per run: loops/s, p50/p95/p99 per request,
server CPU per loop split web (gunicorn) and db (the PostgreSQL backends of that app's database), SQL
statements per loop (counted in the workers by bench/gunicorn_count.py, BEGIN and COMMIT included), and the
ratios to the baseline; then the medians over passes and the issue's targets as PASS/MISS. After every
platform run the database must hold exactly the submitted ratings, with no comparison beyond k.

    .venv/bin/python bench/rating_loop.py                            # pages vs baseline, PostgreSQL, 2 passes
    .venv/bin/python bench/rating_loop.py --seconds 10 --passes 2 --clients 8,32
    .venv/bin/python bench/rating_loop.py --db sqlite --clients 1,8  # the guarantees on SQLite (no baseline)
    .venv/bin/python bench/rating_loop.py --mode api                 # the JSON API instead of the pages

Needs only `make install` (aiohttp and psutil come with the runtime requirements) and a PostgreSQL server
(BENCH_PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres); it makes and drops its own databases.
"""

import argparse
import asyncio
import io
import json
import math
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("BENCH_VAR_DIR", "/tmp/ep-bench"))
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PLATFORM_DB = "ep_bench"
BASELINE_DB = "ep_bench_base"
PASSWORD = "bench-password-not-secret-123"
TEXT_CHARS = 1500
# The targets (issue 16), checked on the medians over passes.
TARGETS = {
    "cpu_ratio": 2.0,  # server CPU per loop, platform / baseline
    "throughput_32_vs_baseline": 0.5,
    "scaling_32_vs_8": 0.9,
    "p95_ms_at_8": 100.0,
    "statements_ratio": 2.0,
}
WORDS = (
    "I have been feeling low since the move and I do not know who to talk to about it . my sleep is broken "
    "and work feels heavy , my friends are far away and calling them feels like a burden . it makes sense "
    "that you feel this way ; moving takes away the small routines that hold us . what would help you most "
    "right now , and who could you reach out to this week ? you deserve support and you are not alone in this"
).split()


def text_of(seed: str, length: int = TEXT_CHARS) -> str:
    """Deterministic prose of about `length` characters, in paragraphs (the page turns newlines into <br>)."""
    rng = random.Random(seed)
    words, size = [], 0
    while size < length:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
        if rng.random() < 0.02:
            words.append("\n\n")
    return " ".join(words)[:length]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Longer than any bench: both apps keep their database connections (and so their backends) for the whole run.
CONN_MAX_AGE = 24 * 3600


def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def platform_env(db: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalplatform.settings",
        "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "DATABASE_URL": pg_url(PLATFORM_DB) if db == "postgres" else f"sqlite:///{VAR / 'bench.sqlite3'}",
        # Connections kept for the whole bench, as the baseline's: a backend closed after its 60 s would take the
        # CPU time it spent in the run with it (the db column reads the live backends' times).
        "DATABASE_CONN_MAX_AGE": str(CONN_MAX_AGE),
        "EVALPLATFORM_VAR_DIR": str(VAR),
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "memory://",
        "PYTHONPATH": str(ROOT),
    }


def baseline_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.baseline.settings",
        "BASELINE_DATABASE_URL": pg_url(BASELINE_DB),
        "BASELINE_CONN_MAX_AGE": str(CONN_MAX_AGE),
        "PYTHONPATH": str(ROOT),
    }


def recreate_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def reset_platform(db: str) -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    if db == "postgres":
        recreate_pg_database(PLATFORM_DB)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{VAR / 'bench.sqlite3'}{suffix}").unlink(missing_ok=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=platform_env(db), check=True)


def reset_baseline() -> None:
    recreate_pg_database(BASELINE_DB)
    # Django's own tables first (the baseline's reference auth_user), then the baseline's (it has no migrations).
    for extra in ([], ["--run-syncdb"]):
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", *extra, "-v", "0"], cwd=ROOT, env=baseline_env(), check=True
        )


def setup_django(db: str) -> None:
    os.environ.update({k: v for k, v in platform_env(db).items() if k != "PATH"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# ---- data ---------------------------------------------------------------------------------------------------


def create_study(slug: str, prompts: int, clinicians: list[str], overlap_k: int):
    """A study of `prompts` prompts x 3 systems (3 comparisons each) on the default rubric (7 criteria), with
    messages and responses of about 1,500 characters, opened, with the clinicians as members."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotations.models import Profile
    from annotations.services.assignment import clinician_assign
    from annotations.services.comparisons import comparisons_build
    from annotations.services.importing import import_study_file
    from annotations.services.studies import study_create, study_open

    owner = get_user_model().objects.filter(username="bench-owner").first()
    if owner is None:
        owner = get_user_model().objects.create_user(username="bench-owner", password=PASSWORD)
        Profile.objects.create(user=owner, role=Profile.Role.RESEARCHER)
    lines = []
    for p in range(prompts):
        message = {"role": "user", "content": text_of(f"{slug}-m{p}")}
        lines.append({"kind": "prompt", "id": f"p{p}", "messages": [message]})
        for s in range(3):
            lines.append(
                {
                    "kind": "response",
                    "id": f"r{p}-{s}",
                    "prompt": f"p{p}",
                    "system": f"sys{s}",
                    "content": text_of(f"{slug}-r{p}-{s}"),
                }
            )
    study = study_create(slug=slug, title=slug, owner=owner, overlap_k=overlap_k)
    data = "\n".join(json.dumps(line) for line in lines).encode()
    import_study_file(study=study, stream=io.BytesIO(data), filename="bench.jsonl", actor=owner)
    comparisons_build(study=study, actor=owner)
    study_open(study=study, actor=owner)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Fresh tables: statistics for the planner, and vacuumed now, so that autovacuum (whose CPU counts as
            # the database's) does not start on the load's own inserts in the middle of the measured run.
            cursor.execute("VACUUM ANALYZE")
    user_model = get_user_model()
    for name in clinicians:
        user = user_model.objects.filter(username=name).first()
        if user is None:
            user = user_model.objects.create_user(username=name, password=PASSWORD)
            Profile.objects.create(user=user, role=Profile.Role.CLINICIAN)
        clinician_assign(study=study, user=user, actor=owner)
    return study


def fill_baseline(tag: str, prompts: int, clinicians: list[str], overlap_k: int) -> None:
    """A fresh baseline pool: the same comparisons (3 per prompt, same text sizes), each with k open places."""
    import psycopg
    from django.contrib.auth.hashers import make_password

    with psycopg.connect(pg_url(BASELINE_DB).replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute("TRUNCATE baseline_answer, baseline_item, baseline_comparison RESTART IDENTITY")
        existing = {row[0] for row in conn.execute("SELECT username FROM auth_user")}
        hashed = make_password(PASSWORD, hasher="pbkdf2_sha256")
        for name in clinicians:
            if name not in existing:
                conn.execute(
                    "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, "
                    "is_staff, is_active, date_joined) VALUES (%s, false, %s, '', '', '', false, true, now())",
                    [hashed, name],
                )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO baseline_comparison (message, first, second) VALUES (%s, %s, %s)",
                [
                    (text_of(f"{tag}-m{p}"), text_of(f"{tag}-r{p}-{a}"), text_of(f"{tag}-r{p}-{b}"))
                    for p in range(prompts)
                    for a, b in ((0, 1), (0, 2), (1, 2))
                ],
            )
        conn.execute(
            "INSERT INTO baseline_item (comparison_id, status, slot) "
            "SELECT c.id, 'open', s FROM baseline_comparison c, generate_series(1, %s) s ORDER BY s, c.id",
            [overlap_k],
        )
        conn.execute("VACUUM ANALYZE")  # as for the platform's study (create_study)


def verify_platform(study, submitted: dict[str, dict[str, int]]) -> dict:
    """The database holds exactly the submitted ratings, canonically oriented; nobody beyond k."""
    from django.db.models import Count, Q

    from annotations.models import Assignment, Comparison, Rating

    assignments = {
        str(a.public_id): a
        for a in Assignment.objects.filter(study=study, status=Assignment.Status.SUBMITTED).only(
            "public_id", "left_is_first"
        )
    }
    expected = {}
    for public_id, values in submitted.items():
        assignment = assignments.get(public_id)
        if assignment is None:
            continue
        for key, value in values.items():
            expected[(public_id, key)] = value if assignment.left_is_first else -value
    stored = {
        (str(pid), key): value
        for pid, key, value in Rating.objects.filter(assignment__study=study).values_list(
            "assignment__public_id", "criterion__key", "value"
        )
    }
    live = Comparison.objects.filter(study=study).annotate(
        live=Count("assignments", filter=Q(assignments__status__in=["leased", "submitted"]))
    )
    return {
        "submitted": len(submitted),
        "missing": len(set(submitted) - set(assignments)),
        "extra": len(set(assignments) - set(submitted)),
        "ratings_match": stored == expected,
        "ratings": len(stored),
        "over_k": live.filter(live__gt=study.overlap_k).count(),
        "counter_mismatch": sum(1 for c in live if c.live != c.active_assignments),
    }


def verify_baseline(submitted: dict[str, dict[str, int]], overlap_k: int) -> dict:
    import psycopg

    with psycopg.connect(pg_url(BASELINE_DB).replace("postgres://", "postgresql://")) as conn:
        done = conn.execute("SELECT count(*) FROM baseline_item WHERE status = 'done'").fetchone()[0]
        answers = conn.execute("SELECT count(*) FROM baseline_answer").fetchone()[0]
        over_k = conn.execute(
            "SELECT count(*) FROM (SELECT comparison_id FROM baseline_item WHERE rater_id IS NOT NULL "
            "GROUP BY comparison_id HAVING count(*) > %s) x",
            [overlap_k],
        ).fetchone()[0]
    return {
        "submitted": len(submitted),
        "missing": len(submitted) - done,
        "extra": 0,
        "ratings_match": answers == 7 * len(submitted),
        "ratings": answers,
        "over_k": over_k,
        "counter_mismatch": 0,
    }


# ---- servers ------------------------------------------------------------------------------------------------


class Server:
    """gunicorn (gthread, 2 workers x 4 threads) serving one app, with its statements counted per worker."""

    def __init__(self, name: str, module: str, env: dict[str, str], db_name: str | None, workers: int, threads: int):
        self.name, self.db_name = name, db_name
        self.port = free_port()
        self.statements_dir = VAR / f"statements-{name}-{self.port}"
        self.log = open(VAR / f"gunicorn-{name}.log", "w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                module,
                "--config",
                str(ROOT / "bench" / "gunicorn_count.py"),
                "--worker-class",
                "gthread",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--backlog",
                "256",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env={**env, "BENCH_STATEMENTS_DIR": str(self.statements_dir)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    time.sleep(1.0)  # let both workers finish loading
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start; see {self.log.name}")

    def processes(self) -> list[tuple[str, psutil.Process]]:
        procs = []
        try:
            master = psutil.Process(self.process.pid)
            procs = [("web", p) for p in (master, *master.children(recursive=True))]
        except psutil.NoSuchProcess:
            pass
        if self.db_name:
            for proc in psutil.process_iter(["name", "cmdline"]):
                cmd = " ".join(proc.info.get("cmdline") or [])
                if (proc.info.get("name") or "").startswith("postgres") and f" {self.db_name} " in f" {cmd} ":
                    procs.append(("db", proc))
        return procs

    def cpu_seconds(self) -> dict[tuple[str, int], float]:
        times = {}
        for role, proc in self.processes():
            try:
                t = proc.cpu_times()
                times[(role, proc.pid)] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return times

    def statements(self) -> int:
        time.sleep(0.5)  # the workers write their totals every 0.2 s
        return sum(int(f.read_text() or 0) for f in self.statements_dir.glob("[0-9]*") if f.is_file())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# ---- clients ------------------------------------------------------------------------------------------------

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Client:
    def __init__(self, base: str, username: str, state: dict) -> None:
        self.base, self.username, self.state = base, username, state
        self.latency: dict[str, list[float]] = {"submit": [], "page": []}
        self.submitted: dict[str, dict[str, int]] = {}
        self.loops = 0
        self.errors: list[str] = []
        self.rng = random.Random(username)
        self.http: aiohttp.ClientSession | None = None

    async def open(self, login_path: str) -> None:
        # unsafe=True: keep cookies for 127.0.0.1 (aiohttp drops cookies of IP hosts otherwise).
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        page = await self.http.get(self.base + login_path)
        token = CSRF_FIELD.search(await page.text()).group(1)
        response = await self.http.post(
            self.base + login_path,
            data={"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            allow_redirects=False,
        )
        if response.status != 302:
            raise RuntimeError(f"login failed for {self.username}: {response.status}")

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.http.cookie_jar if c.key == name)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    async def timed(self, kind: str, method: str, url: str, **kwargs) -> tuple[int, str, str]:
        started = time.perf_counter()
        async with self.http.request(method, self.base + url, allow_redirects=False, **kwargs) as response:
            body = await response.text()
            status, location = response.status, response.headers.get("Location", "")
        if self.state["measuring"]:
            self.latency[kind].append((time.perf_counter() - started) * 1000)
        return status, body, location

    def count_loop(self) -> None:
        if self.state["measuring"]:
            self.loops += 1


class PageClient(Client):
    """The real pages: POST the pair form (7 answers) -> 302 -> GET the next pair page."""

    async def run(self, slug: str) -> None:
        token = self.cookie("csrftoken")
        status, _, location = await self.timed(
            "submit", "POST", f"/workspace/{slug}/next", data={"csrfmiddlewaretoken": token}
        )
        while not self.state["stop"]:
            if status != 302 or "/workspace/pair/" not in location:
                self.errors.append(f"no pair ({status} -> {location})")
                return
            status, page, _ = await self.timed("page", "GET", location)
            if status != 200:
                self.errors.append(f"page {status}")
                return
            pair_id = location.rstrip("/").rsplit("/", 1)[-1]
            keys = re.findall(r'name="v_([a-z_]+)" value="0"', page)
            values = {key: self.rng.choice((-1, 0, 1)) for key in keys}
            form = {f"v_{k}": str(v) for k, v in values.items()}
            form.update(
                csrfmiddlewaretoken=CSRF_FIELD.search(page).group(1),
                mode="submit",
                total_seconds="9",
                active_seconds="9",
            )
            status, body, location = await self.timed("submit", "POST", location.rstrip("/") + "/submit", data=form)
            if status not in (302, 303):
                self.errors.append(f"submit {status}: {body[:200]}")
                return
            self.submitted[pair_id] = values
            self.count_loop()


class ApiClient(Client):
    """The JSON API: next, then submit with 7 values."""

    async def run(self, slug: str) -> None:
        headers = {"X-CSRFToken": self.cookie("csrftoken")}
        while not self.state["stop"]:
            status, body, _ = await self.timed(
                "page", "POST", f"/api/v1/workspace/studies/{slug}/next", headers=headers
            )
            if status != 200:
                self.errors.append(f"next {status}: {body[:200]}")
                return
            pair = json.loads(body)
            values = {c["key"]: self.rng.choice((-1, 0, 1)) for c in pair["criteria"]}
            status, body, _ = await self.timed(
                "submit",
                "POST",
                f"/api/v1/workspace/pairs/{pair['id']}/submit",
                json={"values": values, "total_seconds": 9.0, "active_seconds": 9.0},
                headers=headers,
            )
            if status != 200:
                self.errors.append(f"submit {status}: {body[:200]}")
                return
            self.submitted[pair["id"]] = values
            self.count_loop()


class BaselineClient(Client):
    """The bare loop: GET /rate/ (claims and renders), POST the 7-field form -> 303 -> GET /rate/."""

    async def run(self, slug: str) -> None:
        while not self.state["stop"]:
            status, page, _ = await self.timed("page", "GET", "/rate/")
            if status != 200:
                self.errors.append(f"page {status}")
                return
            action = re.search(r'action="(/rate/\d+/)"', page).group(1)
            values = {f"c{i}": self.rng.choice((-1, 0, 1)) for i in range(7)}
            form = {k: str(v) for k, v in values.items()}
            form["csrfmiddlewaretoken"] = CSRF_FIELD.search(page).group(1)
            status, body, _ = await self.timed("submit", "POST", action, data=form)
            if status != 303:
                self.errors.append(f"submit {status}: {body[:200]}")
                return
            self.submitted[action] = values
            self.count_loop()


async def drive(clients: list[Client], login_path: str, slug: str, warmup: float, seconds: float, on_measure) -> float:
    await asyncio.gather(*(c.open(login_path) for c in clients))
    tasks = [asyncio.create_task(c.run(slug)) for c in clients]
    await asyncio.sleep(warmup)
    before = on_measure()
    for c in clients:
        c.state["measuring"] = True
    started = time.monotonic()
    await asyncio.sleep(seconds)
    for c in clients:
        c.state["measuring"] = False
    elapsed = time.monotonic() - started
    on_measure(before)
    clients[0].state["stop"] = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.close() for c in clients))
    return elapsed


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# Faster than either app goes on this kind of machine (the baseline: about 120 loops/s for one client, 250 in
# all), so that no run runs dry: a clinician rates each comparison once, a comparison takes k clinicians.
MOST_LOOPS_PER_S_PER_CLIENT = 250
MOST_LOOPS_PER_S = 400


def prompts_for(clients: int, args: argparse.Namespace) -> int:
    """Prompts in one run's study (3 comparisons each): --prompts, or more where a run could rate them all."""
    seconds = args.warmup + args.seconds + 5
    per_client = min(MOST_LOOPS_PER_S_PER_CLIENT, MOST_LOOPS_PER_S / clients) * seconds / 3
    in_all = MOST_LOOPS_PER_S * seconds / (3 * args.overlap_k)
    return max(args.prompts, math.ceil(max(per_client, in_all)))


def run_level(
    app: str, server: Server, clients: int, args: argparse.Namespace, run_id: str, study_slug: str | None = None
) -> dict:
    names = [f"bench-clin-{i:02d}" for i in range(max(clients, args.overlap_k))]
    study = None
    prompts = prompts_for(clients, args)
    if app == "baseline":
        fill_baseline(run_id, prompts, names, args.overlap_k)
        cls, login_path = BaselineClient, "/login/"
    else:
        study = create_study(study_slug, prompts, names, args.overlap_k)
        cls, login_path = (PageClient if args.mode == "pages" else ApiClient), "/accounts/login/"
    state = {"measuring": False, "stop": False}
    workers = [cls(server.url, names[i], state) for i in range(clients)]
    marks: dict = {}

    def on_measure(before=None):
        now = (server.cpu_seconds(), server.statements())
        if before is None:
            return now
        marks["before"], marks["after"] = before, now
        return None

    elapsed = asyncio.run(
        drive(workers, login_path, study_slug or "", args.warmup, args.seconds, on_measure),
    )
    (cpu_before, st_before), (cpu_after, st_after) = marks["before"], marks["after"]
    loops = sum(w.loops for w in workers)
    cpu = {"web": 0.0, "db": 0.0}
    for key, value in cpu_after.items():
        cpu[key[0]] += value - cpu_before.get(key, 0.0)
    latencies = {kind: [v for w in workers for v in w.latency[kind]] for kind in ("submit", "page")}
    submitted = {k: v for w in workers for k, v in w.submitted.items()}
    check = verify_baseline(submitted, args.overlap_k) if app == "baseline" else verify_platform(study, submitted)
    per_loop = (lambda x: x / loops) if loops else (lambda x: float("nan"))
    return {
        "app": app,
        "clients": clients,
        "loops_per_s": loops / elapsed,
        "cpu_ms": per_loop(1000 * (cpu["web"] + cpu["db"])),
        "cpu_web_ms": per_loop(1000 * cpu["web"]),
        "cpu_db_ms": per_loop(1000 * cpu["db"]),
        "statements": per_loop(st_after - st_before),
        "latency": {kind: {q: percentile(vals, q) for q in (50, 95, 99)} for kind, vals in latencies.items()},
        "all_p95": percentile(latencies["submit"] + latencies["page"], 95),
        "errors": [e for w in workers for e in w.errors][:3],
        "check": check,
    }


# ---- report -------------------------------------------------------------------------------------------------


def ok(check: dict) -> bool:
    return check["ratings_match"] and not (
        check["over_k"] or check["counter_mismatch"] or check["missing"] or check["extra"]
    )


def print_header() -> None:
    print(
        f"{'pass':>4} {'app':9} {'clients':>7} {'loops/s':>8} {'cpu ms/loop':>11} {'web+db':>11} {'SQL/loop':>8} "
        f"{'submit p50/p95/p99 ms':>22} {'page p50/p95/p99 ms':>22}  check",
        flush=True,
    )


def print_row(r: dict, pass_no: int) -> None:
    lat = {k: " ".join(f"{r['latency'][k][q]:6.1f}" for q in (50, 95, 99)) for k in ("submit", "page")}
    c = r["check"]
    print(
        f"{pass_no:>4} {r['app']:9} {r['clients']:>7} {r['loops_per_s']:8.1f} {r['cpu_ms']:11.2f} "
        f"{r['cpu_web_ms']:5.2f}+{r['cpu_db_ms']:<5.2f} {r['statements']:8.1f} {lat['submit']:>22} {lat['page']:>22}  "
        f"{'ok' if ok(c) else 'FAIL'} ({c['submitted']} loops, {c['ratings']} ratings, over k: {c['over_k']})"
        + (f" errors: {r['errors']}" if r["errors"] else ""),
        flush=True,
    )


def median_of(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r[key] == r[key]]  # drop NaN
    return statistics.median(values) if values else float("nan")


def report(results: list[dict], platform: str) -> int:
    apps = sorted({r["app"] for r in results}, key=lambda a: a != "baseline")
    levels = sorted({r["clients"] for r in results})
    med: dict[tuple[str, int], dict[str, float]] = {}
    print(f"\nMedians over {max(r['pass'] for r in results)} pass(es):")
    print(
        f"{'app':9} {'clients':>7} {'loops/s':>8} {'cpu ms/loop':>11} {'web':>6} {'db':>6} {'SQL/loop':>8} "
        f"{'p95 ms':>7}   ratio to baseline: throughput, cpu, web, db, SQL"
    )
    for app in apps:
        for n in levels:
            rows = [r for r in results if r["app"] == app and r["clients"] == n]
            if not rows:
                continue
            m = {k: median_of(rows, k) for k in ("loops_per_s", "cpu_ms", "cpu_web_ms", "cpu_db_ms", "statements")}
            m["all_p95"] = median_of(rows, "all_p95")
            med[(app, n)] = m
            line = (
                f"{app:9} {n:>7} {m['loops_per_s']:8.1f} {m['cpu_ms']:11.2f} {m['cpu_web_ms']:6.2f} "
                f"{m['cpu_db_ms']:6.2f} {m['statements']:8.1f} {m['all_p95']:7.1f}"
            )
            base = med.get(("baseline", n))
            if app != "baseline" and base:
                ratios = [
                    m["loops_per_s"] / base["loops_per_s"],
                    m["cpu_ms"] / base["cpu_ms"],
                    m["cpu_web_ms"] / base["cpu_web_ms"],
                    m["cpu_db_ms"] / base["cpu_db_ms"] if base["cpu_db_ms"] else float("nan"),
                    m["statements"] / base["statements"],
                ]
                line += "   " + ", ".join(f"{x:.2f}x" for x in ratios)
            print(line)
    print("\nTargets (issue 16), on the medians:")
    checks = []
    plat = lambda n: med.get((platform, n))  # noqa: E731
    base = lambda n: med.get(("baseline", n))  # noqa: E731
    for n in (8, 32):
        if plat(n) and base(n):
            ratio = plat(n)["cpu_ms"] / base(n)["cpu_ms"]
            checks.append(
                (
                    f"server CPU per loop at {n} clients <= {TARGETS['cpu_ratio']}x baseline ({ratio:.2f}x)",
                    ratio <= TARGETS["cpu_ratio"],
                )
            )
    if plat(32) and base(32):
        ratio = plat(32)["loops_per_s"] / base(32)["loops_per_s"]
        checks.append(
            (
                f"throughput at 32 clients >= {TARGETS['throughput_32_vs_baseline']:.0%} of baseline ({ratio:.0%})",
                ratio >= TARGETS["throughput_32_vs_baseline"],
            )
        )
    if not any(base(n) for n in levels):
        print("  (no baseline in this run: the speed targets are for PostgreSQL; only the guarantees are checked)")
    if plat(8) and plat(32) and base(8):
        ratio = plat(32)["loops_per_s"] / plat(8)["loops_per_s"]
        checks.append(
            (
                f"throughput 32 vs 8 clients >= {TARGETS['scaling_32_vs_8']:.0%} ({ratio:.0%})",
                ratio >= TARGETS["scaling_32_vs_8"],
            )
        )
    if plat(8) and base(8):
        p95 = plat(8)["all_p95"]
        checks.append(
            (
                f"p95 per request at 8 clients < {TARGETS['p95_ms_at_8']:.0f} ms ({p95:.1f})",
                p95 < TARGETS["p95_ms_at_8"],
            )
        )
    both = [n for n in levels if plat(n) and base(n)]
    if both:
        ratio = max(plat(n)["statements"] / base(n)["statements"] for n in both)
        checks.append(
            (
                f"SQL statements per loop <= {TARGETS['statements_ratio']}x baseline (worst {ratio:.2f}x)",
                ratio <= TARGETS["statements_ratio"],
            )
        )
    platform_rows = [r for r in results if r["app"] != "baseline"]
    checks.append(
        (
            "zero lost or duplicated ratings",
            all(
                r["check"]["ratings_match"] and not r["check"]["missing"] and not r["check"]["extra"]
                for r in platform_rows
            ),
        )
    )
    checks.append(
        (
            "no comparison beyond k, counters exact",
            all(not r["check"]["over_k"] and not r["check"]["counter_mismatch"] for r in platform_rows),
        )
    )
    failures = 0
    for label, passed in checks:
        failures += not passed
        print(f"  {'PASS' if passed else 'MISS'}  {label}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--mode", choices=["pages", "api"], default="pages")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gthread workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--prompts",
        type=int,
        default=800,
        help="at least this many prompts per run (3 comparisons each); more where a run could rate them all",
    )
    parser.add_argument("--overlap-k", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="the platform only")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    with_baseline = args.db == "postgres" and not args.no_baseline
    reset_platform(args.db)
    setup_django(args.db)
    platform_name = args.mode
    servers = {
        platform_name: Server(
            platform_name,
            "evalplatform.wsgi",
            platform_env(args.db),
            PLATFORM_DB if args.db == "postgres" else None,
            args.workers,
            args.threads,
        )
    }
    results = []
    try:
        if with_baseline:
            reset_baseline()
            servers["baseline"] = Server(
                "baseline", "bench.baseline.wsgi", baseline_env(), BASELINE_DB, args.workers, args.threads
            )
        print(
            f"{args.db}, {args.mode} vs {'the bare Django loop' if with_baseline else 'no baseline'}: "
            f"{args.workers} gunicorn gthread workers x {args.threads} threads, {args.seconds:.0f} s per run, "
            f"{args.passes} interleaved pass(es), 7 criteria, texts of ~{TEXT_CHARS} characters",
            flush=True,
        )
        print_header()
        for pass_no in range(1, args.passes + 1):
            for clients in levels:
                order = [platform_name, "baseline"] if pass_no % 2 else ["baseline", platform_name]
                for app in order:
                    if app not in servers:
                        continue
                    run_id = f"bench-{args.db}-{pass_no}-{clients}"
                    result = run_level(app, servers[app], clients, args, run_id, study_slug=f"{run_id}-{app}")
                    result["pass"] = pass_no
                    results.append(result)
                    print_row(result, pass_no)
    finally:
        for server in servers.values():
            server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return report(results, platform_name)


if __name__ == "__main__":
    sys.exit(main())
