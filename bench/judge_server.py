"""The judge test server's own maximum rate: the baseline half of the judge benchmark (bench/judge.py).

    .venv/bin/python bench/judge_server.py                               # latency 0 and 50 ms, 32 concurrent
    .venv/bin/python bench/judge_server.py --latency-ms 0 --requests 2000 --runs 5
    .venv/bin/python bench/judge_server.py --quick                       # a few hundred requests: a smoke test

Starts the deterministic OpenAI-compatible server (annotations/judges/testserver.py) in its own process on a
free port, then hammers it with the rawest client there is: aiohttp, pre-encoded request bodies, a fixed
number of workers (the concurrency), no parsing of the answers beyond reading them. What that client gets is
the server's own maximum rate at that concurrency: the ceiling any judge client can reach against it. With a
simulated inference time (latency) L the ideal rate is C / L; the ratio to it is printed too.

The prompts are realistic judge prompts: a help-seeker message, two replies of about 1,500 characters each,
seven criterion keys, a 5-point scale, between the exact markers the server parses.

Used by bench/judge.py: `start_server_process` and `measure_server_max_rate`.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent

CRITERION_KEYS = (
    "empathy",
    "safety",
    "active_listening",
    "self_motivated_change",
    "trust_rapport",
    "patient_autonomy",
    "overall",
)

SYSTEM_PROMPT = (
    "You are an experienced licensed psychotherapist evaluating replies written to a person who is seeking "
    "mental-health support. You see two possible replies and judge them blind. Judge each criterion on its own. "
    "Do not prefer a reply because it is longer or because of the order in which it is shown."
)

# Words for generated text: all written here, nothing from real people.
_SEEKER = (
    "I have not slept properly in weeks and I keep going over every conversation at work in my head. "
    "My sister says I should just relax but it feels like everything is piling up and I do not know "
    "who to talk to anymore. Some nights I wonder whether any of it matters."
)
_WORDS = (
    "I hear how heavy these weeks have been and it makes sense that you feel worn out when sleep keeps slipping "
    "away would it help to talk through what feels hardest right now you deserve support and you are not alone "
    "in this when you say you wonder whether it matters I want to check in gently are you having thoughts of "
    "hurting yourself if you ever feel unsafe please reach out to a crisis line or someone you trust right away "
    "it sounds like your sister cares even if her advice did not land what would feel like a small next step "
    "for you tonight maybe writing down the thoughts that loop or talking with your doctor about sleep"
).split()


def _text(seed: int, chars: int) -> str:
    """About `chars` characters of supportive-reply prose, deterministic in `seed`."""
    out: list[str] = []
    length = 0
    i = seed
    while length < chars:
        word = _WORDS[(i * 7919 + seed * 31) % len(_WORDS)]
        out.append(word)
        length += len(word) + 1
        i += 1
    return " ".join(out).capitalize() + "."


def judge_prompt(
    response_1: str,
    response_2: str,
    *,
    seeker: str = _SEEKER,
    keys: tuple[str, ...] | list[str] = CRITERION_KEYS,
    scale_points: int = 5,
) -> str:
    """A judge user prompt in the shape annotations/judges/prompting.py builds (the markers are exact)."""
    criteria = "\n".join(f"- {key}: Which reply is better on {key.replace('_', ' ')}?" for key in keys)
    half = scale_points // 2
    return (
        f"The conversation so far:\nHelp-seeker: {seeker}\n\n"
        "Two possible next replies to the help-seeker:\n"
        f"### Response 1\n{response_1}\n### Response 2\n{response_2}\n### End of responses\n\n"
        f"Compare the two replies on each criterion:\n{criteria}\n\n"
        f"Scale: {scale_points}-point.\n"
        f"For each criterion answer an integer from -{half} to {half}: negative when Response 1 is better, "
        'positive when Response 2 is better, 0 for a tie. Add "reason": one or two sentences.\n'
        f"Reply with only a JSON object with these keys: {json.dumps(list(keys))}"
    )


def sample_prompts(count: int = 16, response_chars: int = 1500) -> list[str]:
    """`count` distinct realistic judge prompts (two ~1,500-character replies each, 7 keys, 5 points)."""
    return [judge_prompt(_text(2 * i + 1, response_chars), _text(2 * i + 2, response_chars - 40)) for i in range(count)]


def _request_body(prompt_text: str, model: str) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt_text}],
            "temperature": 0.0,
            "seed": 0,
            "response_format": {"type": "json_object"},
        }
    ).encode()


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


# ---- the raw client ----------------------------------------------------------------------------------------


async def measure_server_max_rate_async(
    base_url: str,
    *,
    concurrency: int = 32,
    requests: int = 5000,
    prompt_text: str | None = None,
    model: str = "hash",
    warmup: int | None = None,
) -> dict[str, Any]:
    """See `measure_server_max_rate`; for callers already inside an event loop."""
    import aiohttp

    if concurrency < 1 or requests < 1:
        raise ValueError("concurrency and requests must be at least 1")
    prompts = [prompt_text] if prompt_text is not None else sample_prompts()
    bodies = [_request_body(prompt, model) for prompt in prompts]
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    latencies: list[float] = []
    failures: list[int] = []
    perf_counter = time.perf_counter

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        remaining = 0

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                body = bodies[remaining % len(bodies)]
                started = perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        failures.append(response.status)
                latencies.append(perf_counter() - started)

        remaining = concurrency * 2 if warmup is None else warmup  # open the connections, warm both sides
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.clear()
        remaining = requests
        started = perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = perf_counter() - started

    if failures:
        raise RuntimeError(f"{len(failures)} requests failed (first status {failures[0]}) against {url}")
    latencies.sort()
    return {
        "rate_per_s": requests / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "requests": requests,
        "concurrency": concurrency,
        "seconds": elapsed,
    }


def measure_server_max_rate(
    base_url: str,
    *,
    concurrency: int = 32,
    requests: int = 5000,
    prompt_text: str | None = None,
    model: str = "hash",
    warmup: int | None = None,
) -> dict[str, Any]:
    """The server's maximum rate at `concurrency`, with the rawest client: aiohttp, pre-encoded bodies.

    `base_url` ends in /v1 (as `start_server_process` gives it). `prompt_text` is the user prompt to send (by
    default, 16 realistic judge prompts in turn). `warmup` requests (default 2 x concurrency) go first, untimed.
    Returns {"rate_per_s", "p50_ms", "p95_ms", "requests", "concurrency", "seconds"}; raises RuntimeError if any
    answer is not a 200.
    """
    return asyncio.run(
        measure_server_max_rate_async(
            base_url, concurrency=concurrency, requests=requests, prompt_text=prompt_text, model=model, warmup=warmup
        )
    )


# ---- the server in its own process -------------------------------------------------------------------------


class ServerProcess:
    """The CLI test server in a subprocess: `.base_url` (…/v1), `.control(...)`, `.stats()`, `.stop()`."""

    def __init__(self, process: subprocess.Popen[str], base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80

    def _http(self, method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=5)
        try:
            body = None if payload is None else json.dumps(payload)
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def control(self, **payload: Any) -> dict[str, Any]:
        """POST /_control: faults, latency_ms, reset_stats, retry_after, slow_s. Returns the stats."""
        status, answer = self._http("POST", "/_control", payload)
        if status != 200:
            raise ValueError(answer)
        return answer

    def stats(self) -> dict[str, Any]:
        return self._http("GET", "/_stats")[1]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server_process(latency_ms: float = 0.0, *, host: str = "127.0.0.1", timeout_s: float = 20.0) -> ServerProcess:
    """Start `python -m annotations.judges.testserver` on a free port; return once it answers GET /v1/models."""
    command = [sys.executable, "-m", "annotations.judges.testserver", "--host", host, "--port", "0"]
    process = subprocess.Popen(
        [*command, "--latency-ms", str(latency_ms)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    base_url = first_line[0].strip() if first_line else ""
    if not base_url.startswith("http"):
        process.kill()
        process.wait()
        raise RuntimeError(f"the judge test server did not start (exit code {process.poll()}, printed {base_url!r})")
    server = ServerProcess(process, base_url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if server._http("GET", "/v1/models")[0] == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            server.stop()
            raise RuntimeError(f"the judge test server at {base_url} does not answer")
        time.sleep(0.05)


# ---- the benchmark -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0], help="simulated inference time")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default="hash", help="the server behaviour to ask")
    parser.add_argument("--quick", action="store_true", help="300 requests, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.runs = 300, 1

    print(f"judge test server, raw aiohttp client, concurrency {args.concurrency}, {args.requests} requests/run")
    for latency_ms in args.latency_ms:
        with start_server_process(latency_ms) as server:
            runs = []
            for _ in range(args.runs):
                cpu_before = server.cpu_seconds()
                run = measure_server_max_rate(
                    server.base_url, concurrency=args.concurrency, requests=args.requests, model=args.model
                )
                # includes the untimed warm-up requests: a slight overestimate
                run["server_cpu_us"] = (server.cpu_seconds() - cpu_before) / args.requests * 1e6
                runs.append(run)
        rate = statistics.median(run["rate_per_s"] for run in runs)
        p50 = statistics.median(run["p50_ms"] for run in runs)
        p95 = statistics.median(run["p95_ms"] for run in runs)
        cpu_us = statistics.median(run["server_cpu_us"] for run in runs)
        line = (
            f"latency {latency_ms:6.1f} ms: {rate:8.0f} req/s  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms"
            f"  server CPU {cpu_us:5.0f} us/req"
        )
        if latency_ms > 0:
            ideal = args.concurrency / (latency_ms / 1000)
            line += f"  ideal C/L {ideal:8.0f} req/s  ratio {rate / ideal:.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
