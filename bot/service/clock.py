"""The time the bot's waits are measured in: monotonic seconds, sleeps and timeouts.

Send budgets, lane shutdowns and rate windows all wait or count seconds (the send scheduler
wakes itself with :meth:`Clock.call_later`). They take a
:class:`Clock` instead of reading ``time.monotonic`` and calling ``asyncio.sleep`` themselves, so
one clock is chosen at the composition root: :data:`SYSTEM_CLOCK` in production, and in tests a
clock that runs faster than real time, shared with the Bot API fake, so every budget is still
enforced and checked, only sooner. Calendar dates (quotas' UTC midnight) are a different clock:
:data:`storage.dto.Clock`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A callback due later; :meth:`cancel` keeps it from running."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds, and waiting measured in them."""

    def now(self) -> float:
        """Seconds since some fixed moment; never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``now()`` has advanced by at least ``seconds``."""
        ...

    def timeout(self, seconds: float | None) -> asyncio.Timeout:
        """Like :func:`asyncio.timeout`, with ``seconds`` on this clock (None: never)."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` in the event loop once ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """Real time: ``time.monotonic`` (the event loop's clock) and the event loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def timeout(self, seconds: float | None) -> asyncio.Timeout:
        return asyncio.timeout(seconds)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)


SYSTEM_CLOCK: Clock = SystemClock()
