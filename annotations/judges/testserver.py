"""A small, fast, deterministic OpenAI-compatible judge server for tests, the benchmark and the demo.

No Django here: aiohttp only, so the benchmark can run it in its own process and the tests in a thread.

Endpoints (base URL ``http://HOST:PORT/v1``):

- ``POST /v1/chat/completions``: the OpenAI chat-completions shape. Reads the LAST user message, which must hold
  the two responses between the markers (exactly)::

      ### Response 1\\n TEXT1 \\n### Response 2\\n TEXT2 \\n### End of responses

  and a line ``Reply with only a JSON object with these keys: ["empathy", "safety"]`` (a JSON array), and
  optionally a line ``Scale: N-point`` (N in 3, 5, 7; default 3). The reply content is a JSON object with one
  answer per key and a ``"reason"``. 3-point answers are the strings "1", "2", "tie"; 5- and 7-point answers
  are integers -m..m (m = (N - 1) / 2; negative = Response 1 better, 0 = tie).
- ``GET /v1/models``: the behaviours, as models.
- ``POST /_control``: JSON ``{"faults": [...], "latency_ms": float, "reset_stats": bool, "retry_after": str,
  "slow_s": float}`` (every field optional); answers the stats.
- ``GET /_stats``: counts (see `ServerState.stats`).

Behaviours, by the request's ``model``:

- ``prefer-longer``: "1" when TEXT1 is longer (in characters), "2" when shorter, "tie" when equal.
- ``prefer-first`` / ``prefer-second``: always "1" / always "2" (position-biased).
- ``hash``: per key, from a hash of (the pair of texts in sorted order, key): ~20% ties, otherwise one of the
  texts wins, so swapping the responses swaps the answer; on 5/7 points half the preferences are strong (m).
- anything else: 404 in OpenAI's error shape.

Faults, consumed one per chat-completions request, in order, before answering: ``malformed`` (content that is
not JSON), ``malformed-keys`` (JSON missing the first key), ``429`` (with ``Retry-After``), ``500``, ``503``,
``slow`` (sleeps ``slow_s`` then answers normally), ``drop`` (closes the connection, no response). A fault may
carry its own value after a colon: ``"429:1.5"`` (Retry-After), ``"slow:0.5"`` (seconds). ``latency_ms``
delays every answer that has content (normal, malformed, malformed-keys, after slow), not the error replies.

Python: `start_server_in_thread` returns a `JudgeServer` handle. CLI::

    python -m annotations.judges.testserver --host 127.0.0.1 --port 8765 --latency-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import threading
import zlib
from collections.abc import Iterable
from typing import Any

from aiohttp import web

BEHAVIOURS = ("prefer-longer", "prefer-first", "prefer-second", "hash")
FAULTS = ("malformed", "malformed-keys", "429", "500", "503", "slow", "drop")
SCALES = (3, 5, 7)

MARK_1 = "### Response 1\n"
MARK_2 = "\n### Response 2\n"
MARK_END = "\n### End of responses"
KEYS_RE = re.compile(r"these keys: (\[[^\n]*\])")
SCALE_RE = re.compile(r"Scale: (\d+)-point")

MALFORMED_CONTENT = "Response 1 is better, I think"
DEFAULT_RETRY_AFTER = "0.2"
DEFAULT_SLOW_S = 2.0

_JSON = "application/json"
_CREATED = 1_700_000_000


class PromptError(ValueError):
    """The prompt lacks the markers or the keys line, or names an unsupported scale."""


# ---- the pure core: parsing and verdicts -------------------------------------------------------------------


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(messages: Any) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return message_text(message.get("content"))
    return ""


def parse_prompt(prompt: str) -> tuple[str, str, list[str], int]:
    """(TEXT1, TEXT2, keys, scale points) from a judge prompt; raises PromptError.

    The keys line and the scale line are looked for outside the responses, so a response cannot forge them.
    """
    start = prompt.find(MARK_1)
    middle = prompt.find(MARK_2, start + len(MARK_1)) if start >= 0 else -1
    end = prompt.find(MARK_END, middle + len(MARK_2)) if middle >= 0 else -1
    if end < 0:
        raise PromptError("No '### Response 1' / '### Response 2' / '### End of responses' markers in the prompt.")
    text1 = prompt[start + len(MARK_1) : middle]
    text2 = prompt[middle + len(MARK_2) : end]
    outside = prompt[:start] + "\n" + prompt[end + len(MARK_END) :]
    match = KEYS_RE.search(outside)
    if match is None:
        raise PromptError("No 'Reply with only a JSON object with these keys: [...]' line in the prompt.")
    try:
        keys = json.loads(match.group(1))
    except ValueError:
        raise PromptError("The keys after 'these keys: ' are not a JSON array.") from None
    if not isinstance(keys, list) or not keys or not all(isinstance(key, str) for key in keys):
        raise PromptError("The keys after 'these keys: ' must be a non-empty JSON array of strings.")
    scale = _scale(outside)
    if scale not in SCALES:
        raise PromptError(f"Unsupported scale: {scale}-point (3, 5 or 7).")
    return text1, text2, keys, scale


def _scale(outside: str) -> int:
    """N from the first line that starts with 'Scale: N-point' (3 when none); str.find is faster than ^ regexes."""
    at = outside.find("Scale: ")
    while at >= 0:
        if at == 0 or outside[at - 1] == "\n":
            match = SCALE_RE.match(outside, at)
            if match:
                return int(match.group(1))
        at = outside.find("Scale: ", at + 1)
    return 3


_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: spreads a 64-bit value's bits."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _hash_preferences(text1: str, text2: str, keys: Iterable[str]) -> dict[str, tuple[int, bool]]:
    """Per key: (winning position 1/2, or 0 for a tie; strong?), symmetric under swapping the texts."""
    if text1 == text2:
        return dict.fromkeys(keys, (0, False))
    low, high = (text1, text2) if text1 < text2 else (text2, text1)
    # crc32 (fast, deterministic across processes) of the sorted pair, then one mix per key.
    low_bytes = low.encode()
    pair = (zlib.crc32(high.encode(), zlib.crc32(low_bytes)) << 32) | zlib.crc32(low_bytes[::-1])
    out = {}
    for key in keys:
        u = _mix64(pair ^ zlib.crc32(key.encode())) % 100
        if u < 20:
            out[key] = (0, False)
            continue
        winner = low if u < 60 else high  # [20, 60): the lower text wins; [60, 100): the higher one
        out[key] = (1 if winner == text1 else 2, u < 40 or u >= 80)
    return out


def _encode(position: int, strong: bool, scale: int) -> str | int:
    if scale == 3:
        return ("tie", "1", "2")[position]
    magnitude = (scale - 1) // 2 if strong else 1
    return (0, -magnitude, magnitude)[position]


def verdict(behaviour: str, text1: str, text2: str, keys: list[str], scale: int = 3) -> dict[str, Any]:
    """The reply object for a parsed prompt: {key: answer, ..., "reason": text}."""
    if behaviour == "hash":
        prefs = _hash_preferences(text1, text2, keys)
        reply: dict[str, Any] = {key: _encode(*prefs[key], scale) for key in keys}
        reply["reason"] = "Deterministic hash verdict."
        return reply
    if behaviour == "prefer-longer":
        position = 1 if len(text1) > len(text2) else 2 if len(text1) < len(text2) else 0
        reason = ("Both responses are the same length.", "Response 1 is longer.", "Response 2 is longer.")[position]
    elif behaviour == "prefer-first":
        position, reason = 1, "Response 1 comes first."
    elif behaviour == "prefer-second":
        position, reason = 2, "Response 2 comes second."
    else:
        raise ValueError(f"Unknown behaviour: {behaviour}")
    answer = _encode(position, False, scale)
    reply = dict.fromkeys(keys, answer)
    reply["reason"] = reason
    return reply


def estimate_tokens(text: str) -> int:
    """About one token a word: spaces and newlines, counted (str.split is slower at this rate)."""
    return text.count(" ") + text.count("\n") + 1 if text else 0


# ---- state and HTTP handlers -------------------------------------------------------------------------------


class ServerState:
    """Faults, latency and counters; touched only on the server's event loop."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_ms = float(latency_ms)
        self.retry_after = DEFAULT_RETRY_AFTER
        self.slow_s = DEFAULT_SLOW_S
        self.faults: collections.deque[str] = collections.deque()
        self._counter = 0
        self.reset_stats()

    def reset_stats(self) -> None:
        self.requests_total = 0
        self.by_status: collections.Counter[int] = collections.Counter()
        self.by_fault: collections.Counter[str] = collections.Counter()
        self.by_model: collections.Counter[str] = collections.Counter()
        self.authorizations: set[str] = set()
        self.last_model: Any = None
        self.last_temperature: Any = None
        self.last_seed: Any = None
        self.last_response_format: Any = None
        self.in_flight = 0
        self.max_in_flight = 0

    def set_faults(self, faults: Iterable[str]) -> None:
        queue = [str(fault) for fault in faults]
        for fault in queue:
            if fault.split(":", 1)[0] not in FAULTS:
                raise ValueError(f"Unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.faults = collections.deque(queue)

    def control(self, payload: dict[str, Any]) -> None:
        if payload.get("reset_stats"):
            self.reset_stats()
        if "faults" in payload:
            self.set_faults(payload["faults"] or [])
        if payload.get("latency_ms") is not None:
            self.latency_ms = max(0.0, float(payload["latency_ms"]))
        if payload.get("retry_after") is not None:
            self.retry_after = str(payload["retry_after"])
        if payload.get("slow_s") is not None:
            self.slow_s = max(0.0, float(payload["slow_s"]))

    def stats(self) -> dict[str, Any]:
        """Chat-completions requests only (not /v1/models, /_control, /_stats)."""
        return {
            "requests_total": self.requests_total,
            "by_status": {str(code): count for code, count in sorted(self.by_status.items())},
            "by_fault": dict(self.by_fault),
            "by_model": dict(self.by_model),
            "authorizations": sorted(self.authorizations),
            "last_model": self.last_model,
            "last_temperature": self.last_temperature,
            "last_seed": self.last_seed,
            "last_response_format": self.last_response_format,
            "max_in_flight": self.max_in_flight,
            "faults_pending": list(self.faults),
            "latency_ms": self.latency_ms,
        }

    def next_id(self) -> str:
        self._counter += 1
        return f"chatcmpl-test{self._counter:08x}"


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type=_JSON, headers=headers)


