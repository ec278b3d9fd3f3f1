"""Checkpoints of one answer's partial text, written beside its stream.

A checkpoint is only a safety net for a process that dies mid-answer, so the stream never
waits for one: :meth:`Checkpoints.due` starts a write in a task of its own when the interval
has passed, and skips that interval while the previous write is still in flight (at most one
per answer). Before the final text is stored, :meth:`Checkpoints.settle` waits for the one in
flight, so a stale checkpoint never lands after the final text (storage refuses one that does
too: it only updates a row still ``streaming``). Leaving the ``async with`` block cancels a
write still running, so no task outlives its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import TracebackType


class Checkpoints:
    """The checkpoints of one answer; see the module docstring."""

    def __init__(
        self,
        write: Callable[[str], Coroutine[object, object, None]],
        *,
        interval: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._write = write
        self._interval = interval
        self._monotonic = monotonic
        self._last = monotonic()
        self._task: asyncio.Task[None] | None = None

    def due(self, text: str) -> None:
        """Called on every event: start a checkpoint of ``text`` when one is due."""
        now = self._monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        if self._task is not None and not self._task.done():
            return  # the last one is still writing: this interval is skipped
        self._task = asyncio.create_task(self._write(text), name="answer-checkpoint")

    async def settle(self) -> None:
        """Wait for the checkpoint in flight, if any (the final write comes after it)."""
        task, self._task = self._task, None
        if task is not None:
            await task

    async def __aenter__(self) -> Checkpoints:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})  # its end, without taking its cancellation as ours
