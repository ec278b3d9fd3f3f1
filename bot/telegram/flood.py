"""Telegram's send budgets, shared by every answer the bot is streaming.

Telegram enforces (telegram-notes.md): about one message per second per chat, 20 per minute per
group, 30 per second for the whole bot, and answers 429 with ``retry_after`` when a budget is
overdrawn. Edits count like sends. This module answers one question for a stream about to send
something: how long must it wait? It never sleeps itself, so the Spark read loop is never held
up by Telegram; the stream renderer does the waiting in its own task. A message that must go (a
reply, a final text) marks itself :meth:`FloodControl.waiting`; disposable ones (previews, which
the next one replaces) then leave it the chat's next slot, however their timers fall. Waits use
:attr:`FloodControl.clock`, the clock the budgets are counted in, so a wait ends when the budget
allows, in production and in tests that run time faster alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from bot.service.clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    """The time floors and budgets the bot holds itself to (a little under Telegram's)."""

    private_interval: float = 1.0
    group_interval: float = 3.0
    group_per_minute: int = 20
    global_per_second: int = 28
    # A chat quiet this long has nothing left to remember; its budget is dropped so the table
    # holds only the chats of the last hour, not every chat the bot ever answered.
    idle_after: float = 3600.0
    sweep_every: float = 300.0


@dataclass(slots=True)
class _ChatBudget:
    last_sent: float = float("-inf")
    not_before: float = float("-inf")
    recent: deque[float] = field(default_factory=deque)


def retry_after_seconds(value: int | float | timedelta) -> float:
    """ptb gives ``retry_after`` as an int, or a timedelta with PTB_TIMEDELTA=1: accept both."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class FloodControl:
    """Per-chat floors and 429 deadlines, per-group minute budget, global second budget."""

    def __init__(self, policy: FloodPolicy | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.policy = policy or FloodPolicy()
        self.clock = clock
        self._chats: dict[int, _ChatBudget] = {}
        self._global: deque[float] = deque()
        self._waiting: dict[int, int] = {}  # chat_id: messages that must go, waiting for it
        self._next_sweep = clock.now() + self.policy.sweep_every

    def now(self) -> float:
        return self.clock.now()

    def _chat(self, chat_id: int) -> _ChatBudget:
        budget = self._chats.get(chat_id)
        if budget is None:
            budget = self._chats[chat_id] = _ChatBudget()
        return budget

    def delay(self, chat_id: int, *, is_group: bool, disposable: bool = False) -> float:
        """Seconds to wait before the next message or edit to ``chat_id`` (0 = go now).

        A ``disposable`` one also waits one more interval while a message that must go is
        :meth:`waiting` for the chat: that one takes the next slot."""
        now = self.clock.now()
        budget = self._chat(chat_id)
        interval = self.policy.group_interval if is_group else self.policy.private_interval
        ready = max(budget.not_before, budget.last_sent + interval)
        if is_group:
            _expire(budget.recent, now - 60.0)
            if len(budget.recent) >= self.policy.group_per_minute:
                ready = max(ready, budget.recent[0] + 60.0)
        _expire(self._global, now - 1.0)
        if len(self._global) >= self.policy.global_per_second:
            ready = max(ready, self._global[0] + 1.0)
        if disposable and chat_id in self._waiting:
            ready = max(ready, now) + interval
        return max(0.0, ready - now)

    @contextmanager
    def waiting(self, chat_id: int) -> Iterator[None]:
        """A message that must go waits for ``chat_id``'s budget meanwhile."""
        self._waiting[chat_id] = self._waiting.get(chat_id, 0) + 1
        try:
            yield
        finally:
            if self._waiting[chat_id] > 1:
                self._waiting[chat_id] -= 1
            else:
                del self._waiting[chat_id]

    def deadline(self, chat_id: int) -> float:
        """The chat's 429 deadline (on :attr:`clock`), or -inf when there is none."""
        return self._chat(chat_id).not_before

    def record_send(self, chat_id: int, *, is_group: bool) -> None:
        now = self.clock.now()
        budget = self._chat(chat_id)
        budget.last_sent = now
        if is_group:
            budget.recent.append(now)
        self._global.append(now)
        if now >= self._next_sweep:
            # Amortised here rather than on a timer: a bot that sends nothing grows nothing.
            self._next_sweep = now + self.policy.sweep_every
            self.forget_idle()

    def tracked_chats(self) -> int:
        """How many chats have a budget in memory (for tests and metrics)."""
        return len(self._chats)

    def record_retry_after(self, chat_id: int, retry_after: int | float | timedelta) -> float:
        """Telegram said 429: nothing goes to this chat before the returned deadline."""
        budget = self._chat(chat_id)
        deadline = self.clock.now() + retry_after_seconds(retry_after)
        budget.not_before = max(budget.not_before, deadline)
        return budget.not_before

    def forget_idle(self, older_than: float | None = None) -> int:
        """Drop budgets of chats quiet for ``older_than`` seconds (default: the policy's
        ``idle_after``); a chat under a 429 deadline is kept until it has passed."""
        cutoff = self.clock.now() - (self.policy.idle_after if older_than is None else older_than)
        idle = [
            chat_id
            for chat_id, budget in self._chats.items()
            if budget.last_sent < cutoff and budget.not_before < cutoff
        ]
        for chat_id in idle:
            del self._chats[chat_id]
        return len(idle)


def _expire(window: deque[float], cutoff: float) -> None:
    while window and window[0] <= cutoff:
        window.popleft()
