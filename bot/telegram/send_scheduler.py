"""One scheduler for every Bot API call that spends a send budget, in the whole process.

Every send path (drafts, edits, final messages and their splits, command replies, notes, chat
actions) asks :meth:`SendScheduler.slot` for a slot and is woken when it has one; nothing polls
and nothing sleeps on its own guess. The call is counted when the slot is granted, so the
caller makes its request right away; a 429 goes back to :meth:`SendScheduler.retry_after`,
which holds the chat until Telegram's deadline and lowers that kind's budget for a while
(:mod:`bot.telegram.send_budgets`).

Who goes next, among the calls whose chat has room:

1. ``FIRST``: the first feedback of a new answer ("Thinking…", the first typing action);
2. ``FINAL``: final texts, in the order Spark finished them;
3. ``REPLY``: command replies and notes, in the order asked;
4. ``KEEPALIVE``: typing repeats and drafts re-sent while Spark is silent;
5. ``REFRESH``: intermediate texts, the stream whose visible text is stalest first. A stream
   asks for one refresh at a time and sends its newest text once granted, so intermediate
   texts are coalesced: only the newest is ever sent.

At most ``max_in_flight`` granted calls are unanswered at a time (:meth:`SendScheduler.release`
says one was answered): beyond the connection pool they would wait in the HTTP client, first
come first served, and reach Telegram in bursts. Calls that count toward the global budget wait
for it in that order; a refresh also leaves
part of the global second (up to half) to more urgent calls still held by their own chat's
budget, so a burst of refreshes cannot push a final text back. Calls that do not count (drafts
and chat actions by default) only wait for their own chat's budget.

The scheduler runs no task of its own: it grants what it can whenever something asks, and arms
one timer (:meth:`Clock.call_later`) for the next moment something may go.

Several processes serving one bot share a budget (``shared``, a
:class:`~bot.telegram.send_budgets.SharedBudget` on Redis). Each still orders its own calls as
above; a call it grants is then counted in the shared windows before its waiter wakes (one
short task per call, owned here and ended by :meth:`aclose`), and a 429 holds the chat there
too, for every process. When the shared budget says another process spent the room (or holds
the chat under a 429), the call is not counted here after all: this process holds that key
for as long and the call goes back to its place in the queue, so a final text is not stuck
behind refreshes waiting for the shared second, and :meth:`held_until` sees other processes'
deadlines once one has been met. What a 429 teaches (the lowered rate of a kind) stays with
the process that met it: a chat's answer streams from one process, the one that met the 429,
and asking Redis for the rate on every call would make the ordering wait on the network.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from enum import IntEnum

from bot.service.clock import SYSTEM_CLOCK, Clock, Timer
from bot.telegram.send_budgets import (
    BudgetStore,
    LearnedLimits,
    MemoryBudgetStore,
    SendBudgets,
    SendKind,
    SharedBudget,
    Window,
    chat_key,
    retry_after_seconds,
    windows_for,
)

log = logging.getLogger(__name__)


class Priority(IntEnum):
    FIRST = 0
    FINAL = 1
    REPLY = 2
    KEEPALIVE = 3
    REFRESH = 4


@dataclass(slots=True, eq=False)
class _Ask:
    priority: Priority
    order: float
    seq: int
    own: tuple[Window, ...]
    shared: tuple[Window, ...]
    future: asyncio.Future[None] = field(repr=False)
    urgent: bool = False  # counted globally and more urgent than a refresh: not yet granted
    # Granted here, in flight, waiting for the shared budget's answer (a task of its own).
    sharing: asyncio.Task[None] | None = field(default=None, repr=False)
    granted_at: float = 0.0

    def key(self) -> tuple[int, float, int]:
        return (self.priority, self.order, self.seq)


_Entry = tuple[int, float, int, _Ask]
_Timed = tuple[float, int, _Ask]


class SendScheduler:
    """Grants send slots within every budget, most urgent first; see the module docstring."""

    def __init__(
        self,
        budgets: SendBudgets | None = None,
        clock: Clock = SYSTEM_CLOCK,
        store: BudgetStore | None = None,
        shared: SharedBudget | None = None,
    ) -> None:
        self.budgets = budgets or SendBudgets()
        self.clock = clock
        self.store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self.shared = shared
        self._sharing: set[asyncio.Task[None]] = set()  # calls being counted in ``shared``
        self._holding: set[asyncio.Task[None]] = set()  # 429 deadlines being written there
        self._learned = LearnedLimits(self.budgets.learn_seconds)
        self._seq = itertools.count()
        self._held: list[_Timed] = []  # waiting for their own chat's budget, by when it allows
        self._counted: list[_Entry] = []  # their chat allows; waiting for the global budget
        self._free: list[_Entry] = []  # their chat allows; not counted globally
        self._urgent_held = 0  # counted, more urgent than a refresh, not yet granted
        self._in_flight = 0  # granted, not yet released
        self._timer: Timer | None = None
        self._timer_at = float("inf")
        self._next_sweep = clock.now() + self.budgets.sweep_every

    def now(self) -> float:
        return self.clock.now()

    async def slot(
        self,
        chat_id: int,
        *,
        is_group: bool,
        kind: SendKind = "message",
        priority: Priority = Priority.REPLY,
        order: float | None = None,
    ) -> None:
        """Wait for a slot for one call; it is counted as made when this returns, and the
        caller calls :meth:`release` once the call is answered (or failed).

        ``order`` ranks calls of one priority (lower first; default: when asked). Cancelling
        the wait gives the place up."""
        future = self.ask(chat_id, is_group=is_group, kind=kind, priority=priority, order=order)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as the waiter was cancelled: nobody will call
            raise

    def release(self) -> None:
        """A granted call was answered (or failed): its place in flight is free."""
        self._in_flight -= 1
        self._dispatch()

    def ask(
        self,
        chat_id: int,
        *,
        is_group: bool,
        kind: SendKind = "message",
        priority: Priority = Priority.REPLY,
        order: float | None = None,
    ) -> asyncio.Future[None]:
        """:meth:`slot` as a future (resolved when granted; cancel it to give the place up).
        A granted future is released like a slot."""
        now = self.clock.now()
        own, shared = windows_for(
            self.budgets,
            chat_id,
            is_group=is_group,
            kind=kind,
            factor=self._learned.factor(kind, now),
            first=priority == Priority.FIRST,
        )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ask = _Ask(priority, now if order is None else order, next(self._seq), own, shared, future)
        self._mark_urgent(ask)
        if ask.urgent or self.shared is not None:
            future.add_done_callback(lambda _: self._given_up(ask))
        self._place(ask, now)
        self._dispatch()
        return future

    def _mark_urgent(self, ask: _Ask) -> None:
        if ask.shared and ask.priority < Priority.REFRESH:
            ask.urgent = True
            self._urgent_held += 1

    def _given_up(self, ask: _Ask) -> None:
        if ask.urgent:  # cancelled before it was granted
            ask.urgent = False
            self._urgent_held -= 1
        if ask.sharing is not None and ask.future.cancelled():
            # Cancelled while the shared budget was asked: the place in flight is free.
            ask.sharing.cancel()
            ask.sharing = None
            self._in_flight -= 1
            self._dispatch()

    def retry_after(
        self, chat_id: int, kind: SendKind, retry_after: int | float | timedelta
    ) -> float:
        """Telegram answered 429: hold the chat until the deadline, lower the kind's budget.

        Returns the deadline (on :attr:`clock`)."""
        seconds = retry_after_seconds(retry_after)
        now = self.clock.now()
        key = chat_key(chat_id, kind)
        deadline = self.store.hold(key, now + seconds)
        if self.shared is not None:
            holding = asyncio.get_running_loop().create_task(
                self.shared.hold(key, seconds), name=f"send-hold-{chat_id}"
            )
            self._holding.add(holding)
            holding.add_done_callback(self._holding.discard)
        factor = self._learned.lower(kind, now)
        log.info(
            "chat %s: Telegram answered 429 on a %s (retry after %.1f s); %s budget at %g of "
            "its configured rate for %.0f s",
            chat_id,
            kind,
            seconds,
            kind,
            factor,
            self.budgets.learn_seconds,
        )
        return deadline

    def held_until(self, chat_id: int, kind: SendKind = "message") -> float:
        """The chat's 429 deadline for ``kind`` (on :attr:`clock`), or -inf. Another process's
        deadline counts once one of this process's calls has met it in the shared budget."""
        return self.store.held_until(chat_key(chat_id, kind))

    def waiting(self) -> int:
        """How many asks are waiting (for tests and metrics)."""
        return sum(
            1
            for queue in (self._held, self._counted, self._free)
            for entry in queue
            if not entry[-1].future.done()
        )

    # -- granting ----------------------------------------------------------------------------

    def _place(self, ask: _Ask, now: float) -> None:
        ready = self.store.ready_at(ask.own, now)
        if ready > now:
            heapq.heappush(self._held, (ready, ask.seq, ask))
        elif ask.shared:
            heapq.heappush(self._counted, (*ask.key(), ask))
        else:
            heapq.heappush(self._free, (*ask.key(), ask))

    def _dispatch(self) -> None:
        store = self.store
        now = self.clock.now()
        held = self._held
        while held and held[0][0] <= now:
            ask = heapq.heappop(held)[2]
            if not ask.future.done():
                self._place(ask, now)
        wake = held[0][0] if held else float("inf")
        limit = self.budgets.max_in_flight
        while self._in_flight < limit:
            free = self._peek(self._free, now)
            counted = self._peek(self._counted, now)
            if counted is not None:
                ready = store.ready_at(counted.shared, now)
                if ready <= now and counted.priority == Priority.REFRESH and self._urgent_held:
                    ready = self._reserve(counted.shared[0], now)
                if ready > now:  # every counted call waits for the global budget alike
                    wake = min(wake, ready)
                    counted = None
            if free is None and counted is None:
                break
            if counted is None or (free is not None and free.key() < counted.key()):
                assert free is not None
                heapq.heappop(self._free)
                self._grant(free, now)
            else:
                heapq.heappop(self._counted)
                self._grant(counted, now)
        if held:
            wake = min(wake, held[0][0])
        self._arm(wake, now)

    def _peek(self, queue: list[_Entry], now: float) -> _Ask | None:
        """The queue's most urgent live ask whose chat still has room, or None."""
        while queue:
            ask = queue[0][3]
            if ask.future.done():
                heapq.heappop(queue)
            elif not self._chat_moved(ask, now, queue):
                return ask
        return None

    def _chat_moved(self, ask: _Ask, now: float, queue: list[_Entry]) -> bool:
        """A call granted meanwhile may have used the chat's room: check again, lazily."""
        ready = self.store.ready_at(ask.own, now)
        if ready <= now:
            return False
        heapq.heappop(queue)
        heapq.heappush(self._held, (ready, ask.seq, ask))
        return True

    def _reserve(self, window: Window, now: float) -> float:
        """When a refresh may take a global slot: leave room for the urgent calls held."""
        reserve = min(self._urgent_held, window.limit // 2)
        if reserve <= 0:
            return now
        narrowed = Window(window.key, window.limit - reserve, window.seconds)
        return self.store.ready_at((narrowed,), now)

    def _grant(self, ask: _Ask, now: float) -> None:
        self.store.take(ask.own + ask.shared, now)
        self._in_flight += 1
        if ask.urgent:
            ask.urgent = False
            self._urgent_held -= 1
        if self.shared is None:
            ask.future.set_result(None)
        else:
            ask.granted_at = now
            ask.sharing = asyncio.get_running_loop().create_task(
                self._take_shared(ask, self.shared), name="send-slot-shared"
            )
            self._sharing.add(ask.sharing)
            ask.sharing.add_done_callback(lambda task: self._shared_done(ask, task))
        if now >= self._next_sweep:
            # Amortised here rather than on a timer: a bot that sends nothing grows nothing.
            self._next_sweep = now + self.budgets.sweep_every
            self.store.forget_idle(now - self.budgets.idle_after)

    async def _take_shared(self, ask: _Ask, shared: SharedBudget) -> None:
        """Count a call granted here in the shared budget, then wake its waiter; or, if another
        process spent the room, put it back in its place until then."""
        try:
            wait = await shared.take(ask.own + ask.shared, [window.key for window in ask.own])
        except Exception:  # a fault of the shared budget must not lose the call
            log.exception("the shared send budget failed; this call counts in this process alone")
            wait = None
        if ask.future.done():
            return  # withdrawn meanwhile: its callback freed the place
        ask.sharing = None
        if wait is None:
            ask.future.set_result(None)
            return
        now = self.clock.now()
        self.store.untake(ask.own + ask.shared, ask.granted_at)
        self.store.hold(wait.key, now + wait.seconds)
        self._in_flight -= 1
        self._mark_urgent(ask)
        self._place(ask, now)
        self._dispatch()

    def _shared_done(self, ask: _Ask, task: asyncio.Task[None]) -> None:
        self._sharing.discard(task)
        if task.cancelled() and not ask.future.done():
            ask.future.cancel()  # cancelled, perhaps before it began: the waiter is told

    async def aclose(self) -> None:
        """Stop using the shared budget: calls still waiting for its answer are withdrawn
        (their waiters see a cancellation); 429 deadlines being written there are let finish
        (each call to it is bounded)."""
        for task in list(self._sharing):
            task.cancel()
        await asyncio.gather(*self._sharing, *self._holding, return_exceptions=True)

    def _arm(self, wake: float, now: float) -> None:
        if wake == float("inf") or wake >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wake
        self._timer = self.clock.call_later(max(wake - now, 0.001), self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self._dispatch()
