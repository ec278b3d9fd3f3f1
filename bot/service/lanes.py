"""Answers one at a time per conversation, in the order they were asked.

Front ends store a question quickly and hand its answer to a lane, so a ``/stop`` can be
handled while an answer is still being written (the Telegram front end also keeps updates in
order within a chat: :mod:`bot.telegram.update_order`). :class:`AnswerLanes` keeps one FIFO
lane per conversation. A lane's worker writes one answer at a time; later questions wait their
turn. Every worker task is owned here, and
  :meth:`AnswerLanes.shutdown` gives running answers a grace period, then cancels them so they
  can finish with a visible "interrupted" note; questions still waiting get their ``on_drop``
  (a note to the user) instead of silence. Those waits are on the lanes' clock
  (:mod:`bot.service.clock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bot.service.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]

# The message a running answer is cancelled with when it must end as interrupted rather than
# stopped by its user: this process lost the conversation to another one (its lease lapsed).
INTERRUPTED = "interrupted"


def interrupted(cancelled: asyncio.CancelledError) -> bool:
    """Whether an answer's cancellation means "interrupted" (see :data:`INTERRUPTED`)."""
    return INTERRUPTED in cancelled.args


class ConversationLanes(Protocol):
    """Where a front end hands answers, one at a time per conversation key, in order:
    :class:`LocalLanes` in one process, :class:`~bot.service.shared_lanes.SharedLanes`
    across the processes of one bot."""

    async def submit(
        self,
        key: str,
        job: Job,
        *,
        fields: Mapping[str, str] | None = None,
        on_drop: Job | None = None,
    ) -> int:
        """Queue ``job``; how many answers are ahead of it. ``fields`` describe the question
        to another process that may have to finish it (unused in one process)."""
        ...

    async def start(self) -> None:
        """Begin taking part (with other processes: announce this one, hear the others)."""
        ...

    async def cancel_current(self, key: str, *, only: Mapping[str, str] | None = None) -> bool:
        """Stop the answer being written for ``key``, wherever it is written; with ``only``,
        just an answer whose ``fields`` include these."""
        ...

    def running_count(self) -> int: ...

    def queued_count(self) -> int: ...

    async def shutdown(self, grace: float) -> None:
        """Let running answers finish within ``grace``, interrupt the rest, drop the queue."""
        ...


# What shutdown allows beyond its grace for interrupted answers to store their text and send
# their note (bot.service.conversation.SHUTDOWN_DELIVERY_TIMEOUT of it is for the note).
SHUTDOWN_NOTE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class _Queued:
    job: Job
    on_drop: Job | None


@dataclass(slots=True)
class _Lane:
    jobs: deque[_Queued] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    running: asyncio.Task[None] | None = None


