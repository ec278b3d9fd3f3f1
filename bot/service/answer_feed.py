"""One answer as a numbered log that any number of readers follow, from any point.

:class:`AnswerFeed` is the :class:`~bot.service.events.AnswerSink` of a web answer. The
service writes into it without ever waiting (Spark is never held up by a reader); each event
becomes a :class:`FeedEntry` with a sequence number and the length of the answer text so far,
and readers (an SSE response, a WebSocket, a reconnecting client) :meth:`~AnswerFeed.follow`
it from the entry after the last one they saw. The last entry is always
:class:`AnswerStored`: the answer's row as stored, so a reader told "done" can rely on it.

Readers either wait for the next entry (:meth:`~AnswerFeed.changed`, a future the next
entry resolves: no event object per entry) or :meth:`~AnswerFeed.listen`: a listener is
called at each entry, as it is written, and may write it out at once (it must not wait for
anything; see :mod:`bot.web.sse`). Readers of one front end share
what they derive from the entries (:attr:`~AnswerFeed.renderings`, e.g. each entry's SSE
bytes), so an entry is encoded once however many follow it.

A feed knows how many readers it has. When the last one leaves before the end,
:meth:`~AnswerFeed.wait_abandoned` returns after the grace period unless someone came back
in between; the owner then cancels the answer, which is stored as partial.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bot.service.clock import SYSTEM_CLOCK, Clock
from bot.service.events import Delivery, Ending, Failed, Finished, StreamEvent, TextDelta
from bot.spark.types import Usage
from storage.dto import MessageStatus


@dataclass(frozen=True, slots=True)
class AnswerStored:
    """The end of every feed: the answer as stored (``message_id`` None when no answer row
    was written, e.g. the process is shutting down and the database is gone)."""

    message_id: int | None
    status: MessageStatus
    usage: Usage | None = None
    note: str | None = None


FeedItem = StreamEvent | Failed | AnswerStored


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One item of the log: ``seq`` counts from 1, ``offset`` is the number of answer
    characters written up to and including this entry."""

    seq: int
    offset: int
    item: FeedItem


class AnswerFeed:
    """The log of one answer; see the module docstring."""

    def __init__(self, question_id: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.question_id = question_id
        self._clock = clock
        self._entries: list[FeedEntry] = []
        self._offset = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._listeners: list[Callable[[], None]] = []
        # Each entry as a front end renders it, by front end, in entry order (see above).
        self.renderings: dict[str, list[bytes]] = {}
        self._readers = 0
        self._had_reader = False
        self._readers_changed = asyncio.Event()
        self._ended = False
        self._abandoned = False
        self.ending: Ending | None = None

    # -- the writer's side (AnswerSink) ------------------------------------------------------

    @property
    def gone(self) -> bool:
        return self._abandoned

    def abandon(self) -> None:
        """Nobody reads any more (see :meth:`wait_abandoned`): the answer is cut short."""
        self._abandoned = True

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def text(self) -> str:
        return "".join(
            entry.item.text for entry in self._entries if isinstance(entry.item, TextDelta)
        )

    async def start(self) -> None:
        return None

    def event(self, event: StreamEvent) -> None:
        self._append(event)

    async def finish(self, ending: Ending) -> Delivery:
        self.ending = ending
        if isinstance(ending, Failed):
            self._append(ending)
        return Delivery()

    async def aclose(self) -> None:
        return None

    def stored(self, stored: AnswerStored) -> None:
        """The last entry: the answer's row is written."""
        if not self._ended:
            self._append(stored)
            self._ended = True

    def note(self) -> str | None:
        """The reader's note of the ending (why it stopped), if any."""
        ending = self.ending
        return ending.note if isinstance(ending, Finished | Failed) else None

    def _append(self, item: FeedItem) -> None:
        if self._ended:
            return
        if isinstance(item, TextDelta):
            self._offset += len(item.text)
        self._entries.append(FeedEntry(len(self._entries) + 1, self._offset, item))
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for listener in self._listeners:
            listener()

    # -- the readers' side -------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Count a reader for as long as the block runs."""
        self._readers += 1
        self._had_reader = True
        self._readers_changed.set()
        try:
            yield
        finally:
            self._readers -= 1
            self._readers_changed.set()

    @property
    def size(self) -> int:
        """The number of entries written so far (the last one's ``seq``)."""
        return len(self._entries)

    def after(self, seq: int) -> list[FeedEntry]:
        """The entries after ``seq`` written so far."""
        return self._entries[max(0, seq) :]

    @property
    def last(self) -> FeedEntry | None:
        return self._entries[-1] if self._entries else None

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` right after each entry is written, until :meth:`unlisten`."""
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[], None]) -> None:
        self._listeners.remove(listener)

    async def changed(self) -> None:
        """Wait for the next entry."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def follow(self, after: int = 0) -> AsyncIterator[FeedEntry]:
        """Every entry after ``after``, as it comes, up to and including the stored end."""
        with self.reading():
            seq = after
            while True:
                for entry in self.after(seq):
                    seq = entry.seq
                    yield entry
                if self._ended and seq >= len(self._entries):
                    return
                await self.changed()

    async def wait_abandoned(self, grace: float) -> None:
        """Return once the feed has had no reader for ``grace`` seconds in a row (never
        returns while someone reads or before the first reader left)."""
        while True:
            self._readers_changed.clear()
            if self._readers or not self._had_reader:
                await self._readers_changed.wait()
                continue
            try:
                async with self._clock.timeout(grace):
                    await self._readers_changed.wait()
            except TimeoutError:
                if not self._readers:
                    return
