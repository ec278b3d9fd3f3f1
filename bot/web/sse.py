"""Server-sent events as the HTML standard frames them, for the conversation API.

An event is ``id:``, ``event:`` and one ``data:`` line of compact JSON (JSON escapes line
breaks, so one line always holds it), ended by a blank line; a ``: keep-alive`` comment goes
out while the answer is silent, so proxies and browsers keep the connection. Each write holds
whole events only. :func:`stream_feed` follows an answer's feed: a text delta written into it
while the reader has everything before goes into the socket's buffer at once, in the step
that wrote it into the feed; otherwise what has come since the last write is written in one
go. A slow reader only delays itself: the answer is written into the feed whatever readers
do, and a reader whose socket's buffer is filling is written by its own task, which waits for
the buffer to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import HttpVersion11, web

from bot.service.answer_feed import AnswerFeed, FeedEntry
from bot.service.clock import Clock, Timer
from bot.service.events import TextDelta
from bot.web.conversation_events import EventId, entry_event

KEEPALIVE = b": keep-alive\n\n"
# Timers may run up to the loop's clock resolution early: this close to due counts as due.
_EARLY = 1e-3
# A delta is pushed into the socket's buffer only while it holds less than this (a reader
# keeping up); beyond it the writer's task waits for the buffer to drain, as for any write.
PUSH_LIMIT = 16 * 1024
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx would otherwise hold the events back
}


def encode_event(event_id: EventId | str | None, name: str, body: dict[str, Any]) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {name}")
    lines.append("data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def encode_entry(question_id: int, entry: FeedEntry) -> bytes | None:
    """One feed entry as an event, or None for what a conversation does not show. A text
    delta, nearly every event, is framed from constants and its text's JSON alone (a third of
    the cost of building the body and framing it line by line)."""
    item = entry.item
    if type(item) is TextDelta:
        text = json.dumps(item.text, ensure_ascii=False)
        head = f"id: {question_id}:{entry.seq}:{entry.offset}\nevent: delta\ndata: "
        return (head + '{"text":' + text + "}\n\n").encode()
    event = entry_event(question_id, entry)
    if event is None:
        return None
    name, body = event
    return encode_event(EventId(question_id, entry.seq, entry.offset), name, body)


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    if request.version >= HttpVersion11:
        response.enable_chunked_encoding()  # what HTTP/1.1 gets anyway; said so for pushes
    await response.prepare(request)
    return response


async def write_events(
    response: web.StreamResponse, events: Iterable[tuple[EventId, str, dict[str, Any]]]
) -> None:
    await response.write(b"".join(encode_event(*event) for event in events))


async def stream_feed(
    request: web.Request,
    response: web.StreamResponse,
    feed: AnswerFeed,
    *,
    after: int,
    keepalive: float,
    clock: Clock,
) -> bool:
    """Write the feed's entries after ``after`` until its end (the last write ends the
    response too); False when the reader hung up first."""
    # Pushed deltas are framed as HTTP chunks here: only on a response known to be chunked.
    transport = request.transport if response.chunked else None
    with feed.reading():
        return await _FeedWriter(response, transport, feed, keepalive, clock).run(after)


class _FeedWriter:
    """The one writer of one SSE response, each entry's bytes encoded once for all readers
    of the feed (:attr:`AnswerFeed.renderings`).

    A text delta written into the feed while this reader has everything before it goes
    straight into the socket's buffer from the feed's listener, in the same step that
    wrote it into the feed (no wake-up of this task, no extra turn of the loop). Anything
    else, or a reader behind (its socket's buffer over :data:`PUSH_LIMIT`: a slow reader
    only delays itself), wakes the task, which writes every entry that came since its last
    write in one go. The keep-alive costs one timer per keep-alive period, not one per
    entry: the timer, when it fires, either finds the stream silent for the period and
    wakes the task for a comment, or re-arms itself for the rest of it."""

    __slots__ = (
        "_clock",
        "_encoded",
        "_feed",
        "_idle",
        "_keepalive",
        "_keepalive_due",
        "_last_write",
        "_response",
        "_seq",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        response: web.StreamResponse,
        transport: asyncio.Transport | None,
        feed: AnswerFeed,
        keepalive: float,
        clock: Clock,
    ) -> None:
        self._response = response
        self._transport = transport
        self._feed = feed
        self._encoded = feed.renderings.setdefault("sse", [])
        self._seq = 0
        self._keepalive = keepalive
        self._clock = clock
        self._last_write = clock.now()
        self._timer: Timer | None = None
        self._idle: asyncio.Future[None] | None = None  # the task's wait, while it waits
        self._keepalive_due = False

    async def run(self, after: int) -> bool:
        feed = self._feed
        self._seq = after
        loop = asyncio.get_running_loop()
        feed.listen(self._entry_written)
        try:
            while True:
                size = feed.size
                if size > self._seq:
                    data = self._take(size)
                    if feed.ended and size == feed.size:
                        return await self._write(data, last=True)
                    if data and not await self._write(data):
                        return False
                    continue
                if feed.ended:
                    return True
                self._idle = loop.create_future()
                if self._timer is None:
                    self._arm()
                try:
                    await self._idle
                finally:
                    self._idle = None
                if self._keepalive_due:
                    self._keepalive_due = False
                    if not await self._write(KEEPALIVE):
                        return False
        finally:
            feed.unlisten(self._entry_written)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _take(self, size: int) -> bytes:
        """The bytes of the entries after the last written up to ``size``, marked written."""
        encoded = self._encoded
        if len(encoded) < size:
            question = self._feed.question_id
            encoded.extend(
                encode_entry(question, entry) or b"" for entry in self._feed.after(len(encoded))
            )
        seq, self._seq = self._seq, size
        return encoded[seq] if size == seq + 1 else b"".join(encoded[seq:size])

    def _entry_written(self) -> None:
        """The feed's listener: push the entry, or wake the task if it waits."""
        idle = self._idle
        if idle is None or idle.done():
            return  # the task is awake (writing) and takes the entry along
        if not self._push():
            idle.set_result(None)

    def _push(self) -> bool:
        transport = self._transport
        feed = self._feed
        entry = feed.last
        if (
            transport is None
            or entry is None
            or entry.seq != self._seq + 1
            or type(entry.item) is not TextDelta
            or transport.is_closing()
            or transport.get_write_buffer_size() > PUSH_LIMIT
        ):
            return False
        written = self._seq
        data = self._take(entry.seq)
        try:
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))  # one HTTP chunk
        except (ConnectionError, RuntimeError):  # left to the task, which finds the reader gone
            self._seq = written
            return False
        self._last_write = self._clock.now()
        return True

    def _arm(self) -> None:
        due = self._last_write + self._keepalive - self._clock.now()
        self._timer = self._clock.call_later(due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        idle = self._idle
        if idle is None or idle.done():
            return  # writing, or about to: the next wait arms the timer again
        if self._clock.now() - self._last_write + _EARLY >= self._keepalive:
            self._keepalive_due = True
            idle.set_result(None)
        else:
            self._arm()

    async def _write(self, data: bytes, *, last: bool = False) -> bool:
        self._last_write = self._clock.now()
        response = self._response
        try:
            if last:
                await response.write_eof(data)
            else:
                await response.write(data)
        except (ConnectionError, RuntimeError):  # "cannot write to closing transport"
            return False
        return True


async def end_stream(response: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
