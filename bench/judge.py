"""A full LLM judge run against the local test server, next to the server's own maximum rate in the same run.

    .venv/bin/python bench/judge.py                          # 10,000 comparisons x 2 orders, 7 criteria, C = 32
    .venv/bin/python bench/judge.py --comparisons 1000       # a quicker look
    .venv/bin/python bench/judge.py --latency-ms 50 --runs 3

Creates a dedicated database (evalplatform_bench_judge, dropped afterwards unless --keep), migrates it and
builds a study fast (bulk_create; untimed): the seven default criteria on a 5-point scale, 4 systems per
prompt (6 comparisons a prompt), a help-seeker message and replies of about 1,500 characters each, all
generated here (no real text). Starts the deterministic OpenAI-compatible test server
(annotations/judges/testserver.py) in its own process with a simulated inference time (--latency-ms), then
times, --runs times each, interleaved:

- baseline: the server's maximum rate at the same concurrency with the rawest client there is
  (bench/judge_server.py `measure_server_max_rate`: aiohttp, pre-encoded bodies), sending the study's real
  judge prompt (same sizes);
- judge run: what users run, `judge_run_execute` on a fresh LLM judge (joint mode, both orders: two requests
  per comparison): reading the comparisons, building the prompts, the OpenAI client with its retries and
  semaphore, parsing every verdict, writing JudgmentCall and Judgment rows to PostgreSQL, batches pipelined.
  Progress is reported as `manage.py judge_run` reports it (on_progress).

Prints the judge run's requests/s, the server's maximum rate, their ratio (target: at least 80%: the client
is never the bottleneck), p50/p95 latency per request of both, CPU per request of this process and of the
server, and memory: resident set size sampled every 50 ms (peak) and read at 25/50/75/100% of the run's
progress, with the growth from 25% to 100% (target: flat, under TARGET_GROWTH_MB).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_server import _text, measure_server_max_rate, start_server_process  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BENCH_DB = "evalplatform_bench_judge"
TARGET_RATIO = 0.80
TARGET_GROWTH_MB = 20.0
SYSTEMS = 4  # 6 comparisons a prompt
MODEL = "hash"  # the test server's behaviour: per-pair, per-key verdicts, consistent under swapping

# Help-seeker words: all written here, nothing from real people.
_SEEKER_WORDS = (
    "I have not slept properly in weeks and I keep going over every conversation at work in my head my sister "
    "says I should just relax but it feels like everything is piling up and I do not know who to talk to anymore "
    "some nights I wonder whether any of it matters I used to enjoy running and cooking with friends but lately "
    "I cancel plans and stay in bed my manager noticed I was late twice and I am scared of losing the job I "
    "tried an app for breathing but it did not help much and I feel embarrassed asking my doctor again"
).split()


def seeker_text(seed: int, chars: int) -> str:
    """About `chars` characters of a help-seeker's message, deterministic in `seed`."""
    out: list[str] = []
    length = 0
    i = seed
    while length < chars:
        word = _SEEKER_WORDS[(i * 104729 + seed * 17) % len(_SEEKER_WORDS)]
        out.append(word)
        length += len(word) + 1
        i += 1
    return " ".join(out).capitalize() + "."


