"""Answers in OpenAI's shapes: ``chat.completion.chunk`` server-sent events, or one
``chat.completion`` object.

:class:`SseSink` is the service's :class:`~bot.service.events.AnswerSink` for ``stream:
true``. Its ``event`` only encodes a chunk and queues the bytes; one writer task per stream
writes what has queued, each event whole (``data: {json}\\n\\n``), so a slow client never
holds Spark up and several deltas that arrive together leave in one write. The response is
committed (status 200, headers) with the first chunk, or with the first keep-alive comment
when Spark stays silent for ``keepalive`` seconds: a failure before that is still answered
with its own HTTP status, after it as a final ``data: {"error": ...}`` event.

:class:`CollectingSink` gathers the answer for ``stream: false``; :func:`completion_body`
writes it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.service.events import (
    Delivery,
    Ending,
    Failed,
    Finished,
    FunctionCalled,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
)
from bot.spark.errors import SparkContentBlocked
from bot.spark.types import FunctionCall, Usage
from bot.web.errors import SID_HEADER, api_error

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
# A client that reads nothing while this much waits is treated as gone.
MAX_BUFFERED_BYTES = 4 * 1024 * 1024
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx would otherwise hold the events back
}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(18)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def openai_usage(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def finish_reason(ending: Ending, called: bool, max_tokens: int) -> str:
    """``tool_calls``, ``content_filter`` (Spark's audit cut the answer), ``length`` (the
    answer used all of ``max_tokens``) or ``stop``."""
    if called:
        return "tool_calls"
    if isinstance(ending, Failed):
        return "content_filter"
    usage = ending.usage
    if usage is not None and usage.completion_tokens >= max_tokens:
        return "length"
    return "stop"


def tool_call(call: FunctionCall, call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def ends_as_answer(ending: Ending, started: bool) -> bool:
    """Whether ``ending`` is told as a finished answer: success, or Spark's audit cutting an
    answer already under way (OpenAI's ``content_filter``), rather than as an error."""
    if isinstance(ending, Finished):
        return True
    return started and isinstance(ending.error, SparkContentBlocked)


@dataclass(frozen=True, slots=True)
class ChunkFormat:
    """What every chunk of one answer shares."""

    completion_id: str
    created: int
    model: str
    include_usage: bool
    # Around the JSON string of a text delta: built once, since a delta is on the hot path.
    _head: bytes = field(init=False, repr=False, compare=False)
    _tail: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        marker = "\x00"
        whole = self.chunk({"content": marker}).decode()
        head, tail = whole.split(_dumps(marker), 1)
        object.__setattr__(self, "_head", head.removesuffix('"content":').encode())
        object.__setattr__(self, "_tail", tail.encode())

    def text(self, key: str, text: str) -> bytes:
        """The chunk of one ``content`` or ``reasoning_content`` delta."""
        return self._head + _dumps(key).encode() + b":" + _dumps(text).encode() + self._tail

    def chunk(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
        }
        if self.include_usage:
            body["usage"] = None
        return b"data: " + _dumps(body).encode() + b"\n\n"

    def usage_chunk(self, usage: Usage | None) -> bytes:
        body = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": openai_usage(usage),
        }
        return b"data: " + _dumps(body).encode() + b"\n\n"


