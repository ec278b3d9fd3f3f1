"""The Spark WebSocket client: one signed connection per answer, streamed as events.

:class:`SparkClient` owns nothing long-lived: it borrows the application's
``aiohttp.ClientSession`` (never creating or closing it), signs a fresh URL for every
connection (the server allows 300 s of clock skew) and keeps all per-request state in the
generator that streams that request, so hundreds of concurrent calls are independent. The
session's connector limit bounds how many answers stream at once; create it with
``TCPConnector(limit=0)`` (or a limit above the expected concurrency) to stream more than
aiohttp's default of 100, because time spent waiting for a free connection counts against the
connect timeout.

Failures are translated into the tree in :mod:`bot.spark.errors` at this boundary:

- HTTP 401/403 at the handshake -> :class:`SparkAuthError` with the gateway's JSON ``message``
  (aiohttp drops a refused handshake's body, so the refusal is read back with one plain GET of
  a freshly signed URL; the gateway authenticates every request the same way);
- an error frame -> :func:`spark_api_error`, classed retryable or final per the reference §5;
- connect / first-frame / idle / total budgets -> :class:`SparkTimeout` with the phase;
- the connection failing or closing before the last frame -> :class:`SparkTransportError`;
- a frame that is not Spark's shape -> :class:`SparkProtocolError`;
- a request Spark would reject -> :class:`SparkRequestInvalid` with code -1, before any
  network round trip (see :mod:`bot.spark.validation`).

Every error carries the ``sid`` (once a frame named it), the model name and ``partial_text``,
the answer text already streamed. Retryable failures before the first event are retried with
jittered exponential back-off (:class:`RetryPolicy`); once an event has been yielded a failure
is raised as is, so nothing reaches the user twice.

Log lines (logger ``bot.spark``) name the URL without its query (:func:`redact_url`), the sid,
model, attempts and timings; never the query string, key, secret or signature. Nothing is
logged per frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from bot.spark.auth import redact_url, sign_url
from bot.spark.errors import (
    SparkAuthError,
    SparkError,
    SparkProtocolError,
    SparkTimeout,
    SparkTransportError,
    spark_api_error,
)
from bot.spark.handshake import Handshake
from bot.spark.models import SparkModel
from bot.spark.options import SparkOptions
from bot.spark.protocol import STATUS_LAST, build_request, parse_frame
from bot.spark.retry import RetryPolicy, SparkTimeouts
from bot.spark.types import (
    ChatMessage,
    Completion,
    Finished,
    FunctionCall,
    FunctionCallDelta,
    GenerationOptions,
    ReasoningDelta,
    SearchSource,
    SearchSourcesDelta,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.spark.validation import LOCAL_VALIDATION_CODE, validate_request
from bot.spark.watchdog import ReceiveWatchdog

__all__ = [
    "LOCAL_VALIDATION_CODE",
    "RetryPolicy",
    "SparkClient",
    "SparkOptions",
    "SparkTimeouts",
]

logger = logging.getLogger("bot.spark")

Sleep = Callable[[float], Awaitable[None]]

_TEXT_TYPES = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)


class SparkClient:
    """Streams Spark answers over one WebSocket per request; safe for concurrent use."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        options: SparkOptions,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """``options`` say whom to sign as, where to connect and how long to wait;
        ``sleep`` and ``rng`` drive the retry back-off (tests inject them)."""
        self._session = session
        self._options = options
        self._app_id = options.app_id
        self._api_key = options.api_key
        self._api_secret = options.api_secret
        self.model = options.model
        self._url_override = options.url
        self._timeouts = options.timeouts
        self._retry = options.retry
        self._defaults = options.defaults
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Receive timeouts are enforced per phase by the client itself, not by aiohttp.
        self._ws_timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self._timeouts.close)

    @property
    def options(self) -> SparkOptions:
        return self._options

    @property
    def timeouts(self) -> SparkTimeouts:
        return self._timeouts

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    def endpoint(self, model: SparkModel) -> str:
        """The unsigned WebSocket URL used for ``model``."""
        override = self._url_override
        if override is None:
            return model.url
        parts = urlsplit(override)
        if parts.path not in ("", "/"):
            return override
        return f"{parts.scheme}://{parts.netloc}{model.path}"

    def options_for(self, model: SparkModel) -> GenerationOptions:
        """The default options fitted to ``model``'s ranges (a default set for one model must
        not make another model's requests invalid)."""
        defaults = self._defaults
        max_tokens = defaults.max_tokens
        if max_tokens is not None:
            max_tokens = min(max_tokens, model.max_tokens_limit)
        temperature = defaults.temperature
        if temperature is not None:
            temperature = min(temperature, model.temperature_max)
        return replace(defaults, max_tokens=max_tokens, temperature=temperature)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        uid: str,
        *,
        model: SparkModel | None = None,
        options: GenerationOptions | None = None,
    ) -> Completion:
        """The whole answer at once; raises like :meth:`stream`."""
        text: list[str] = []
        reasoning: list[str] = []
        call: FunctionCall | None = None
        sources: tuple[SearchSource, ...] = ()
        async with aclosing(self.stream(messages, uid, model=model, options=options)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, ReasoningDelta):
                    reasoning.append(event.text)
                elif isinstance(event, FunctionCallDelta):
                    call = event.call
                elif isinstance(event, SearchSourcesDelta):
                    sources += event.sources
                else:
                    return Completion(
                        text="".join(text),
                        reasoning="".join(reasoning),
                        usage=event.usage,
                        sid=event.sid,
                        function_call=call,
                        sources=sources,
                    )
        raise SparkProtocolError("stream ended without a last frame", model=self._name(model))

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        uid: str,
        *,
        model: SparkModel | None = None,
        options: GenerationOptions | None = None,
        on_sid: Callable[[str], None] | None = None,
        ahead: Handshake | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Yield events as frames arrive; the last one is always :class:`Finished`.

        ``on_sid`` is called with Spark's session id as soon as the first frame names it, before
        any event (again for an attempt retried before any event); an HTTP front end puts it in
        a response header.

        Consume it with ``contextlib.aclosing`` when you may stop early, so the socket closes
        at once rather than when the generator is collected. Cancelling the consuming task
        closes the socket (code 1000) and re-raises ``CancelledError``.

        ``ahead``: a socket :meth:`open_ahead` is opening for this model; the first attempt
        sends its request there (a failed opening counts as that attempt's failure). The
        stream owns it from its first step on, and closes it unused if the model differs.
        """
        try:
            inner = self._stream(messages, uid, model, options, on_sid, ahead)
            async with aclosing(inner) as events:
                async for event in events:
                    yield event
        finally:
            if ahead is not None:
                await ahead.aclose()  # nothing once its socket was taken

    def open_ahead(self, model: SparkModel | None = None) -> Handshake:
        """Start opening a socket for a request to ``model`` soon (see
        :mod:`bot.spark.handshake`); pass it to :meth:`stream`, or close it."""
        model = model or self.model
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeouts.total
        opening = loop.create_task(
            self._connect(self.endpoint(model), model, deadline, 1), name="spark-handshake"
        )
        return Handshake(self.endpoint(model), opening)

    async def _stream(
        self,
        messages: Sequence[ChatMessage],
        uid: str,
        model: SparkModel | None,
        options: GenerationOptions | None,
        on_sid: Callable[[str], None] | None,
        ahead: Handshake | None,
    ) -> AsyncGenerator[StreamEvent, None]:
        model = model or self.model
        options = options if options is not None else self.options_for(model)
        validate_request(model, messages, uid, options)
        request = build_request(
            model, app_id=self._app_id, uid=uid, messages=messages, options=options
        )
        payload = json.dumps(request, ensure_ascii=False, separators=(",", ":"))
        url = self.endpoint(model)
        if ahead is not None and ahead.url != url:
            await ahead.aclose()  # opened for another model: the chat switched meanwhile
            ahead = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeouts.total
        first_frame_timeout = self._timeouts.first_frame
        idle_timeout = self._timeouts.idle
        total_timeout = self._timeouts.total
        name = model.name
        attempt = 0
        while True:
            attempt += 1
            sid = ""
            parts: list[str] = []
            yielded = False
            frames = 0
            try:
                if ahead is not None and attempt == 1:
                    ws = await ahead.socket()
                else:
                    ws = await self._connect(url, model, deadline, attempt)
                watchdog = ReceiveWatchdog(loop)
                try:
                    await ws.send_str(payload)
                    sent = loop.time()
                    first_frame_at = sent
                    phase, phase_timeout = "first_frame", first_frame_timeout
                    while True:
                        when = loop.time() + phase_timeout
                        if when >= deadline:
                            when, phase, phase_timeout = deadline, "total", total_timeout
                        watchdog.arm(when)
                        try:
                            message = await ws.receive()
                        except asyncio.CancelledError:
                            if watchdog.expired():
                                raise SparkTimeout(phase, phase_timeout) from None
                            raise
                        finally:
                            watchdog.disarm()
                        if message.type not in _TEXT_TYPES:
                            raise _closed_early(message, ws.close_code)
                        frame = parse_frame(message.data)
                        if not frames:
                            first_frame_at = loop.time()
                            phase, phase_timeout = "idle", idle_timeout
                        frames += 1
                        if not sid:
                            sid = frame.sid
                            if sid and on_sid is not None:
                                on_sid(sid)
                        if frame.code:
                            raise spark_api_error(frame.code, frame.message, sid=frame.sid or sid)
                        if frame.sources:
                            yielded = True
                            yield SearchSourcesDelta(frame.sources)
                        if frame.reasoning:
                            yielded = True
                            yield ReasoningDelta(frame.reasoning)
                        if frame.content:
                            parts.append(frame.content)
                            yielded = True
                            yield TextDelta(frame.content)
                        if frame.function_call is not None:
                            yielded = True
                            yield FunctionCallDelta(frame.function_call)
                        if frame.status == STATUS_LAST:
                            usage = frame.usage or Usage()
                            break
                finally:
                    watchdog.close()
                    await ws.close(code=aiohttp.WSCloseCode.OK)
            except SparkError as error:
                _attach(error, sid=sid, model=name, partial_text="".join(parts))
                retry = not yielded and error.retryable and attempt < self._retry.max_attempts
                delay = self._retry.delay(attempt, self._rng) if retry else 0.0
                if retry and loop.time() + delay < deadline:
                    logger.warning(
                        "spark attempt %d/%d failed, retrying in %.2f s: model=%s sid=%s: %s",
                        attempt,
                        self._retry.max_attempts,
                        delay,
                        name,
                        error.sid,
                        error,
                    )
                    await self._sleep(delay)
                    continue
                logger.warning(
                    "spark request failed: model=%s sid=%s attempts=%d after=%.3fs "
                    "partial_chars=%d: %s",
                    name,
                    error.sid,
                    attempt,
                    loop.time() - started,
                    len(error.partial_text),
                    error,
                )
                raise
            except asyncio.CancelledError:
                logger.info(
                    "spark stream cancelled: model=%s sid=%s frames=%d", name, sid or None, frames
                )
                raise
            logger.info(
                "spark answer: model=%s sid=%s attempts=%d frames=%d chars=%d "
                "first_frame=%.3fs total=%.3fs tokens=%d",
                name,
                sid,
                attempt,
                frames,
                sum(map(len, parts)),
                first_frame_at - sent,
                loop.time() - started,
                usage.total_tokens,
            )
            yield Finished(usage=usage, sid=sid)
            return

    async def _connect(
        self, url: str, model: SparkModel, deadline: float, attempt: int
    ) -> aiohttp.ClientWebSocketResponse:
        """Open the WebSocket for one attempt, translating every failure."""
        loop = asyncio.get_running_loop()
        signed = sign_url(url, self._api_key, self._api_secret)
        when, phase, seconds = _budget(
            loop.time(), self._timeouts.connect, deadline, self._timeouts.total
        )
        logger.debug(
            "spark connect: model=%s url=%s attempt=%d", model.name, redact_url(url), attempt
        )
        try:
            async with asyncio.timeout_at(when):
                return await self._session.ws_connect(
                    URL(signed, encoded=True), timeout=self._ws_timeout, autoping=True
                )
        except TimeoutError:
            raise SparkTimeout(phase, seconds) from None
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status
            if status in (401, 403):
                refusal = await self._refusal_message(url, status, when)
                raise SparkAuthError(status, refusal) from None
            error = SparkTransportError(f"WebSocket handshake failed: HTTP {status} {exc.message}")
            # 404 and friends mean a wrong URL; only server-side trouble may clear up.
            error.retryable = status >= 500 or status == 429
            raise error from None
        except aiohttp.ClientSSLError as exc:
            # Certificate problems do not heal on retry, and verification stays on.
            error = SparkTransportError(f"TLS failure: {_describe(exc, signed)}")
            error.retryable = False
            raise error from _safe_cause(exc, signed)
        except (aiohttp.ClientError, OSError) as exc:
            error = SparkTransportError(f"could not connect: {_describe(exc, signed)}")
            raise error from _safe_cause(exc, signed)

    async def _refusal_message(self, url: str, status: int, when: float) -> str:
        """The gateway's ``message`` for a refused handshake, read with a plain GET."""
        signed = sign_url(url, self._api_key, self._api_secret)
        loop = asyncio.get_running_loop()
        try:
            async with (
                asyncio.timeout_at(max(when, loop.time() + 1.0)),
                self._session.get(URL(signed, encoded=True), allow_redirects=False) as response,
            ):
                body = await response.read()
                same = response.status == status
        except (TimeoutError, aiohttp.ClientError, OSError):
            return f"HTTP {status}"
        # A different answer this time (the refusal was transient) says nothing about the first.
        return (_json_message(body) if same else "") or f"HTTP {status}"

    def _name(self, model: SparkModel | None) -> str:
        return (model or self.model).name


def _budget(now: float, seconds: float, deadline: float, total: float) -> tuple[float, str, float]:
    """(absolute deadline, phase, seconds) for a connect that must also fit the total."""
    when = now + seconds
    if when >= deadline:
        return deadline, "total", total
    return when, "connect", seconds


def _attach(error: SparkError, *, sid: str, model: str, partial_text: str) -> None:
    """Fill in the context an error was raised without (inner code does not know it)."""
    if not error.sid and sid:
        error.sid = sid
    if error.model is None:
        error.model = model
    if not error.partial_text:
        error.partial_text = partial_text


def _closed_early(message: aiohttp.WSMessage, close_code: int | None) -> SparkTransportError:
    if message.type is aiohttp.WSMsgType.ERROR:
        return SparkTransportError(f"WebSocket error before the last frame: {message.data!r}")
    return SparkTransportError(
        f"connection closed before the last frame (close code {close_code})"
    )


def _describe(exc: BaseException, signed_url: str) -> str:
    """``exc`` as text with the signed query removed, whatever aiohttp put in it."""
    text = f"{type(exc).__name__}: {exc}"
    query = urlsplit(signed_url).query
    return text.replace(query, "…") if query else text


def _safe_cause(cause: BaseException, signed_url: str) -> BaseException | None:
    """``cause`` to chain, or None when its text carries the signed query (tracebacks get
    logged, and aiohttp puts the full URL into some of its exceptions)."""
    query = urlsplit(signed_url).query
    if query and query in f"{cause!s}{cause!r}":
        return None
    return cause


def _json_message(body: bytes) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:300]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return ""