# ---- memory --------------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Resident set size of this process, sampled in a thread while a block runs: the peak and every sample."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self.samples: list[int] = []
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_bytes()
            self.samples.append(value)
            self.peak = max(self.peak, value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


# ---- database and study --------------------------------------------------------------------------------------


def _admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(statement)


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalplatform.test_settings")
    os.environ.setdefault("EVALPLATFORM_VAR_DIR", str(Path(tempfile.gettempdir()) / "ep-bench-judge"))
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    import django

    django.setup()


def build_study(*, comparisons: int, text_chars: int, scale_points: int) -> Any:
    """The study with its prompts, responses and comparisons, bulk-created (the setup is not timed)."""
    from annotations.models import Comparison, Prompt, Response, System
    from annotations.services.studies import study_create

    study = study_create(slug="bench-judge", title="Judge benchmark", scale_points=scale_points)
    systems = System.objects.bulk_create([System(study=study, name=f"system-{s}") for s in range(SYSTEMS)])
    pairs_per_prompt = SYSTEMS * (SYSTEMS - 1) // 2
    prompt_count = -(-comparisons // pairs_per_prompt)
    made = 0
    chunk = 500
    for chunk_start in range(0, prompt_count, chunk):
        numbers = range(chunk_start, min(prompt_count, chunk_start + chunk))
        prompts = Prompt.objects.bulk_create(
            [
                Prompt(
                    study=study,
                    external_id=f"p{p}",
                    messages=[{"role": "user", "content": seeker_text(p, text_chars)}],
                    meta={"category": f"category-{p % 4}"},
                    content_hash=hashlib.sha256(f"p{p}".encode()).hexdigest(),
                )
                for p in numbers
            ]
        )
        responses = []
        for prompt, p in zip(prompts, numbers, strict=True):
            for s, system in enumerate(systems):
                # lengths vary a little around text_chars so that the pair's two texts differ in size
                content = _text(p * SYSTEMS + s + 1, text_chars - 60 + 40 * s)
                responses.append(
                    Response(
                        study=study,
                        prompt=prompt,
                        system=system,
                        external_id=f"p{p}-s{s}",
                        content=content,
                        content_hash=hashlib.sha256(content.encode()).hexdigest(),
                    )
                )
        responses = Response.objects.bulk_create(responses)
        rows = []
        for offset in range(0, len(responses), SYSTEMS):
            group = responses[offset : offset + SYSTEMS]
            for i in range(SYSTEMS):
                for j in range(i + 1, SYSTEMS):
                    if made < comparisons:
                        first, second = sorted((group[i], group[j]), key=lambda r: r.pk)
                        rows.append(
                            Comparison(study=study, prompt=first.prompt, response_first=first, response_second=second)
                        )
                        made += 1
        Comparison.objects.bulk_create(rows)
    return study


def first_prompt_text(study: Any) -> str:
    """The judge's user prompt for the study's first comparison, exactly as a judge run builds it."""
    from annotations.judges import prompting
    from annotations.models import Comparison
    from annotations.services.judging import judge_template_default
    from annotations.services.studies import study_criteria

    template = judge_template_default()
    comparison = (
        Comparison.objects.filter(study=study)
        .select_related("prompt", "response_first", "response_second")
        .order_by("id")
        .first()
    )
    criteria = [
        prompting.CriterionText(c.key, c.title, c.question, c.better_when, c.worse_when) for c in study_criteria(study)
    ]
    messages = prompting.build_messages(
        system_prompt=template.system_prompt,
        user_prompt=template.user_prompt,
        persona="",
        conversation=comparison.prompt.messages,
        response_1=comparison.response_first.content,
        response_2=comparison.response_second.content,
        criteria=criteria,
        scale_points=study.scale_points,
    )
    return messages[1]["content"]


# ---- one judge run -------------------------------------------------------------------------------------------


def judge_once(study: Any, server: Any, *, name: str, concurrency: int) -> dict[str, Any]:
    """A fresh LLM judge run over the whole study through `judge_run_execute`; its figures."""
    from annotations.models import JobStatus, JudgmentCall
    from annotations.services.judging import judge_run_create, judge_run_execute, llm_judge_create

    judge = llm_judge_create(
        study=study, name=name, base_url=server.base_url, model_name=MODEL, concurrency=concurrency, actor=None
    )
    run = judge_run_create(judge=judge, actor=None, dispatch=False)
    total = run.total_comparisons
    quartiles: dict[int, int] = {}

    def on_progress(progress_run: Any) -> None:
        finished = progress_run.done_comparisons + progress_run.failed_comparisons
        for quarter in (25, 50, 75, 100):
            if quarter not in quartiles and finished * 100 >= quarter * total:
                quartiles[quarter] = rss_bytes()

    server_cpu = server.cpu_seconds()
    cpu = time.process_time()
    with RssSampler() as sampler:
        started = time.perf_counter()
        status = judge_run_execute(run_id=run.pk, worker="bench", on_progress=on_progress)
        elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    server_cpu = server.cpu_seconds() - server_cpu
    run.refresh_from_db()
    if status != JobStatus.SUCCEEDED or run.failed_comparisons or run.failed_calls:
        raise RuntimeError(
            f"judge run {status}: {run.done_comparisons} judged, {run.failed_comparisons} failed, "
            f"{run.failed_calls} failed calls; {run.error}"
        )
    latencies = sorted(JudgmentCall.objects.filter(run=run).values_list("latency_ms", flat=True))
    requests = run.calls
    return {
        "rate_per_s": requests / elapsed,
        "seconds": elapsed,
        "requests": requests,
        "judgments": run.judge.judgments.count(),
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "client_cpu_us": cpu / requests * 1e6,
        "server_cpu_us": server_cpu / requests * 1e6,
        "peak_rss": sampler.peak,
        "rss_before": sampler.samples[0] if sampler.samples else sampler.peak,
        "quartiles": quartiles,
    }


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def _mb(value: float) -> str:
    return f"{value / 1e6:.0f} MB"


# ---- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--latency-ms", type=float, default=100.0, help="the server's simulated inference time per answer"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each side; the medians are compared")
    parser.add_argument("--text-chars", type=int, default=1500, help="size of the help-seeker message and replies")
    parser.add_argument("--scale-points", type=int, default=5, choices=(3, 5, 7))
    parser.add_argument(
        "--baseline-requests", type=int, default=None, help="timed requests of the baseline (default: as the run)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    parser.add_argument("--database", default=BENCH_DB, help="name of the database created for the run")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the first judge run into FILE (.pstats)")
    args = parser.parse_args()
    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and underscores only")
    if args.comparisons < 1 or args.runs < 1 or args.concurrency < 1:
        parser.error("--comparisons, --runs and --concurrency must be at least 1")

    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{args.database}"
    _admin_execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    _admin_execute(f"CREATE DATABASE {args.database}")
    try:
        _setup_django(database_url)
        _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _admin_execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


def _run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    study = build_study(comparisons=args.comparisons, text_chars=args.text_chars, scale_points=args.scale_points)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    prompt_text = first_prompt_text(study)
    keys = len(study.study_criteria.all())
    print(
        f"study: {args.comparisons:,} comparisons, {keys} criteria, {args.scale_points}-point, texts of "
        f"~{args.text_chars:,} characters (judge prompt {len(prompt_text):,} characters), built in "
        f"{time.perf_counter() - started:.1f}s (database {connection.settings_dict['NAME']})",
        flush=True,
    )
    baseline_requests = args.baseline_requests or 2 * args.comparisons

    baselines: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    with start_server_process(args.latency_ms) as server:
        print(
            f"test server: {server.base_url}, simulated latency {args.latency_ms:g} ms, concurrency "
            f"{args.concurrency}, model {MODEL!r}; judge run: joint mode, both orders",
            flush=True,
        )
        for index in range(args.runs):
            cpu_before = server.cpu_seconds()
            baseline = measure_server_max_rate(
                server.base_url,
                concurrency=args.concurrency,
                requests=baseline_requests,
                prompt_text=prompt_text,
                model=MODEL,
            )
            baseline["server_cpu_us"] = (server.cpu_seconds() - cpu_before) / baseline_requests * 1e6
            baselines.append(baseline)
            print(
                f"run {index + 1}: server max {baseline['rate_per_s']:7.1f} req/s ({baseline_requests:,} requests, "
                f"p50 {baseline['p50_ms']:.1f} ms, p95 {baseline['p95_ms']:.1f} ms, server CPU "
                f"{baseline['server_cpu_us']:.0f} us/req)",
                flush=True,
            )
            name = f"bench-judge-{index + 1}"
            if args.profile and index == 0:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
                result = judge_once(study, server, name=name, concurrency=args.concurrency)
                profiler.disable()
                profiler.dump_stats(args.profile)
            else:
                result = judge_once(study, server, name=name, concurrency=args.concurrency)
            runs.append(result)
            quartiles = result["quartiles"]
            print(
                f"run {index + 1}: judge run {result['rate_per_s']:7.1f} req/s ({result['requests']:,} requests, "
                f"{result['judgments']:,} judgments in {result['seconds']:.1f}s, p50 {result['p50_ms']:.1f} ms, "
                f"p95 {result['p95_ms']:.1f} ms, client CPU {result['client_cpu_us']:.0f} us/req, server CPU "
                f"{result['server_cpu_us']:.0f} us/req), ratio {result['rate_per_s'] / baseline['rate_per_s']:.2f}; "
                f"RSS {', '.join(f'{q}% {_mb(v)}' for q, v in sorted(quartiles.items()))}, peak {_mb(result['peak_rss'])}",
                flush=True,
            )

    rate = statistics.median(r["rate_per_s"] for r in runs)
    server_rate = statistics.median(b["rate_per_s"] for b in baselines)
    ratio = rate / server_rate
    last = runs[-1]["quartiles"]
    growth = last[100] - last[25]
    peak = max(r["peak_rss"] for r in runs)
    ideal = args.concurrency / (args.latency_ms / 1000) if args.latency_ms > 0 else float("nan")
    rate_ok = ratio >= TARGET_RATIO
    memory_ok = growth / 1e6 <= TARGET_GROWTH_MB
    print()
    print(
        f"judge run      {rate:8.1f} req/s   p50 {statistics.median(r['p50_ms'] for r in runs):6.1f} ms   "
        f"p95 {statistics.median(r['p95_ms'] for r in runs):6.1f} ms   (median of {args.runs})"
    )
    print(
        f"server maximum {server_rate:8.1f} req/s   p50 {statistics.median(b['p50_ms'] for b in baselines):6.1f} ms   "
        f"p95 {statistics.median(b['p95_ms'] for b in baselines):6.1f} ms   (ideal C/L {ideal:.0f} req/s)"
    )
    print(f"ratio          {ratio:8.2f}   target >= {TARGET_RATIO:.2f}: {'PASS' if rate_ok else 'FAIL'}")
    print(
        f"memory         RSS at 25/50/75/100%: {' / '.join(_mb(last[q]) for q in (25, 50, 75, 100))}; growth "
        f"25%->100% {growth / 1e6:+.1f} MB (target <= {TARGET_GROWTH_MB:.0f} MB: {'PASS' if memory_ok else 'FAIL'}); "
        f"peak {_mb(peak)}"
    )
    print(f"overall        {'PASS' if rate_ok and memory_ok else 'FAIL'}")


if __name__ == "__main__":
    main()
