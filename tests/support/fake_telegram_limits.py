"""Flood control of the Bot API fake: Telegram's budgets, 429 answers and violation records.

Budgets (defaults are Telegram's published figures): one chat ~1 message per second with a
small burst (token bucket), a group 20 messages per minute (sliding window), the whole bot 30
messages per second (token bucket), and drafts their own per-chat bucket because Telegram does
not document whether drafts count. A 429 announces a "not before" deadline for the chat; a
counted request for that chat arriving before the deadline is answered 429 again and recorded
as a `FloodViolation` - a well-behaved bot never produces one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tests.support.fake_telegram_errors import BotApiError

Clock = Callable[[], float]
FloodKind = Literal["message", "draft"]


@dataclass(frozen=True, slots=True)
class FloodLimits:
    """Request budgets; a per-second rate with a burst capacity, or a count per window."""

    chat_per_second: float = 1.0
    chat_burst: int = 2
    group_messages: int = 20
    group_window: float = 60.0
    global_per_second: float = 30.0
    global_burst: int = 30
    draft_per_second: float = 5.0
    draft_burst: int = 5

    @classmethod
    def unlimited(cls) -> FloodLimits:
        huge = 1_000_000
        return cls(huge, huge, huge, 1.0, huge, huge, huge, huge)


@dataclass(frozen=True, slots=True)
class FloodViolation:
    """A request that arrived before the retry_after deadline announced for its chat."""

    method: str
    chat_id: int
    kind: FloodKind
    at: float
    not_before: float


@dataclass(slots=True)
class _TokenBucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0 if one is available now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


@dataclass(slots=True)
class _SlidingWindow:
    limit: int
    window: float
    stamps: deque[float] = field(default_factory=deque)

    def wait(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.window:
            self.stamps.popleft()
        return 0.0 if len(self.stamps) < self.limit else self.stamps[0] + self.window - now

    def take(self, now: float) -> None:
        self.stamps.append(now)


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait - 1e-9))


class FloodControl:
    """Budgets per chat, per group and for the whole bot; deadlines announced by 429s."""

    def __init__(self, limits: FloodLimits, clock: Clock) -> None:
        self.limits = limits
        self._clock = clock
        self._chat: dict[tuple[int, FloodKind], _TokenBucket] = {}
        self._group: dict[int, _SlidingWindow] = {}
        self._global = _TokenBucket(
            limits.global_per_second, limits.global_burst, limits.global_burst, clock()
        )
        self._deadlines: dict[tuple[int, FloodKind], float] = {}
        self.violations: list[FloodViolation] = []

    def not_before(self, chat_id: int, kind: FloodKind = "message") -> float | None:
        deadline = self._deadlines.get((chat_id, kind))
        return deadline if deadline is not None and deadline > self._clock() else None

    def announce(self, chat_id: int, kind: FloodKind, retry_after: int) -> None:
        """Remember a 429 given to the bot for this chat (also used for scripted 429s)."""
        deadline = self._clock() + retry_after
        key = (chat_id, kind)
        self._deadlines[key] = max(deadline, self._deadlines.get(key, deadline))

    def check_deadline(self, method: str, chat_id: int, kind: FloodKind) -> None:
        now = self._clock()
        deadline = self._deadlines.get((chat_id, kind))
        if deadline is not None and now < deadline:
            self.violations.append(FloodViolation(method, chat_id, kind, now, deadline))
            raise BotApiError.too_many_requests(retry_after_seconds(deadline - now))

    def charge(self, chat_id: int, kind: FloodKind, is_group: bool) -> None:
        """Spend one request of every budget that applies, or answer 429 spending none."""
        now = self._clock()
        limits = self.limits
        if kind == "draft":
            rate, burst = limits.draft_per_second, limits.draft_burst
        else:
            rate, burst = limits.chat_per_second, limits.chat_burst
        chat = self._chat.get((chat_id, kind))
        if chat is None:
            chat = self._chat[(chat_id, kind)] = _TokenBucket(rate, burst, burst, now)
        waits = [chat.wait(now)]
        group: _SlidingWindow | None = None
        if kind == "message":
            waits.append(self._global.wait(now))
            if is_group:
                group = self._group.get(chat_id)
                if group is None:
                    group = self._group[chat_id] = _SlidingWindow(
                        limits.group_messages, limits.group_window
                    )
                waits.append(group.wait(now))
        wait = max(waits)
        if wait > 0:
            retry_after = retry_after_seconds(wait)
            self.announce(chat_id, kind, retry_after)
            raise BotApiError.too_many_requests(retry_after)
        chat.take()
        if kind == "message":
            self._global.take()
        if group is not None:
            group.take(now)
