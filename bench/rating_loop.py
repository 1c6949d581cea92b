"""The rating loop under load: N simulated clinicians over HTTP against gunicorn, on PostgreSQL and SQLite.

Each client logs in for real (session cookie, CSRF), then loops "next pair, then submit every criterion"
with no think time for a fixed time. Printed per database and client count: loops per second, p50/p95/p99
latency per request, and server CPU per loop (gunicorn workers plus, on PostgreSQL, the backends serving
the bench database, from the processes' CPU times). Afterwards it checks that the database holds exactly the
submitted ratings (canonical orientation) and that no comparison went to more than k raters.

    .venv/bin/python bench/rating_loop.py                      # PostgreSQL and SQLite, 1 / 8 / 32 clients
    .venv/bin/python bench/rating_loop.py --db postgres --seconds 5 --clients 8
"""

import argparse
import io
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("BENCH_VAR_DIR", "/tmp/ep-bench"))
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_DB = "ep_bench"
PASSWORD = "bench-password-not-secret-123"
KEYS = ["empathy", "safety", "active_listening", "overall"]
TARGETS = {"cpu_ms_per_loop": 25.0, "scaling_32_vs_8": 0.9, "p95_ms_at_8": 150.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(db: str) -> str:
    if db == "postgres":
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DB}"
    return f"sqlite:///{VAR / 'bench.sqlite3'}"


def server_env(db: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalplatform.settings",
        "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "DATABASE_URL": database_url(db),
        "EVALPLATFORM_VAR_DIR": str(VAR),
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "memory://",
    }


def reset_database(db: str) -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    if db == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{VAR / 'bench.sqlite3'}{suffix}").unlink(missing_ok=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=server_env(db), check=True)