class AnswerLanes:
    """One answer at a time per conversation key; FIFO within a key; parallel across keys."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lanes: dict[Hashable, _Lane] = {}
        self._closing = False

    def submit(self, key: Hashable, job: Job, on_drop: Job | None = None) -> int:
        """Queue ``job``; returns how many jobs are ahead of it (0 = starts now).

        ``on_drop`` runs instead of ``job`` if shutdown comes before ``job`` started."""
        if self._closing:
            raise RuntimeError("shutting down: no new answers")
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        ahead = len(lane.jobs) + (1 if lane.running is not None else 0)
        lane.jobs.append(_Queued(job, on_drop))
        if lane.worker is None:
            lane.worker = asyncio.create_task(self._work(key, lane), name=f"lane-{key}")
        return ahead

    def cancel_current(self, key: Hashable) -> bool:
        """Cancel the answer being written for ``key`` (``/stop``); queued ones still run."""
        lane = self._lanes.get(key)
        if lane is None or lane.running is None or lane.running.done():
            return False
        lane.running.cancel()
        return True

    def running_count(self) -> int:
        return sum(1 for lane in self._lanes.values() if lane.running is not None)

    def queued_count(self) -> int:
        return sum(len(lane.jobs) for lane in self._lanes.values())

    async def _work(self, key: Hashable, lane: _Lane) -> None:
        try:
            while lane.jobs:
                queued = lane.jobs.popleft()
                lane.running = asyncio.create_task(run_job(queued.job), name=f"answer-{key}")
                try:
                    # wait() returns when the job ends, cancelled by /stop or not, and does not
                    # cancel the job if this worker is cancelled: shutdown() owns that.
                    await asyncio.wait([lane.running])
                finally:
                    lane.running = None
        finally:
            lane.worker = None
            if not lane.jobs and self._lanes.get(key) is lane:
                del self._lanes[key]

    async def shutdown(self, grace: float, note_timeout: float = SHUTDOWN_NOTE_TIMEOUT) -> None:
        """Let running answers finish within ``grace`` seconds, cancel the rest, drop queues.

        A cancelled answer still stores its partial text and tries to deliver its
        "interrupted" note; dropped jobs' ``on_drop`` (a note, a stored marker) run at once,
        alongside. All of that shares one ``note_timeout`` after the grace, so the whole
        shutdown takes at most ``grace + note_timeout``; whatever is still running then is
        cancelled (a chat under a long 429 deadline gets no note: Telegram would refuse it).
        """
        self._closing = True
        drops = [
            asyncio.create_task(run_job(queued.on_drop), name="dropped-question")
            for lane in self._lanes.values()
            for queued in lane.jobs
            if queued.on_drop is not None
        ]
        for lane in self._lanes.values():
            lane.jobs.clear()
        running = [lane.running for lane in self._lanes.values() if lane.running is not None]
        pending: list[asyncio.Task[None]] = []
        if running:
            await wait_within(self._clock, running, grace)
            pending = [task for task in running if not task.done()]
            for task in pending:
                task.cancel()
        await finish_within(
            self._clock,
            [*pending, *drops],
            note_timeout,
            "an interrupted answer or a dropped question did not finish its note in time",
        )
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker


class LocalLanes:
    """:class:`ConversationLanes` of one process: :class:`AnswerLanes` behind it."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._lanes = AnswerLanes(clock)

    async def start(self) -> None:
        """Nothing to announce in one process."""

    async def submit(
        self,
        key: str,
        job: Job,
        *,
        fields: Mapping[str, str] | None = None,
        on_drop: Job | None = None,
    ) -> int:
        return self._lanes.submit(key, job, on_drop)

    async def cancel_current(self, key: str, *, only: Mapping[str, str] | None = None) -> bool:
        if only is not None:
            return False  # no fields are kept in one process: its callers know their answers
        return self._lanes.cancel_current(key)

    def running_count(self) -> int:
        return self._lanes.running_count()

    def queued_count(self) -> int:
        return self._lanes.queued_count()

    async def shutdown(self, grace: float) -> None:
        await self._lanes.shutdown(grace)


async def wait_within(clock: Clock, tasks: Collection[asyncio.Task[None]], seconds: float) -> None:
    """Wait up to ``seconds`` for every one of ``tasks`` to end; cancels none of them."""
    with contextlib.suppress(TimeoutError):
        async with clock.timeout(seconds):
            await asyncio.wait(tasks)


async def finish_within(
    clock: Clock, tasks: Collection[asyncio.Task[None]], seconds: float, late: str
) -> None:
    """Wait up to ``seconds`` for ``tasks``; cancel (and log ``late`` for) any still running."""
    if not tasks:
        return
    await wait_within(clock, tasks, seconds)
    stuck = [task for task in tasks if not task.done()]
    for task in stuck:
        log.warning(late)
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_job(job: Job) -> None:
    """Run one answer job; a failure it did not report itself is logged, never raised."""
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except Exception:
        # A job reports its own failures to the user; this is the last line of defence.
        log.exception("answer job failed")
