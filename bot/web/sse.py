"""Server-sent events as the HTML standard frames them, for the conversation API.

An event is ``id:``, ``event:`` and one ``data:`` line of compact JSON (JSON escapes line
breaks, so one line always holds it), ended by a blank line; a ``: keep-alive`` comment goes
out while the answer is silent, so proxies and browsers keep the connection. Each write holds
whole events only. :func:`stream_feed` follows an answer's feed and writes what has come
since the last write in one go, so a slow reader only delays itself: the answer is written
into the feed whatever readers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from bot.service.answer_feed import AnswerFeed, FeedEntry
from bot.service.clock import Clock, Timer
from bot.service.events import TextDelta
from bot.web.conversation_events import EventId, entry_event

KEEPALIVE = b": keep-alive\n\n"
# Timers may run up to the loop's clock resolution early: this close to due counts as due.
_EARLY = 1e-3
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
    await response.prepare(request)
    return response


async def write_events(
    response: web.StreamResponse, events: Iterable[tuple[EventId, str, dict[str, Any]]]
) -> None:
    await response.write(b"".join(encode_event(*event) for event in events))


async def stream_feed(
    response: web.StreamResponse,
    feed: AnswerFeed,
    *,
    after: int,
    keepalive: float,
    clock: Clock,
) -> bool:
    """Write the feed's entries after ``after`` until its end (the last write ends the
    response too); False when the reader hung up first."""
    with feed.reading():
        return await _FeedWriter(response, feed, keepalive, clock).run(after)


class _FeedWriter:
    """The one writer of one SSE response: each wake-up writes every entry that came since
    the last write in one go, each entry's bytes encoded once for all readers of the feed
    (:attr:`AnswerFeed.renderings`). The keep-alive costs one timer per keep-alive period,
    not one per entry: the timer, when it fires, either finds the stream silent for the
    period and wakes the writer for a comment, or re-arms itself for the rest of it."""

    __slots__ = ("_clock", "_feed", "_idle", "_keepalive", "_last_write", "_response", "_timer")

    def __init__(
        self, response: web.StreamResponse, feed: AnswerFeed, keepalive: float, clock: Clock
    ) -> None:
        self._response = response
        self._feed = feed
        self._keepalive = keepalive
        self._clock = clock
        self._last_write = clock.now()
        self._timer: Timer | None = None
        self._idle: asyncio.Future[None] | None = None  # the wait the timer may end

    async def run(self, after: int) -> bool:
        feed = self._feed
        encoded = feed.renderings.setdefault("sse", [])
        seq = after
        loop = asyncio.get_running_loop()
        try:
            while True:
                size = feed.size
                if size > seq:
                    if len(encoded) < size:
                        question = feed.question_id
                        encoded.extend(
                            encode_entry(question, entry) or b""
                            for entry in feed.after(len(encoded))
                        )
                    data = encoded[seq] if size == seq + 1 else b"".join(encoded[seq:size])
                    seq = size
                    if feed.ended and seq == feed.size:
                        return await self._write(data, last=True)
                    if data and not await self._write(data):
                        return False
                    continue
                if feed.ended:
                    return True
                waiter: asyncio.Future[None] = loop.create_future()
                feed.wake_on_change(waiter)
                self._idle = waiter
                if self._timer is None:
                    self._arm()
                await waiter
                if self._idle is None:  # the timer ended the wait: a keep-alive is due
                    feed.forget(waiter)
                    if not await self._write(KEEPALIVE):
                        return False
                self._idle = None
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _arm(self) -> None:
        due = self._last_write + self._keepalive - self._clock.now()
        self._timer = self._clock.call_later(due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        idle = self._idle
        if idle is None or idle.done():
            return  # writing, or about to: the next wait arms the timer again
        if self._clock.now() - self._last_write + _EARLY >= self._keepalive:
            self._idle = None
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