def _error(state: ServerState, status: int, message: str, type_: str, code: str | None, **headers: str):
    state.by_status[status] += 1
    return _json_response({"error": {"message": message, "type": type_, "param": None, "code": code}}, status, headers)


def _completion(state: ServerState, model: str, content: str, prompt_tokens: int) -> web.Response:
    completion_tokens = estimate_tokens(content)
    state.by_status[200] += 1
    return _json_response(
        {
            "id": state.next_id(),
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_testserver",
        }
    )


STATE_KEY = web.AppKey("state", ServerState)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.requests_total += 1
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        return await _chat_completions(request, state)
    finally:
        state.in_flight -= 1


async def _chat_completions(request: web.Request, state: ServerState) -> web.StreamResponse:
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        state.authorizations.add(authorization)
    try:
        body = json.loads(await request.read())
    except ValueError:
        return _error(state, 400, "The request body is not valid JSON.", "invalid_request_error", None)
    if not isinstance(body, dict):
        return _error(state, 400, "The request body must be a JSON object.", "invalid_request_error", None)
    model = body.get("model")
    state.last_model = model
    state.last_temperature = body.get("temperature")
    state.last_seed = body.get("seed")
    state.last_response_format = body.get("response_format")
    state.by_model[str(model)] += 1

    fault, _, value = (state.faults.popleft() if state.faults else "").partition(":")
    if fault:
        state.by_fault[fault] += 1
        if fault == "drop":
            request.transport.close()  # no response at all: the client sees the connection closed
            raise asyncio.CancelledError
        if fault == "429":
            return _error(
                state,
                429,
                "Rate limit reached for requests (test server fault).",
                "requests",
                "rate_limit_exceeded",
                **{"Retry-After": value or state.retry_after},
            )
        if fault == "500":
            return _error(state, 500, "The server had an error while processing your request.", "server_error", None)
        if fault == "503":
            return _error(
                state, 503, "The engine is currently overloaded, please try again later.", "server_error", None
            )
        if fault == "slow":
            await asyncio.sleep(float(value) if value else state.slow_s)

    if model not in BEHAVIOURS:
        return _error(
            state, 404, f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error", "model_not_found",
        )  # fmt: skip
    messages = body.get("messages")
    try:
        text1, text2, keys, scale = parse_prompt(last_user_text(messages))
    except PromptError as exc:
        return _error(state, 400, str(exc), "invalid_request_error", None)

    if state.latency_ms > 0:
        await asyncio.sleep(state.latency_ms / 1000.0)
    if fault == "malformed":
        content = MALFORMED_CONTENT
    else:
        reply = verdict(model, text1, text2, keys, scale)
        if fault == "malformed-keys":
            del reply[keys[0]]
        content = json.dumps(reply)
    prompt_tokens = sum(
        estimate_tokens(message_text(message.get("content"))) for message in messages if isinstance(message, dict)
    )
    return _completion(state, model, content, prompt_tokens)


