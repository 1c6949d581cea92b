"""Calls to an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, Ollama, hosted APIs).

One session owns an event loop in a background thread and one `openai.AsyncOpenAI` client, so a caller
on an ordinary thread (a Celery task, a management command) submits batches of requests and writes
results while the next batch is already in flight. A semaphore bounds the requests in flight across
batches. Retries are ours, not the client's, so every attempt is counted: 429 and 5xx back off
(honouring `Retry-After`), timeouts and dropped connections are retried, and an answer the caller's
`validate` rejects (malformed JSON, a missing key) is asked again, then recorded as a failure.

Pure core: no Django. The API key is passed in, never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai

# httpx logs every request at INFO: hundreds of lines a second in the worker's log during a run, and CPU the
# run needs. Only its warnings, unless the deployment's logging configures it.
for _name in ("httpx", "httpx2"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

# Backoff between attempts when the server gives no Retry-After: base * 2^(attempt-1), jittered, capped.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
# A Retry-After longer than this is not waited for: the call fails (the server asks for minutes).
RETRY_AFTER_CAP_SECONDS = 120.0


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_seconds: float = 120.0
    max_attempts: int = 3
    concurrency: int = 8
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int | None = None


@dataclass(frozen=True)
class CallResult:
    ok: bool
    text: str = ""
    error: str = ""
    attempts: int = 1
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    parsed: Any = None  # what `validate` returned for the accepted answer
    # True when no attempt reached the server at all (refused connection, unknown host).
    unreachable: bool = False


class MalformedAnswer(ValueError):
    """Raised by a `validate` callback: the answer does not follow the contract; ask again."""


Validate = Callable[[str], Any]


def _retry_after_seconds(error: openai.APIStatusError) -> float | None:
    value = error.response.headers.get("retry-after") if error.response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


def _describe(error: BaseException) -> str:
    if isinstance(error, openai.APIStatusError):
        message = getattr(error, "message", "") or ""
        return f"HTTP {error.status_code}: {message}"[:500]
    if isinstance(error, openai.APITimeoutError):
        return "timed out"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error
        return f"connection failed: {type(cause).__name__}: {cause}"[:500]
    return f"{type(error).__name__}: {error}"[:500]


def _answer_text(answer: Any) -> tuple[str, int, int]:
    """(content, prompt tokens, completion tokens) of a chat-completions answer; "" when it has no content."""
    if not isinstance(answer, dict):
        return "", 0, 0  # not a JSON object (a proxy's error page): malformed, asked again
    usage = answer.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    choices = answer.get("choices")
    message = (
        choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    )
    content = message.get("content") if isinstance(message, dict) else None
    return (
        content if isinstance(content, str) else "",
        prompt_tokens if isinstance(prompt_tokens, int) else 0,
        completion_tokens if isinstance(completion_tokens, int) else 0,
    )


def _http_client() -> Any:
    """The openai client's aiohttp transport: the same requests at about half the CPU of its default httpx
    transport, which decides a judge run's rate on a small machine (bench/judge.py). None (httpx) without it."""
    try:
        return openai.DefaultAioHttpClient()
    except RuntimeError:  # the openai package without its aiohttp extra
        return None


def _connection_failure(error: openai.APIConnectionError) -> tuple[str, bool]:
    """(what happened, did it reach the server?) for a timeout or a connection error, on either transport.

    The aiohttp transport reports every connection error as a timeout; its cause says which it was.
    """
    chain: list[BaseException] = []
    cause = error.__cause__
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__
    for cause in chain:
        if isinstance(cause, aiohttp.ClientConnectorError):  # refused, unknown host: nothing reached the server
            return f"connection failed: {type(cause).__name__}: {cause}"[:500], False
        if isinstance(cause, TimeoutError):
            return "timed out", True
        if isinstance(cause, aiohttp.ClientError):  # the server closed the connection or sent something broken
            return f"connection failed: {type(cause).__name__}: {cause}"[:500], True
    return _describe(error), isinstance(error, openai.APITimeoutError)


