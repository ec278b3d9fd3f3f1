"""One bot's Telegram send budget in Redis, counted by every process serving it.

Telegram counts a bot's calls per chat and in total, whichever process makes them: with
``REDIS_URL`` every call the send scheduler grants is counted here too, in the same windows
(:func:`~bot.telegram.send_budgets.windows_for`) and under the same 429 deadlines, through
:class:`~coordination.send_windows.SendWindows`. Keys sit under the shared prefix and the
bot's id, so two bots on one Redis keep budgets of their own.

If Redis does not answer within :data:`CALL_TIMEOUT`, a call is let through on this process's
own budget alone rather than wait: answers under way keep flowing, while no process admits a
new question without the shared counts (:mod:`bot.service.limits`). Redis is asked again every
:data:`RETRY_EVERY` seconds, one call at a time; the loss and the return are logged once each.
Timeouts and the waits Redis names are real seconds (Redis's clock); the scheduler holds a key
for such a wait on its own clock, the same in production (a test clock running faster only
makes it ask again sooner).

At most :data:`MAX_CONCURRENT_CALLS` calls to Redis are under way at once: the client's pool
is shared with the lanes, the limits and the signals, and refuses a connection beyond its
size ("Too many connections") instead of waiting for one, which would read as Redis lost.
A handful is plenty: one call takes about 0.1 ms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

from bot.shared_state import SharedState
from bot.telegram.send_budgets import SharedWait, Window
from coordination.errors import CoordinationUnavailable
from coordination.send_windows import RateWindow, SendWindows, Taken

log = logging.getLogger(__name__)
T = TypeVar("T")

CALL_TIMEOUT = 1.0
RETRY_EVERY = 1.0
MAX_CONCURRENT_CALLS = 8


def shared_send_budget(shared: SharedState, bot_id: int) -> SharedSendBudget:
    """The send budget of the bot ``bot_id`` in ``shared``'s Redis."""
    return SharedSendBudget(shared.send_windows, f"send:{bot_id}:", location=shared.location)


class SharedSendBudget:
    """:class:`~bot.telegram.send_budgets.SharedBudget` on Redis, under ``scope``.

    ``on_taken`` hears Redis's time (seconds since 1970) of every call counted, for whoever
    needs to see the shared budget at work."""

    def __init__(
        self,
        windows: SendWindows,
        scope: str,
        *,
        location: str = "Redis",
        on_taken: Callable[[float], None] | None = None,
    ) -> None:
        self._windows = windows
        self._scope = scope
        self._location = location
        self._on_taken = on_taken
        self._down = False
        self._retry_at = 0.0
        self._probing = False
        self._calls = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def take(
        self, windows: Sequence[Window], deadlines: Sequence[Hashable]
    ) -> SharedWait | None:
        keys: dict[str, Hashable] = {}
        shared: list[RateWindow] = []
        for window in windows:
            name = self._window_name(window.key)
            keys[name] = window.key
            shared.append(RateWindow(name, window.limit, window.seconds))
        holds = []
        for key in deadlines:
            name = self._deadline_name(key)
            keys[name] = key
            holds.append(name)
        answer = await self._call(lambda: self._windows.take(shared, holds))
        if answer is None:
            return None  # Redis is away: this process's own budget has let the call go
        if isinstance(answer, Taken):
            if self._on_taken is not None:
                self._on_taken(answer.at)
            return None
        return SharedWait(keys[answer.key], answer.seconds)

    async def hold(self, key: Hashable, seconds: float) -> None:
        # Without Redis only this process holds the chat; the others take no questions then.
        await self._call(lambda: self._windows.hold(self._deadline_name(key), seconds))

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """``call``'s answer, or None when Redis is away (or did not answer in time)."""
        async with self._calls:
            if not self._may_ask():  # checked once a turn came: Redis may be lost by then
                return None
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    answer = await call()
            except (CoordinationUnavailable, TimeoutError) as exc:
                self._lost(exc)
                return None
        self._answered()
        return answer

    def _window_name(self, key: Hashable) -> str:
        return f"{self._scope}w:{_name(key)}"

    def _deadline_name(self, key: Hashable) -> str:
        return f"{self._scope}hold:{_name(key)}"

    def _may_ask(self) -> bool:
        """Whether to ask Redis now: always while it answers, else one probe per period."""
        if not self._down:
            return True
        now = asyncio.get_running_loop().time()
        if self._probing or now < self._retry_at:
            return False
        self._probing = True
        return True

    def _lost(self, exc: Exception) -> None:
        self._retry_at = asyncio.get_running_loop().time() + RETRY_EVERY
        self._probing = False
        if self._down:
            return
        self._down = True
        if isinstance(exc, CoordinationUnavailable):
            reason = exc.reason
        else:
            reason = f"no answer within {CALL_TIMEOUT:g} s"
        log.error(
            "Redis at %s is unavailable; Telegram send budgets are counted by this process "
            "alone until it answers: %s",
            self._location,
            reason,
        )

    def _answered(self) -> None:
        self._probing = False
        if self._down:
            self._down = False
            log.warning(
                "Redis at %s answers again; Telegram send budgets are shared again",
                self._location,
            )


def _name(key: Hashable) -> str:
    """A window's key as part of a Redis key: ``(-501, "message")`` → ``-501:message``."""
    if isinstance(key, tuple):
        return ":".join(str(part) for part in key)
    return str(key)