async def list_models(request: web.Request) -> web.Response:
    return _json_response(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": _CREATED, "owned_by": "testserver"} for name in BEHAVIOURS
            ],
        }
    )


async def control(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        payload = json.loads(await request.read() or b"{}")
        if not isinstance(payload, dict):
            raise ValueError("the body must be a JSON object")
        state.control(payload)
    except (ValueError, TypeError) as exc:
        return _json_response({"error": {"message": str(exc), "type": "invalid_request_error", "code": None}}, 400)
    return _json_response(state.stats())


async def get_stats(request: web.Request) -> web.Response:
    return _json_response(request.app[STATE_KEY].stats())


def make_app(state: ServerState | None = None) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = state or ServerState()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/_control", control)
    app.router.add_get("/_stats", get_stats)
    return app


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner, runner.addresses[0][1]


def _base_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


# ---- in-process handle -------------------------------------------------------------------------------------


class JudgeServer:
    """The server on its own asyncio loop in a daemon thread; every method is safe from any other thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0) -> None:
        self.host = host
        self.state = ServerState(latency_ms)
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = port
        self._thread = threading.Thread(target=self._run, name="judge-testserver", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._runner, self.port = self.loop.run_until_complete(_start(make_app(self.state), self.host, self.port))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the starting thread)
            self._error = exc
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self._runner.cleanup())
            self.loop.close()

    def start(self) -> JudgeServer:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    @property
    def base_url(self) -> str:
        return _base_url(self.host, self.port)

    def _call(self, function: Any, *args: Any) -> Any:
        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def set_faults(self, faults: Iterable[str]) -> None:
        self._call(self.state.set_faults, list(faults))

    def set_latency(self, latency_ms: float) -> None:
        self._call(self.state.control, {"latency_ms": latency_ms})

    def configure(self, **payload: Any) -> None:
        """Same fields as POST /_control: faults, latency_ms, reset_stats, retry_after, slow_s."""
        self._call(self.state.control, payload)

    def stats(self) -> dict[str, Any]:
        return self._call(self.state.stats)

    def reset_stats(self) -> None:
        self._call(self.state.reset_stats)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> JudgeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server_in_thread(host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0) -> JudgeServer:
    """Start the server on a daemon thread (port 0: a free port) and return its handle once it listens."""
    return JudgeServer(host, port, latency_ms).start()


# ---- CLI ---------------------------------------------------------------------------------------------------


async def _serve(host: str, port: int, state: ServerState) -> None:
    runner, port = await _start(make_app(state), host, port)
    print(_base_url(host, port), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deterministic OpenAI-compatible judge server for tests.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (the printed URL says which)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated inference time per answer")
    parser.add_argument("--retry-after", default=DEFAULT_RETRY_AFTER, help="Retry-After value of the 429 fault")
    parser.add_argument("--slow-s", type=float, default=DEFAULT_SLOW_S, help="delay of the slow fault, seconds")
    args = parser.parse_args(argv)
    state = ServerState(args.latency_ms)
    state.retry_after = args.retry_after
    state.slow_s = args.slow_s
    try:
        asyncio.run(_serve(args.host, args.port, state))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
