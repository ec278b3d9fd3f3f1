"""Clocks for tests, both shaped like :class:`bot.service.clock.Clock` (and callable, for the
Bot API fake, which only reads the time).

``ScaledClock`` runs a whole bot faster than real time: shared by the bot and the Bot API fake,
Telegram's budgets (the 1 s and 3 s floors, 20 a minute per group, 429 deadlines) are kept by
the bot and checked by the fake in the same seconds, only ``factor`` times sooner. Times
recorded by the fake (``RecordedCall.at``) are then on this clock too.

``ManualClock`` moves only when a test moves it, so minute-long budgets are tested in
milliseconds; its timers run when :meth:`ManualClock.advance` passes them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable


class ScaledClock:
    """Monotonic time running ``factor`` times faster than the real one."""

    def __init__(self, factor: float) -> None:
        if factor <= 0:
            raise ValueError(f"a clock needs a positive factor, not {factor}")
        self.factor = factor
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self.factor

    def __call__(self) -> float:
        return self.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)

    def timeout(self, seconds: float | None) -> asyncio.Timeout:
        return asyncio.timeout(None if seconds is None else max(0.0, seconds) / self.factor)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, seconds) / self.factor, callback)


class _ManualTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


class ManualClock:
    """A clock tests move by hand; sleeping on it moves it (nothing else would)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._now += seconds
        # Timers run as the time passes them, in order, each at its own moment.
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer = heapq.heappop(self._timers)
            if timer.callback is not None:
                timer.callback()

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def timeout(self, seconds: float | None) -> asyncio.Timeout:
        # Time stands still while a test awaits, so only a wait of zero ever runs out.
        return asyncio.timeout(0.0 if seconds is not None and seconds <= 0 else None)

    def call_later(
        self, seconds: float, callback: Callable[[], None]
    ) -> _ManualTimer | asyncio.Handle:
        """Due when :meth:`advance` passes ``seconds`` from now (soon, when 0 or less)."""
        if seconds <= 0:
            return asyncio.get_running_loop().call_soon(callback)
        timer = _ManualTimer(callback)
        heapq.heappush(self._timers, (self._now + seconds, next(self._order), timer))
        return timer