class EndpointSession:
    """Submit batches of chat requests; results come back in request order, one CallResult each."""

    def __init__(self, config: EndpointConfig) -> None:
        if config.concurrency < 1 or config.max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be at least 1")
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="judge-endpoint", daemon=True)
        self._thread.start()
        self._client: openai.AsyncOpenAI = self._run_sync(self._make_client())
        self._semaphore: asyncio.Semaphore = self._run_sync(self._make_semaphore())
        self._stopping = False

    async def _make_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.config.base_url,
            # Servers without auth still get a header; the client insists on some key.
            api_key=self.config.api_key or "not-needed",
            timeout=self.config.timeout_seconds,
            max_retries=0,
            http_client=_http_client(),
        )

    async def _make_semaphore(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(self.config.concurrency)

    def _run_sync(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(
        self,
        requests: Sequence[list[dict[str, str]]],
        *,
        validate: Validate | Sequence[Validate] | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> concurrent.futures.Future[list[CallResult]]:
        """Schedule the requests; the future resolves to their results in order. `validate` is one
        callback for all, or one per request."""
        validators = list(validate) if isinstance(validate, Sequence) else [validate] * len(requests)
        if len(validators) != len(requests):
            raise ValueError("one validate callback per request")
        coroutine = self._gather(list(requests), validators, response_format)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def stop(self) -> None:
        """Ask queued requests not to start (a cancel); those in flight finish."""
        self._stopping = True

    def close(self) -> None:
        try:
            self._run_sync(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> EndpointSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _gather(
        self,
        requests: list[list[dict[str, str]]],
        validators: list[Validate | None],
        response_format: dict[str, Any] | None,
    ) -> list[CallResult]:
        calls = (self._call(m, v, response_format) for m, v in zip(requests, validators, strict=True))
        return list(await asyncio.gather(*calls))

    async def _call(
        self, messages: list[dict[str, str]], validate: Validate | None, response_format: dict[str, Any] | None
    ) -> CallResult:
        async with self._semaphore:
            if self._stopping:
                return CallResult(ok=False, error="cancelled", attempts=0)
            return await self._call_with_retries(messages, validate, response_format)

    async def _call_with_retries(
        self, messages: list[dict[str, str]], validate: Validate | None, response_format: dict[str, Any] | None
    ) -> CallResult:
        config = self.config
        error = ""
        text = ""
        reached_server = False
        prompt_tokens = completion_tokens = 0
        started = time.perf_counter()
        use_response_format = response_format
        attempt = 0
        while attempt < config.max_attempts:
            attempt += 1
            wait: float | None = None
            try:
                # The client's low-level post with a plain dict: the same request, status errors and timeouts as
                # chat.completions.create, without its per-call parameter transform and pydantic response
                # models, which cost more CPU than everything else a judge run does (bench/judge.py).
                answer = await self._client.post(
                    "/chat/completions", body=self._arguments(messages, use_response_format), cast_to=dict
                )
                reached_server = True
                text, prompt, completion = _answer_text(answer)
                prompt_tokens += prompt
                completion_tokens += completion
                parsed = validate(text) if validate else text
                return CallResult(
                    ok=True,
                    text=text,
                    attempts=attempt,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    parsed=parsed,
                )
            except MalformedAnswer as malformed:
                error = f"malformed answer: {malformed}"[:500]
            except openai.BadRequestError as bad:
                reached_server = True
                if use_response_format is not None:
                    # The server does not take response_format: ask again without it, at no attempt's cost.
                    use_response_format = None
                    attempt -= 1
                    continue
                return self._failure(_describe(bad), attempt, started, prompt_tokens, completion_tokens, text, True)
            except openai.APIStatusError as status:
                reached_server = True
                error = _describe(status)
                if status.status_code not in (408, 409, 429) and status.status_code < 500:
                    # 401, 403, 404: asking again will not help.
                    return self._failure(error, attempt, started, prompt_tokens, completion_tokens, text, True)
                wait = _retry_after_seconds(status)
                if wait is not None and wait > RETRY_AFTER_CAP_SECONDS:
                    return self._failure(error, attempt, started, prompt_tokens, completion_tokens, text, True)
            except (openai.APITimeoutError, openai.APIConnectionError) as connection:
                error, reached = _connection_failure(connection)
                reached_server = reached_server or reached
            if attempt < config.max_attempts and not self._stopping:
                await asyncio.sleep(wait if wait is not None else _backoff(attempt))
            elif self._stopping:
                break
        return self._failure(error, attempt, started, prompt_tokens, completion_tokens, text, reached_server)

    @staticmethod
    def _failure(
        error: str,
        attempts: int,
        started: float,
        prompt_tokens: int,
        completion_tokens: int,
        text: str,
        reached_server: bool,
    ) -> CallResult:
        return CallResult(
            ok=False,
            text=text,
            error=error,
            attempts=attempts,
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            unreachable=not reached_server,
        )

    def _arguments(self, messages: list[dict[str, str]], response_format: dict[str, Any] | None) -> dict[str, Any]:
        config = self.config
        arguments: dict[str, Any] = {"model": config.model, "messages": messages, "temperature": config.temperature}
        if config.seed is not None:
            arguments["seed"] = config.seed
        if config.max_tokens:
            arguments["max_tokens"] = config.max_tokens
        if response_format is not None:
            arguments["response_format"] = response_format
        return arguments


def chat_many(
    config: EndpointConfig,
    requests: Sequence[list[dict[str, str]]],
    *,
    validate: Validate | None = None,
    response_format: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_result: Callable[[int, CallResult], None] | None = None,
    batch_size: int = 256,
) -> list[CallResult]:
    """Run every request (bounded by config.concurrency); results in request order.

    `should_stop` is checked between batches; requests not started by then come back as failures with
    error "cancelled". `on_result(index, result)` is called on the caller's thread as batches finish.
    """
    results: list[CallResult] = []
    with EndpointSession(config) as session:
        for start in range(0, len(requests), batch_size):
            if should_stop is not None and should_stop():
                cancelled = CallResult(ok=False, error="cancelled", attempts=0)
                results.extend(cancelled for _ in requests[start:])
                break
            batch = session.submit(
                requests[start : start + batch_size], validate=validate, response_format=response_format
            )
            for offset, result in enumerate(batch.result()):
                results.append(result)
                if on_result is not None:
                    on_result(start + offset, result)
    return results