class SseSink:
    """``stream: true``: chunks written as they come; see the module docstring."""

    def __init__(
        self,
        request: web.Request,
        fmt: ChunkFormat,
        *,
        max_tokens: int,
        keepalive: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._request = request
        self._fmt = fmt
        self._max_tokens = max_tokens
        self._keepalive = keepalive
        self._headers = {**SSE_HEADERS, **(headers or {})}
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._called = False
        self._role_sent = False
        self._gone = False
        self.response: web.StreamResponse | None = None
        # A failure before anything was committed: the handler answers it with its status.
        self.failure: Failed | None = None

    @property
    def gone(self) -> bool:
        return self._gone

    @property
    def committed(self) -> bool:
        return self.response is not None

    def name_session(self, sid: str) -> None:
        """Spark's session id, sent as ``X-Spark-Sid`` unless the headers already went out
        (a keep-alive while Spark said nothing yet)."""
        if self.response is None:
            self._headers[SID_HEADER] = sid

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="sse-writer")

    def event(self, event: StreamEvent) -> None:
        fmt = self._fmt
        if not self._role_sent:
            self._role_sent = True
            self._queue(fmt.chunk({"role": "assistant", "content": ""}))
        if isinstance(event, TextDelta):
            self._queue(fmt.text("content", event.text))
        elif isinstance(event, ReasoningDelta):
            self._queue(fmt.text("reasoning_content", event.text))
        elif isinstance(event, FunctionCalled):
            call = {"index": 0, **tool_call(event.call, new_call_id())}
            self._called = True
            self._queue(fmt.chunk({"tool_calls": [call]}))
        # Search sources have no place in a chat completion; the gateway asks for none.

    def _queue(self, data: bytes) -> None:
        if self._gone:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED_BYTES:
            self._gone = True  # the client stopped reading
        self._wake.set()

    async def finish(self, ending: Ending) -> Delivery:
        started = self._role_sent
        if isinstance(ending, Failed) and not started:
            await self._stop_writer()
            if self.response is None:
                self.failure = ending  # nothing committed: answered with its own status
                return Delivery(complete=False)
            self._writer = asyncio.create_task(self._write_loop(), name="sse-writer")
        fmt = self._fmt
        if ends_as_answer(ending, started):
            if not self._role_sent:
                self._role_sent = True
                self._queue(fmt.chunk({"role": "assistant", "content": ""}))
            reason = finish_reason(ending, self._called, self._max_tokens)
            self._queue(fmt.chunk({}, reason))
            if fmt.include_usage:
                usage = ending.usage if isinstance(ending, Finished) else None
                self._queue(fmt.usage_chunk(usage))
            self._queue(DONE)
        else:
            assert isinstance(ending, Failed)
            error = api_error(ending.error)
            self._queue(b"data: " + _dumps(error.body()).encode() + b"\n\n")
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        return Delivery(complete=not self._gone, gone=self._gone)

    async def aclose(self) -> None:
        await self._stop_writer()

    async def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_loop(self) -> None:
        while True:
            if not self._buffer and not self._closing:
                try:
                    async with asyncio.timeout(self._keepalive):
                        await self._wake.wait()
                except TimeoutError:
                    self._buffer.append(KEEPALIVE)
            self._wake.clear()
            if self._buffer:
                data = b"".join(self._buffer)
                self._buffer.clear()
                self._buffered = 0
                try:
                    response = await self._commit()
                    await response.write(data)
                except (ConnectionError, RuntimeError):
                    # The client hung up ("cannot write to closing transport").
                    self._gone = True
                    return
            if self._closing and not self._buffer:
                return

    async def _commit(self) -> web.StreamResponse:
        if self.response is None:
            response = web.StreamResponse(status=200, headers=self._headers)
            await response.prepare(self._request)
            self.response = response
        return self.response


@dataclass(slots=True)
class CollectingSink:
    """``stream: false``: the answer gathered whole."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[FunctionCall] = field(default_factory=list)
    ending: Ending | None = None

    @property
    def gone(self) -> bool:
        return False

    async def start(self) -> None:
        return None

    def event(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, FunctionCalled):
            self.calls.append(event.call)

    async def finish(self, ending: Ending) -> Delivery:
        self.ending = ending
        return Delivery()

    async def aclose(self) -> None:
        return None

    @property
    def started(self) -> bool:
        return bool(self.text or self.reasoning or self.calls)


def completion_body(
    sink: CollectingSink, *, completion_id: str, created: int, model: str, max_tokens: int
) -> dict[str, Any]:
    """The ``chat.completion`` object of a finished (or audit-cut) answer."""
    ending = sink.ending
    assert ending is not None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(sink.text) or None}
    if sink.reasoning:
        message["reasoning_content"] = "".join(sink.reasoning)
    if sink.calls:
        message["tool_calls"] = [tool_call(call, new_call_id()) for call in sink.calls]
    elif message["content"] is None:
        message["content"] = ""
    usage = ending.usage if isinstance(ending, Finished) else None
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(ending, bool(sink.calls), max_tokens),
            }
        ],
        "usage": openai_usage(usage),
    }
