"""A receive deadline for one stream that costs one timer per timeout period, not per frame.

``asyncio.timeout`` around every ``receive()`` allocates a context object and a timer handle
per frame and measured about 8 µs of CPU each time, a fifth of the client's whole per-frame
budget (benchmarks/RESULTS.md). :class:`ReceiveWatchdog` keeps one timer per stream instead:
each wait moves a deadline (two attribute writes); the timer, when it fires, either finds the
deadline passed and cancels the waiting task, or re-arms itself at the new deadline.

It only ever cancels the task while that task is inside the guarded wait (between
:meth:`arm` and :meth:`disarm`), so a consumer busy between two frames is never interrupted.
"""

from __future__ import annotations

import asyncio
from typing import Any

# The loop runs timers up to its clock resolution early; a deadline this close counts as passed.
_EARLY = 1e-3


class ReceiveWatchdog:
    """Cancels the guarded wait of the current task once its deadline passes."""

    __slots__ = ("_deadline", "_fired", "_handle", "_loop", "_task", "_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiting = False
        self._fired = False

    def arm(self, deadline: float) -> None:
        """Guard the wait that follows until ``deadline`` (loop time)."""
        self._deadline = deadline
        self._waiting = True
        self._task = asyncio.current_task()
        handle = self._handle
        if handle is None:
            self._handle = self._loop.call_at(deadline, self._check)
        elif handle.when() > deadline:
            # A shorter budget than the pending timer (e.g. idle after first_frame).
            handle.cancel()
            self._handle = self._loop.call_at(deadline, self._check)

    def disarm(self) -> None:
        """The guarded wait is over."""
        self._waiting = False

    def expired(self) -> bool:
        """After a ``CancelledError`` in the guarded wait: True when the watchdog caused it
        (the cancellation is then withdrawn), False when somebody else cancelled the task."""
        if not self._fired:
            return False
        self._fired = False
        task = self._task
        # Another cancellation arriving at the same time wins, as with asyncio.timeout.
        return task is None or task.uncancel() == 0

    def close(self) -> None:
        """Drop the timer; call when the stream is over."""
        self._waiting = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if not self._waiting:
            return  # re-armed by the next wait
        if self._loop.time() + _EARLY >= self._deadline:
            task = self._task
            if task is not None and not task.done():
                self._fired = True
                task.cancel()
        else:
            self._handle = self._loop.call_at(self._deadline, self._check)