def setup_django(db: str) -> None:
    os.environ.update({k: v for k, v in server_env(db).items() if k not in os.environ or k != "PATH"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_study(slug: str, prompts: int, clinicians: list[str], overlap_k: int):
    """A study of `prompts` prompts x 3 systems (3 comparisons each), opened, with the clinicians as members."""
    from django.contrib.auth import get_user_model

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
        lines.append({"kind": "prompt", "id": f"p{p}", "messages": [{"role": "user", "content": f"Message {p}."}]})
        for s in range(3):
            lines.append(
                {
                    "kind": "response",
                    "id": f"r{p}-{s}",
                    "prompt": f"p{p}",
                    "system": f"sys{s}",
                    "content": f"Reply {p}/{s}.",
                }
            )
    study = study_create(slug=slug, title=slug, owner=owner, overlap_k=overlap_k, criterion_keys=KEYS)
    data = "\n".join(json.dumps(line) for line in lines).encode()
    import_study_file(study=study, stream=io.BytesIO(data), filename="bench.jsonl", actor=owner)
    comparisons_build(study=study, actor=owner)
    study_open(study=study, actor=owner)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # fresh tables: give the planner statistics, as autovacuum would
    user_model = get_user_model()
    for name in clinicians:
        user = user_model.objects.filter(username=name).first()
        if user is None:
            user = user_model.objects.create_user(username=name, password=PASSWORD)
            Profile.objects.create(user=user, role=Profile.Role.CLINICIAN)
        clinician_assign(study=study, user=user, actor=owner)
    return study


class Server:
    def __init__(self, db: str, workers: int) -> None:
        self.db = db
        self.port = free_port()
        self.log = open(VAR / f"gunicorn-{db}.log", "w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "evalplatform.wsgi",
                "--workers",
                str(workers),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--backlog",
                "256",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=server_env(db),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/accounts/login/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start; see {self.log.name}")

    def processes(self) -> list[psutil.Process]:
        procs = []
        try:
            master = psutil.Process(self.process.pid)
            procs = [master, *master.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        if self.db == "postgres":
            for proc in psutil.process_iter(["name", "cmdline"]):
                cmd = " ".join(proc.info.get("cmdline") or [])
                if proc.info.get("name", "").startswith("postgres") and f" {PG_DB} " in f" {cmd} ":
                    procs.append(proc)
        return procs

    def cpu_seconds(self) -> dict[tuple[str, int], float]:
        """CPU seconds per (role, pid): role is "db" for PostgreSQL backends, "web" for gunicorn."""
        times = {}
        for proc in self.processes():
            try:
                t = proc.cpu_times()
                role = "db" if proc.name().startswith("postgres") else "web"
                times[(role, proc.pid)] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return times

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Client(threading.Thread):
    def __init__(self, base: str, username: str, slug: str, scale: list[int], stop_at: list[float]) -> None:
        super().__init__(daemon=True)
        self.base, self.username, self.slug, self.scale, self.stop_at = base, username, slug, scale, stop_at
        self.session = requests.Session()
        self.latency: dict[str, list[float]] = {"next": [], "submit": []}
        self.submitted: dict[str, dict[str, int]] = {}
        self.loops = 0
        self.measuring = False
        self.errors: list[str] = []
        self.rng = random.Random(username)

    def login(self) -> None:
        page = self.session.get(f"{self.base}/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = self.session.post(
            f"{self.base}/accounts/login/",
            data={"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            allow_redirects=False,
        )
        if response.status_code != 302:
            raise RuntimeError(f"login failed for {self.username}: {response.status_code}")
        self.session.headers["X-CSRFToken"] = self.session.cookies["csrftoken"]

    def run(self) -> None:
        while time.monotonic() < self.stop_at[0]:
            started = time.perf_counter()
            response = self.session.post(f"{self.base}/api/v1/workspace/studies/{self.slug}/next")
            next_ms = (time.perf_counter() - started) * 1000
            if response.status_code == 204:
                self.errors.append("pool exhausted")
                return
            if response.status_code != 200:
                self.errors.append(f"next {response.status_code}: {response.text[:200]}")
                return
            pair = response.json()
            values = {c["key"]: self.rng.choice(self.scale) for c in pair["criteria"]}
            started = time.perf_counter()
            response = self.session.post(
                f"{self.base}/api/v1/workspace/pairs/{pair['id']}/submit",
                json={"values": values, "total_seconds": 1.0, "active_seconds": 1.0},
            )
            submit_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                self.errors.append(f"submit {response.status_code}: {response.text[:200]}")
                return
            self.submitted[pair["id"]] = values
            if self.measuring:
                self.latency["next"].append(next_ms)
                self.latency["submit"].append(submit_ms)
                self.loops += 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def run_level(server: Server, db: str, clients: int, seconds: float, warmup: float, prompts: int, k: int) -> dict:
    slug = f"bench-{db}-{clients}"
    names = [f"bench-clin-{i:02d}" for i in range(max(clients, k))]
    study = create_study(slug, prompts, names, k)
    stop_at = [time.monotonic() + 3600]
    threads = [Client(server.url, names[i], slug, [-1, 0, 1], stop_at) for i in range(clients)]
    for t in threads:
        t.login()
    for t in threads:
        t.start()
    time.sleep(warmup)
    cpu_before = server.cpu_seconds()
    for t in threads:
        t.measuring = True
    started = time.monotonic()
    time.sleep(seconds)
    for t in threads:
        t.measuring = False
    elapsed = time.monotonic() - started
    cpu_after = server.cpu_seconds()
    stop_at[0] = 0
    for t in threads:
        t.join(timeout=60)
    loops = sum(t.loops for t in threads)
    cpu_by_role = {"web": 0.0, "db": 0.0}
    for key, after in cpu_after.items():
        cpu_by_role[key[0]] += after - cpu_before.get(key, 0.0)
    cpu = sum(cpu_by_role.values())
    latencies = {kind: [v for t in threads for v in t.latency[kind]] for kind in ("next", "submit")}
    errors = [e for t in threads for e in t.errors]
    submitted = {pid: values for t in threads for pid, values in t.submitted.items()}
    return {
        "db": db,
        "clients": clients,
        "loops_per_s": loops / elapsed,
        "cpu_ms_per_loop": 1000 * cpu / loops if loops else float("nan"),
        "cpu_web_ms_per_loop": 1000 * cpu_by_role["web"] / loops if loops else float("nan"),
        "cpu_db_ms_per_loop": 1000 * cpu_by_role["db"] / loops if loops else float("nan"),
        "latency": {kind: {q: percentile(vals, q) for q in (50, 95, 99)} for kind, vals in latencies.items()},
        "all_p95": percentile(latencies["next"] + latencies["submit"], 95),
        "errors": errors,
        "check": verify(study, submitted),
    }


def verify(study, submitted: dict[str, dict[str, int]]) -> dict:
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
    over_k = live.filter(live__gt=study.overlap_k).count()
    counter_mismatch = sum(1 for c in live if c.live != c.active_assignments)
    return {
        "submitted": len(submitted),
        "missing_assignments": len(set(submitted) - set(assignments)),
        "ratings_match": stored == expected,
        "ratings": len(stored),
        "over_k": over_k,
        "counter_mismatch": counter_mismatch,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--prompts", type=int, default=400, help="prompts per study (3 comparisons each)")
    parser.add_argument("--overlap-k", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    dbs = ["postgres", "sqlite"] if args.db == "both" else [args.db]
    levels = [int(n) for n in args.clients.split(",")]
    results = []
    for db in dbs:
        if len(dbs) > 1 and db != dbs[0]:
            # Django is configured once per process: run each further database in a child process.
            cmd = [
                sys.executable,
                __file__,
                "--db",
                db,
                "--clients",
                args.clients,
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
                "--workers",
                str(args.workers),
                "--prompts",
                str(args.prompts),
                "--overlap-k",
                str(args.overlap_k),
                "--json",
                str(VAR / f"results-{db}.json"),
            ]
            if subprocess.run(cmd, check=False).returncode not in (0, 1):
                return 2
            results += json.loads((VAR / f"results-{db}.json").read_text())
            continue
        reset_database(db)
        setup_django(db)
        server = Server(db, args.workers)
        try:
            for clients in levels:
                result = run_level(server, db, clients, args.seconds, args.warmup, args.prompts, args.overlap_k)
                results.append(result)
                print_row(result, header=len(results) == 1)
        finally:
            server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if len(dbs) > 1 or not args.json:
        return report(results)
    return 0


def print_row(r: dict, header: bool = False) -> None:
    if header:
        print(
            f"{'db':9} {'clients':>7} {'loops/s':>8} {'cpu ms/loop':>11} {'web+db':>11} "
            f"{'next p50/p95/p99 ms':>22} {'submit p50/p95/p99 ms':>22}  check"
        )
    lat = " ".join(f"{r['latency']['next'][q]:6.1f}" for q in (50, 95, 99))
    lat2 = " ".join(f"{r['latency']['submit'][q]:6.1f}" for q in (50, 95, 99))
    c = r["check"]
    ok = c["ratings_match"] and not c["over_k"] and not c["counter_mismatch"] and not c["missing_assignments"]
    print(
        f"{r['db']:9} {r['clients']:>7} {r['loops_per_s']:8.1f} {r['cpu_ms_per_loop']:11.1f} "
        f"{r['cpu_web_ms_per_loop']:5.1f}+{r['cpu_db_ms_per_loop']:<5.1f} {lat:>22} {lat2:>22}  "
        f"{'ok' if ok else 'FAIL'} ({c['submitted']} pairs, {c['ratings']} ratings, over k: {c['over_k']})"
        + (f" errors: {r['errors'][:2]}" if r["errors"] else ""),
        flush=True,
    )


def report(results: list[dict]) -> int:
    print("\nTargets (this machine):")
    failures = 0
    for db in sorted({r["db"] for r in results}):
        rows = {r["clients"]: r for r in results if r["db"] == db}
        checks = []
        worst_cpu = max(r["cpu_ms_per_loop"] for r in rows.values())
        checks.append(
            (
                f"server CPU per loop <= {TARGETS['cpu_ms_per_loop']} ms (worst {worst_cpu:.1f})",
                worst_cpu <= TARGETS["cpu_ms_per_loop"],
            )
        )
        if 8 in rows and 32 in rows:
            ratio = rows[32]["loops_per_s"] / rows[8]["loops_per_s"]
            checks.append(
                (
                    f"throughput 32 vs 8 clients >= {TARGETS['scaling_32_vs_8']:.0%} ({ratio:.0%})",
                    ratio >= TARGETS["scaling_32_vs_8"],
                )
            )
        if 8 in rows:
            p95 = rows[8]["all_p95"]
            checks.append(
                (f"p95 at 8 clients < {TARGETS['p95_ms_at_8']:.0f} ms ({p95:.1f})", p95 < TARGETS["p95_ms_at_8"])
            )
        exact = all(r["check"]["ratings_match"] and not r["check"]["missing_assignments"] for r in rows.values())
        checks.append(("zero lost or duplicated ratings", exact))
        checks.append(("no comparison beyond k", all(not r["check"]["over_k"] for r in rows.values())))
        for label, ok in checks:
            failures += not ok
            print(f"  {db:9} {'PASS' if ok else 'MISS'}  {label}")
    return 1 if failures else 0


if __name__ == "__main__":
    if shutil.which("pg_isready") is None:
        print("note: pg_isready not found; assuming PostgreSQL is reachable", file=sys.stderr)
    sys.exit(main())
