"""Server-sent events as the HTML standard frames them, for the conversation API.

An event is ``id:``, ``event:`` and one ``data:`` line of compact JSON (JSON escapes line
breaks, so one line always holds it), ended by a blank line; a ``: keep-alive`` comment goes
out while the answer is silent, so proxies and browsers keep the connection. Each write holds
whole events only. :func:`stream_feed` follows an answer's feed and writes what has come
since the last write in one go, so a slow reader only delays itself: the answer is written
into the feed whatever readers do.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from bot.service.answer_feed import AnswerFeed, FeedEntry
from bot.service.clock import Clock
from bot.service.events import TextDelta
from bot.web.conversation_events import EventId, entry_event

KEEPALIVE = b": keep-alive\n\n"
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
    """Write the feed's entries after ``after`` until its end; False when the reader hung
    up first."""
    question = feed.question_id
    seq = after
    with feed.reading():
        while True:
            batch = feed.after(seq)
            if batch:
                data = [
                    encoded
                    for entry in batch
                    if (encoded := encode_entry(question, entry)) is not None
                ]
                seq = batch[-1].seq
                if data and not await _write(response, b"".join(data)):
                    return False
                continue
            if feed.ended:
                return True
            try:
                async with clock.timeout(keepalive):
                    await feed.changed()
            except TimeoutError:
                if not await _write(response, KEEPALIVE):
                    return False


async def _write(response: web.StreamResponse, data: bytes) -> bool:
    try:
        await response.write(data)
    except (ConnectionError, RuntimeError):  # "cannot write to closing transport"
        return False
    return True


async def end_stream(response: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
