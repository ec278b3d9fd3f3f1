"""Time budgets and retry policy of the Spark client, as plain values.

Kept apart from the client so that settings, tests and the benchmark can build and reason about
them (for example, assert that an observed back-off delay lies within :meth:`RetryPolicy.bounds`)
without opening a socket.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SparkTimeouts:
    """Seconds allowed for each phase of one answer.

    ``connect`` covers TCP/TLS connect plus the WebSocket handshake (and waiting for a free
    connection in the session's pool); ``first_frame`` runs from sending the request to the
    first frame; ``idle`` is the longest gap between two frames; ``total`` bounds the whole
    call, retries and back-off included; ``close`` is how long a clean close may wait for the
    server's close frame.
    """

    connect: float = 10.0
    first_frame: float = 60.0
    idle: float = 60.0
    total: float = 600.0
    close: float = 2.0

    def __post_init__(self) -> None:
        for name in ("connect", "first_frame", "idle", "total", "close"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"SparkTimeouts.{name} must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Jittered exponential back-off for failures that happen before any answer streamed.

    Retry ``n`` (``n = 1`` before the second attempt) waits a uniformly random time in
    ``[cap / 2, cap]`` where ``cap = min(max_delay, base_delay * 2 ** (n - 1))``: the lower half
    keeps a busy server from being hit again at once, the random half spreads out clients that
    failed together.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(
                "RetryPolicy needs 0 <= base_delay <= max_delay, "
                f"got base_delay={self.base_delay}, max_delay={self.max_delay}"
            )

    def bounds(self, retry: int) -> tuple[float, float]:
        """The (lowest, highest) delay before retry number ``retry`` (1-based)."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        # The exponent is capped so a large retry number cannot overflow the float.
        cap = min(self.max_delay, self.base_delay * 2.0 ** min(retry - 1, 62))
        return cap / 2, cap

    def delay(self, retry: int, rng: random.Random) -> float:
        """A random delay before retry number ``retry``, within :meth:`bounds`."""
        low, high = self.bounds(retry)
        return rng.uniform(low, high)
