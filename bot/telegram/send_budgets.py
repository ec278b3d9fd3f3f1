"""Telegram's send budgets as data: what each kind of call may spend, and where it is counted.

Telegram publishes (telegram-notes.md): about one message a second per chat, 20 a minute per
group, 30 a second for the whole bot; a 429 carries ``retry_after``, a deadline for the chat.
It publishes nothing about drafts (``sendMessageDraft``) or chat actions. :class:`SendBudgets`
holds the figures the bot keeps to (settings, a little under Telegram's), and whether drafts and
chat actions count toward the global budget (a setting each). Every budget is a sliding
:class:`Window`: at most ``limit`` calls in ``seconds``; a per-chat interval is a window of one.

A 429 on a kind of call (:class:`LearnedLimits`) halves that kind's per-chat rate for
``learn_seconds`` (down to an eighth); each further 429 halves it again and restarts the
period, which then ends back at the configured figure. So a bot learns the limit Telegram does
not publish (drafts, say) instead of running into it again every second.

Counts live in a :class:`BudgetStore`: the in-process :class:`MemoryBudgetStore`, which the
scheduler orders its calls by. Several processes serving one bot also pass every granted call
through a :class:`SharedBudget` (:mod:`bot.telegram.shared_send_budget`, on Redis), which
counts the same windows and deadlines for all of them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, NamedTuple, Protocol

log = logging.getLogger(__name__)

SendKind = Literal["message", "draft", "action"]
KINDS: tuple[SendKind, ...] = ("message", "draft", "action")
GLOBAL_KEY = ("global",)
LOWEST_FACTOR = 1 / 8


@dataclass(frozen=True, slots=True)
class SendBudgets:
    """The budgets the bot holds itself to (settings; defaults a little under Telegram's)."""

    private_interval: float = 1.0  # seconds between messages or edits in one private chat
    group_interval: float = 3.0
    group_per_minute: int = 20
    global_per_second: int = 28  # raise it with Telegram's paid broadcasts
    draft_interval: float = 1.0  # seconds between drafts in one chat (unpublished)
    action_interval: float = 1.0  # seconds between chat actions in one chat
    drafts_count_global: bool = False
    actions_count_global: bool = False
    learn_seconds: float = 600.0  # how long a 429 keeps its kind's budget lowered
    # Calls granted and not yet answered. Beyond what the connection pool can carry, calls
    # would queue in the HTTP client instead, first come first served, and reach Telegram in
    # bursts that no budget counted: they wait here, in priority order, instead.
    max_in_flight: int = 48
    # A chat quiet this long has nothing left to remember; its counts are dropped so the store
    # holds only the chats of the last hour, not every chat the bot ever answered.
    idle_after: float = 3600.0
    sweep_every: float = 300.0

    def counts_global(self, kind: SendKind) -> bool:
        if kind == "draft":
            return self.drafts_count_global
        if kind == "action":
            return self.actions_count_global
        return True

    def chat_interval(self, kind: SendKind, *, is_group: bool) -> float:
        if kind == "draft":
            return self.draft_interval
        if kind == "action":
            return self.action_interval
        return self.group_interval if is_group else self.private_interval


class Window(NamedTuple):
    """At most ``limit`` calls in any ``seconds``, counted under ``key``."""

    key: Hashable
    limit: int
    seconds: float


def chat_key(chat_id: int, kind: SendKind) -> tuple[int, SendKind]:
    """The key of a chat's own budget for a kind; a 429's deadline is held under it."""
    return (chat_id, kind)


def retry_after_seconds(value: int | float | timedelta) -> float:
    """ptb gives ``retry_after`` as an int, or a timedelta with PTB_TIMEDELTA=1: accept both."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class BudgetStore(Protocol):
    """Where calls are counted and 429 deadlines held."""

    def ready_at(self, windows: Sequence[Window], now: float) -> float:
        """The first moment (>= ``now``) every window has room and no deadline holds."""
        ...

    def take(self, windows: Sequence[Window], now: float) -> None:
        """Count one call at ``now`` in every window."""
        ...

    def untake(self, windows: Sequence[Window], at: float) -> None:
        """The call counted at ``at`` in every window was not made after all."""
        ...

    def hold(self, key: Hashable, until: float) -> float:
        """Nothing counted under ``key`` before ``until``; returns the deadline now held."""
        ...

    def held_until(self, key: Hashable) -> float:
        """The deadline held under ``key`` (-inf when none)."""
        ...

    def forget_idle(self, before: float) -> int:
        """Drop keys with no call and no deadline since ``before``; how many went."""
        ...


@dataclass(slots=True)
class _Counts:
    stamps: deque[float] = field(default_factory=deque)
    held: float = float("-inf")
    last: float = float("-inf")


class MemoryBudgetStore:
    """The in-process store: a deque of call times per key."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, _Counts] = {}

    def _get(self, key: Hashable) -> _Counts:
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _Counts()
        return counts

    def ready_at(self, windows: Sequence[Window], now: float) -> float:
        ready = now
        for key, limit, seconds in windows:
            counts = self._counts.get(key)
            if counts is None:
                continue
            stamps = counts.stamps
            cutoff = now - seconds
            while stamps and stamps[0] <= cutoff:
                stamps.popleft()
            if len(stamps) >= limit:
                ready = max(ready, stamps[-limit] + seconds)
            if counts.held > ready:
                ready = counts.held
        return ready

    def take(self, windows: Sequence[Window], now: float) -> None:
        for key, _limit, _seconds in windows:
            counts = self._get(key)
            counts.stamps.append(now)
            counts.last = now

    def untake(self, windows: Sequence[Window], at: float) -> None:
        for key, _limit, _seconds in windows:
            counts = self._counts.get(key)
            if counts is not None and at in counts.stamps:  # not trimmed meanwhile
                counts.stamps.remove(at)

    def hold(self, key: Hashable, until: float) -> float:
        counts = self._get(key)
        counts.held = max(counts.held, until)
        return counts.held

    def held_until(self, key: Hashable) -> float:
        counts = self._counts.get(key)
        return counts.held if counts is not None else float("-inf")

    def forget_idle(self, before: float) -> int:
        idle = [
            key
            for key, counts in self._counts.items()
            if key != GLOBAL_KEY and counts.last < before and counts.held < before
        ]
        for key in idle:
            del self._counts[key]
        return len(idle)

    def tracked(self) -> int:
        """How many keys have counts in memory (for tests and metrics)."""
        return len(self._counts)


class SharedWait(NamedTuple):
    """A shared budget's answer to a call it did not take: the window or deadline under
    ``key`` holds for ``seconds`` more (the longest of those that hold)."""

    key: Hashable
    seconds: float


class SharedBudget(Protocol):
    """The windows and 429 deadlines every process of the bot counts together."""

    async def take(
        self, windows: Sequence[Window], deadlines: Sequence[Hashable]
    ) -> SharedWait | None:
        """Count one call in every window if each has room and no deadline of ``deadlines``
        holds (None: taken, or nothing is shared right now), else what holds it."""
        ...

    async def hold(self, key: Hashable, seconds: float) -> None:
        """A 429: nothing counted under ``key`` by any process for ``seconds``."""
        ...


class LearnedLimits:
    """Per kind, the share of its configured per-chat rate the bot allows itself after 429s."""

    def __init__(self, learn_seconds: float) -> None:
        self._learn_seconds = learn_seconds
        self._factor: dict[SendKind, float] = {}
        self._until: dict[SendKind, float] = {}

    def factor(self, kind: SendKind, now: float) -> float:
        factor = self._factor.get(kind)
        if factor is None:
            return 1.0
        if now >= self._until[kind]:
            del self._factor[kind], self._until[kind]
            log.info("%s budget back to its configured rate", kind)
            return 1.0
        return factor

    def lower(self, kind: SendKind, now: float) -> float:
        """A 429 on ``kind``: halve its rate (not below an eighth) for the learning period."""
        factor = max(LOWEST_FACTOR, self.factor(kind, now) / 2)
        self._factor[kind] = factor
        self._until[kind] = now + self._learn_seconds
        return factor


def windows_for(
    budgets: SendBudgets,
    chat_id: int,
    *,
    is_group: bool,
    kind: SendKind,
    factor: float,
    first: bool = False,
) -> tuple[tuple[Window, ...], tuple[Window, ...]]:
    """The chat's own windows for one call, and the global ones it also counts in."""
    interval = budgets.chat_interval(kind, is_group=is_group) / factor
    key: Hashable = chat_key(chat_id, kind)
    if first and kind == "draft":
        # "Thinking…" has a budget of its own, so the first text can follow it as soon as
        # Spark sends it; every later draft keeps the interval.
        key = (chat_id, "first-draft")
    own: tuple[Window, ...] = (Window(key, 1, interval),)
    if kind == "message" and is_group:
        per_minute = max(1, int(budgets.group_per_minute * factor))
        own = (*own, Window((chat_id, "minute"), per_minute, 60.0))
    shared: tuple[Window, ...] = ()
    if budgets.counts_global(kind):
        shared = (Window(GLOBAL_KEY, budgets.global_per_second, 1.0),)
    return own, shared
