"""What a conversation's answer looks like on the wire, for SSE and the WebSocket alike.

Each :class:`~bot.service.answer_feed.FeedEntry` becomes a named event with a JSON body:
``delta`` and ``reasoning`` (``{"text"}``), ``sources`` (``{"sources": [{index, title,
url}]}``), ``error`` (``{"code", "message", "retry_after", "spark_code"}``) and last
``done`` (``{"message_id", "question_id", "status", "usage", "note"}``). Function calls have
no place in a conversation and are not sent.

Event ids are ``QUESTION:SEQ:OFFSET``: the question whose answer it is, the entry's number in
the answer's log, and how many characters of answer text the reader has once it has this
event. A reader who comes back with the id of the last event it saw gets the entries after
``SEQ`` while the answer is written, or the stored answer's text after ``OFFSET`` once it is
stored (:func:`stored_events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.service.answer_feed import AnswerStored, FeedEntry
from bot.service.events import Failed, ReasoningDelta, SourcesFound, TextDelta
from bot.spark.errors import SparkAPIError, SparkError
from bot.spark.types import Usage
from bot.web.errors import api_error
from storage.dto import MessageStatus, StoredMessage


@dataclass(frozen=True, slots=True)
class EventId:
    question_id: int
    seq: int
    offset: int

    def __str__(self) -> str:
        return f"{self.question_id}:{self.seq}:{self.offset}"


def parse_event_id(value: str | None) -> EventId | None:
    """An id this server wrote, or None for anything else (then nothing is resumed)."""
    if not value:
        return None
    parts = value.strip().split(":")
    if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    question, seq, offset = (int(part) for part in parts)
    return EventId(question, seq, offset)


def usage_body(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def error_body(failed: Failed) -> dict[str, Any]:
    error = api_error(failed.error)
    exc = failed.error
    return {
        "code": error.code or error.kind,
        "message": failed.note or error.message,
        "retry_after": error.retry_after,
        "spark_code": exc.code if isinstance(exc, SparkAPIError) else None,
        "sid": exc.sid if isinstance(exc, SparkError) else None,
    }


def done_body(question_id: int, stored: AnswerStored) -> dict[str, Any]:
    return {
        "message_id": stored.message_id,
        "question_id": question_id,
        "status": stored.status.value,
        "usage": usage_body(stored.usage),
        "note": stored.note,
    }


def entry_event(question_id: int, entry: FeedEntry) -> tuple[str, dict[str, Any]] | None:
    """(name, body) of one entry, or None for what a conversation does not show."""
    item = entry.item
    if isinstance(item, TextDelta):
        return "delta", {"text": item.text}
    if isinstance(item, ReasoningDelta):
        return "reasoning", {"text": item.text}
    if isinstance(item, SourcesFound):
        sources = [
            {"index": source.index, "title": source.title, "url": source.url}
            for source in item.sources
        ]
        return "sources", {"sources": sources}
    if isinstance(item, Failed):
        return "error", error_body(item)
    if isinstance(item, AnswerStored):
        return "done", done_body(question_id, item)
    return None


def stored_events(
    question_id: int, message: StoredMessage | None, offset: int
) -> list[tuple[EventId, str, dict[str, Any]]]:
    """A stored answer told to a reader who already has ``offset`` characters of it: the
    rest as one ``delta``, then ``done``."""
    events: list[tuple[EventId, str, dict[str, Any]]] = []
    if message is None or message.status is MessageStatus.STREAMING:
        # Not stored (or still streaming in a process that died): nothing more to tell.
        status = MessageStatus.FAILED if message is None else MessageStatus.PARTIAL
        stored = AnswerStored(message.id if message else None, status)
        return [(EventId(question_id, 1, offset), "done", done_body(question_id, stored))]
    text = message.content
    seq = 1
    if len(text) > offset:
        events.append((EventId(question_id, seq, len(text)), "delta", {"text": text[offset:]}))
        seq += 1
    stored = AnswerStored(message.id, message.status)
    end = EventId(question_id, seq, max(offset, len(text)))
    events.append((end, "done", done_body(question_id, stored)))
    return events
