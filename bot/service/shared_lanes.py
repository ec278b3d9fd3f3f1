"""Answers one at a time per conversation, in the order they were asked, across every process
serving the bot (with ``REDIS_URL``); :class:`~bot.service.lanes.AnswerLanes` is the same
for one process.

A question is answered by the process that took it, since its context (the chat to write to,
the message to reply to) lives there. Taking it appends an entry to the conversation's queue
in Redis (:mod:`coordination.conversation_queue`) before the update is acknowledged, so the
queue's order is the order Telegram delivered. A process answers its entry once it is the
first one not done and it holds the conversation's lease; it renews the lease while the
answer streams, marks the entry done, hands the lease on and tells the others it is their
turn (a signal; they also look again every ``poll_seconds`` in case one was missed).

Processes announce themselves with a heartbeat (:mod:`coordination.replicas`). When the first
entry belongs to a process that is gone, whoever notices first (a process waiting behind it,
or the sweeper every process runs) takes the lease and hands the entry to ``takeover``: the
front end tells the user that answer was interrupted (the entry was started) or lost, and the
conversation moves on. A process whose lease lapses while it answers (paused, cut off from
Redis) cancels that answer: another process may already have taken over.

``/stop`` reaches the answer wherever it streams: a process that is not writing it signals
the one that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from bot.service.clock import SYSTEM_CLOCK, Clock
from bot.service.lanes import INTERRUPTED, Job, finish_within, run_job, wait_within
from coordination.conversation_queue import Claim, ConversationQueues, Entry, stream_order
from coordination.replicas import Replicas
from coordination.signals import Signals, listening

log = logging.getLogger(__name__)

# Finishes the first entry of a conversation whose process is gone (see the module docstring).
Takeover = Callable[[str, Entry], Awaitable[None]]

OWNER_FIELD = "owner"
TURN_SIGNAL = "turn"
STOP_SIGNAL = "stop"
LEASE_SECONDS = 5.0
POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class _Queued:
    entry_id: str
    job: Job
    on_drop: Job | None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Lane:
    jobs: deque[_Queued] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    running: asyncio.Task[None] | None = None
    running_fields: Mapping[str, str] = field(default_factory=dict)
    turn: asyncio.Event = field(default_factory=asyncio.Event)


class SharedLanes:
    """One answer at a time per conversation key across processes; FIFO within a key."""

    def __init__(
        self,
        *,
        queues: ConversationQueues,
        signals: Signals,
        replicas: Replicas,
        replica_id: str,
        takeover: Takeover,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._queues = queues
        self._signals = signals
        self._replicas = replicas
        self.replica_id = replica_id
        self._takeover = takeover
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        # Answers finished here whose entries Redis did not take as done (it was away): they
        # are settled before anything else of their conversation.
        self._unsettled: dict[str, tuple[Claim, Entry]] = {}
        self._closing = False
        self._stack = contextlib.AsyncExitStack()
        self._sweeper: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Announce this process, hear the others' signals, sweep for orphaned questions."""
        stack = self._stack
        await stack.enter_async_context(self._replicas.heartbeat(self.replica_id, self._lease))
        await stack.enter_async_context(listening(self._signals, TURN_SIGNAL, self._on_turn))
        await stack.enter_async_context(listening(self._signals, STOP_SIGNAL, self._on_stop))
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="lanes-sweeper")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self._stack.aclose()

    # -- what front ends call ----------------------------------------------------------------

    async def submit(
        self,
        key: str,
        job: Job,
        *,
        fields: Mapping[str, str] | None = None,
        on_drop: Job | None = None,
    ) -> int:
        """Queue ``job`` behind every question of ``key`` taken before, on any process;
        returns how many are ahead of it. ``fields`` describe the question to a process
        that may have to take over (see ``takeover``)."""
        if self._closing:
            raise RuntimeError("shutting down: no new answers")
        described = {**(fields or {}), OWNER_FIELD: self.replica_id}
        entry_id = await self._queues.enqueue(key, described)
        await self._settle(key)
        ahead = max(0, await self._queues.waiting(key) - 1)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.jobs.append(_Queued(entry_id, job, on_drop, described))
        if lane.worker is None:
            lane.worker = asyncio.create_task(self._work(key, lane), name=f"lane-{key}")
        return ahead

    async def cancel_current(self, key: str, *, only: Mapping[str, str] | None = None) -> bool:
        """Stop the answer being written for ``key`` here or on another process; with
        ``only``, just an answer whose fields include these (not the next one of ``key``)."""
        lane = self._lanes.get(key)
        if lane is not None and lane.running is not None and not lane.running.done():
            if not _includes(lane.running_fields, only):
                return False
            lane.running.cancel()
            return True
        head = await self._queues.first_pending(key)
        if head is None or not head.started or head.fields.get(OWNER_FIELD) == self.replica_id:
            return False
        if not _includes(head.fields, only):
            return False
        return await self._signals.publish(STOP_SIGNAL, key) > 0

    def running_count(self) -> int:
        """Answers this process is writing now."""
        return sum(1 for lane in self._lanes.values() if lane.running is not None)

    def queued_count(self) -> int:
        """Questions taken by this process still waiting for their turn."""
        return sum(len(lane.jobs) for lane in self._lanes.values())

    # -- taking turns ------------------------------------------------------------------------

    async def _work(self, key: str, lane: _Lane) -> None:
        try:
            while lane.jobs:
                queued = lane.jobs[0]
                claim = await self._wait_turn(key, lane, queued.entry_id)
                if not lane.jobs or lane.jobs[0] is not queued:  # dropped at shutdown meanwhile
                    if claim is not None:
                        await self._hand_on(key, claim)
                    continue
                lane.jobs.popleft()
                if claim is None:
                    log.warning("conversation %s: question taken over elsewhere", key)
                    continue
                lane.running = asyncio.create_task(
                    self._answer(key, claim, queued), name=f"answer-{key}"
                )
                lane.running_fields = queued.fields
                try:
                    await asyncio.wait([lane.running])
                finally:
                    lane.running = None
        finally:
            lane.worker = None
            if not lane.jobs and self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _wait_turn(self, key: str, lane: _Lane, entry_id: str) -> Claim | None:
        """The conversation's lease once ``entry_id`` is first; None if it is done already
        (another process took it over, thinking this one gone)."""
        while True:
            lane.turn.clear()
            head = await self._queues.first_pending(key)
            if head is None or head.order > stream_order(entry_id):
                return None
            if head.forgotten:
                await self._settle_forgotten(key, head)
                continue
            if key in self._unsettled:
                await self._settle(key)
                continue
            if head.id == entry_id:
                claim = await self._queues.claim(key, self.replica_id, self._lease)
                if claim is not None:
                    return claim
            elif await self._take_over_if_orphaned(key, head):
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await lane.turn.wait()

    async def _answer(self, key: str, claim: Claim, queued: _Queued) -> None:
        entry = await claim.next()
        if entry is None or entry.id != queued.entry_id or not await claim.start(entry):
            log.warning("conversation %s: lease lost before the answer started", key)
            return
        answering = asyncio.current_task()
        keeper = asyncio.create_task(self._keep(key, claim, answering), name=f"lease-{key}")
        try:
            await run_job(queued.job)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self._finish(key, claim, entry)

    async def _keep(self, key: str, claim: Claim, answering: asyncio.Future[None] | None) -> None:
        """Renew the lease while the answer streams; cancel the answer if it lapses."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                renewed = await claim.renew(self._lease)
            except RedisError as exc:
                log.warning("conversation %s: lease not renewed: %s", key, exc)
                continue
            if not renewed:
                log.warning("conversation %s: lease lost mid-answer; interrupting it", key)
                if answering is not None:
                    answering.cancel(INTERRUPTED)
                return

    async def _finish(self, key: str, claim: Claim, entry: Entry) -> None:
        """Mark ``entry`` done, hand the lease on and tell whoever is next; if Redis is away,
        remember it and try again (:meth:`_settle`), since nobody else will."""
        try:
            await claim.done(entry)
            await self._hand_on(key, claim)
        except RedisError as exc:
            log.warning("conversation %s: turn not handed on yet: %s", key, exc)
            self._unsettled[key] = (claim, entry)

    async def _settle(self, key: str) -> None:
        """Mark done the entry of ``key`` answered here while Redis was away. Its process is
        alive, so nobody else takes it over: until this, the conversation waits. Raises
        RedisError if Redis is still away."""
        unsettled = self._unsettled.get(key)
        if unsettled is None:
            return
        claim, entry = unsettled
        if not await claim.done(entry):  # the lease lapsed meanwhile: take it again
            retaken = await self._queues.claim(key, self.replica_id, self._lease)
            if retaken is None:
                return  # someone holds it for a moment; the next look settles it
            current = await retaken.next()
            if current is not None and current.id == entry.id:
                await retaken.done(current)
            claim = retaken
        del self._unsettled[key]
        log.info("conversation %s: turn handed on after Redis came back", key)
        await self._hand_on(key, claim)

    async def _hand_on(self, key: str, claim: Claim) -> None:
        if await claim.hand_on():
            await self._signals.publish(TURN_SIGNAL, key)

    async def _settle_forgotten(self, key: str, head: Entry) -> None:
        """Mark a given-up entry done, if nobody holds the conversation now."""
        claim = await self._queues.claim(key, self.replica_id, self._lease)
        if claim is None:
            return
        current = await claim.next()
        if current is not None and current.id == head.id:
            await claim.done(current)
        await self._hand_on(key, claim)

    async def _take_over_if_orphaned(self, key: str, head: Entry) -> bool:
        """If ``head``'s process is gone and nobody holds ``key``, finish ``head`` through
        ``takeover``; whether it did."""
        owner = head.fields.get(OWNER_FIELD, "")
        if owner == self.replica_id or await self._replicas.alive([owner]):
            return False
        claim = await self._queues.claim(key, self.replica_id, self._lease)
        if claim is None:
            return False
        current = await claim.next()
        if current is None or current.id != head.id:
            await self._hand_on(key, claim)
            return True
        if current.forgotten:
            await self._finish(key, claim, current)
            return True
        log.warning(
            "conversation %s: process %s is gone; its %s question is taken over",
            key,
            owner,
            "started" if current.started else "waiting",
        )
        taking_over = asyncio.ensure_future(self._takeover(key, current))
        keeper = asyncio.create_task(self._keep(key, claim, taking_over), name=f"lease-{key}")
        try:
            await taking_over
        except asyncio.CancelledError:
            if not taking_over.cancelled():
                raise
        except Exception:
            log.exception("conversation %s: taking over a question failed", key)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._finish(key, claim, current)
        return True

    async def sweep(self) -> int:
        """Take over the first questions of conversations whose processes are gone and that
        nobody here waits on; how many were taken over."""
        taken = 0
        for key in await self._queues.orphaned():
            if key in self._lanes:
                continue  # this process's own worker looks after it
            while True:
                head = await self._queues.first_pending(key)
                if head is None or not await self._take_over_if_orphaned(key, head):
                    break
                taken += 1
        return taken

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease)
            try:
                for key in list(self._unsettled):
                    await self._settle(key)
                await self.sweep()
            except RedisError as exc:
                log.warning("sweep for orphaned questions failed: %s", exc)

    # -- signals -----------------------------------------------------------------------------

    def _on_turn(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is not None:
            lane.turn.set()

    def _on_stop(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is not None and lane.running is not None and not lane.running.done():
            log.info("conversation %s: stopped from another process", key)
            lane.running.cancel()

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self, grace: float, note_timeout: float = 3.0) -> None:
        """As :meth:`AnswerLanes.shutdown`, except that within ``grace`` the questions waiting
        here still take their turns (a rolling restart interrupts nothing that can finish in
        time); those still waiting then are dropped (their ``on_drop`` runs) and marked done,
        so the others' questions behind them go on."""
        self._closing = True
        started = self._clock.now()
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        if workers:
            await wait_within(self._clock, workers, grace)
        grace = max(0.0, grace - (self._clock.now() - started))
        dropped: list[tuple[str, _Queued]] = [
            (key, queued) for key, lane in self._lanes.items() for queued in lane.jobs
        ]
        for lane in self._lanes.values():
            lane.jobs.clear()
            lane.turn.set()
        drops = [
            asyncio.create_task(self._drop(key, queued), name="dropped-question")
            for key, queued in dropped
        ]
        running = [lane.running for lane in self._lanes.values() if lane.running is not None]
        if running:
            await wait_within(self._clock, running, grace)
            for task in running:
                if not task.done():
                    task.cancel()
        await finish_within(
            self._clock,
            [task for task in [*running, *drops] if not task.done()],
            note_timeout,
            "an interrupted answer or a dropped question did not finish",
        )
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self.aclose()

    async def _drop(self, key: str, queued: _Queued) -> None:
        if queued.on_drop is not None:
            await run_job(queued.on_drop)
        # The user has been told; whoever finds it first passes it by, so the questions
        # behind it do not wait for this process's heartbeat to lapse.
        try:
            await self._queues.forget(key, queued.entry_id)
            await self._signals.publish(TURN_SIGNAL, key)
        except RedisError as exc:
            log.warning("conversation %s: dropped question not passed on: %s", key, exc)


def _includes(fields: Mapping[str, str], only: Mapping[str, str] | None) -> bool:
    return only is None or all(fields.get(name) == value for name, value in only.items())
