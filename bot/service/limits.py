"""Per-user abuse limits: the daily token quota and the question rate limit.

:class:`UsageLimits` is the conversation service's :class:`~bot.service.conversation.Admission`. A
question is admitted when the user has tokens left today, counting both the ledger since UTC
midnight and the tokens reserved by their questions still being answered; admitting it reserves
``reserve_tokens`` (the answer's ``max_tokens``) until its ticket is released, which happens
once the answer's usage row is stored. The check and the reservation happen under a per-user
lock, so questions asked at the same moment cannot all pass on the same last tokens: the quota
is overshot by at most one answer.

The rate limit is a sliding window of ``USER_RATE_LIMIT`` admitted questions per minute.
Admins (ADMIN_USER_IDS) are exempt from both. Counting is per process, unless ``shared``
(:class:`coordination.limits.SharedLimits`, with ``REDIS_URL``) counts reservations and windows
for every process serving the bot: then the check and the reservation are one atomic step in
Redis instead of a per-user lock here, and the quota is still overshot by at most one answer
whichever processes the questions reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from bot.config import LimitSettings
from bot.errors import QuotaExhausted, RateLimitExceeded
from bot.service.conversation import AdmissionTicket, Participant
from bot.spark.models import SparkModel
from coordination.errors import CoordinationUnavailable
from coordination.limits import Reservation, SharedLimits
from storage.database import Database
from storage.dto import Clock, utc_now
from storage.stats import day_start

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60.0
# A shared reservation outlives any answer; it lapses only if its process died holding it.
SHARED_RESERVATION_SECONDS = 900.0
_SWEEP_AT = 1024

QuotaSource = Literal["default", "user", "admin"]


@dataclass(frozen=True, slots=True)
class QuotaState:
    """A user's quota as of now; ``quota`` None means unlimited."""

    user_id: int
    quota: int | None
    source: QuotaSource  # where the quota comes from: DAILY_TOKEN_QUOTA, /quota, or admin
    used_today: int
    reserved: int
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        if self.quota is None:
            return None
        return max(0, self.quota - self.used_today - self.reserved)


def next_reset(now: datetime) -> datetime:
    """The UTC midnight after ``now``: when daily quotas start over."""
    return day_start(now.date() + timedelta(days=1))


def effective_quota(override: int | None, default: int) -> int | None:
    """The quota in force: the user's override if set (0: unlimited), else the default
    (0: unlimited). None means unlimited."""
    value = default if override is None else override
    return value or None


class _Ticket:
    """A reservation held from admission until the answer's usage row is stored."""

    __slots__ = ("_limits", "_released", "tokens", "user_id")

    def __init__(self, limits: UsageLimits, user_id: int, tokens: int) -> None:
        self._limits = limits
        self.user_id = user_id
        self.tokens = tokens
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limits._unreserve(self.user_id, self.tokens)


class _SharedTicket:
    """A reservation every process counts, released in Redis (it lapses there if this
    process dies first)."""

    __slots__ = ("_released", "_releasing", "_shared", "reservation")

    def __init__(
        self, shared: SharedLimits, reservation: Reservation, releasing: set[asyncio.Task[None]]
    ) -> None:
        self._shared = shared
        self._releasing = releasing
        self.reservation = reservation
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        task = asyncio.create_task(self._release(), name="release-reservation")
        self._releasing.add(task)  # held until done: a bare task may be collected mid-way
        task.add_done_callback(self._releasing.discard)

    async def _release(self) -> None:
        try:
            await self._shared.release(self.reservation)
        except CoordinationUnavailable as exc:  # it lapses in Redis on its own
            log.warning("user %s: reservation not released: %s", self.reservation.user_id, exc)


class _Free:
    """The ticket of a question nothing was reserved for (admin, or no quota)."""

    def release(self) -> None:
        return None


class UsageLimits:
    """Daily token quotas with reservations, and a per-user rate limit."""

    def __init__(
        self,
        database: Database,
        settings: LimitSettings,
        *,
        admin_user_ids: Iterable[int] = (),
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        shared: SharedLimits | None = None,
    ) -> None:
        self._db = database
        self._shared = shared
        self._releasing: set[asyncio.Task[None]] = set()
        self._settings = settings
        self._admins = frozenset(admin_user_ids)
        self._clock = clock
        self._monotonic = monotonic
        self._reserved: dict[int, int] = defaultdict(int)
        # Locks live only while someone holds or waits for them.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._recent: dict[int, deque[float]] = {}

    @property
    def shared(self) -> SharedLimits | None:
        """The counts kept for every process (``REDIS_URL``), if any."""
        return self._shared

    @property
    def default_quota(self) -> int:
        return self._settings.daily_token_quota

    def is_admin(self, user_id: int) -> bool:
        return user_id in self._admins

    def reserved(self, user_id: int) -> int:
        """Tokens reserved by the user's questions still being answered."""
        return self._reserved.get(user_id, 0)

    async def admit(
        self, participant: Participant, model: SparkModel, reserve_tokens: int
    ) -> AdmissionTicket:
        """Admit a question or raise :class:`RateLimitExceeded` / :class:`QuotaExhausted`."""
        user_id = participant.user_id
        if self.is_admin(user_id):
            return _Free()
        if self._shared is not None:
            return await self._admit_shared(self._shared, user_id, reserve_tokens)
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        async with lock:
            self._check_rate(user_id)
            state = await self.quota_state(user_id)
            if state.quota is not None and state.used_today + state.reserved >= state.quota:
                raise QuotaExhausted(state.used_today, state.quota, state.resets_at)
            self._note_request(user_id)
            if state.quota is None:
                return _Free()
            tokens = max(0, reserve_tokens)
            self._reserved[user_id] += tokens
            return _Ticket(self, user_id, tokens)

    async def _admit_shared(
        self, shared: SharedLimits, user_id: int, reserve_tokens: int
    ) -> AdmissionTicket:
        limit = self._settings.user_rate_limit
        now = self._clock()
        # The ledger's figure only: the reservation's script counts the live reservations
        # itself, in the same step as it adds this one (reading them first would cost a
        # round trip to Redis for a figure nothing uses).
        use = await self._db.usage.daily_use(user_id, now.date())
        quota = effective_quota(use.quota, self.default_quota)
        ticket: AdmissionTicket = _Free()
        if quota is not None:
            reservation = await shared.reserve(
                user_id,
                reserve_tokens,
                used=use.used,
                quota=quota,
                ttl=SHARED_RESERVATION_SECONDS,
            )
            if reservation is None:
                raise QuotaExhausted(use.used, quota, next_reset(now))
            ticket = _SharedTicket(shared, reservation, self._releasing)
        elif not limit:
            # Nothing of this question is counted in Redis, yet no question is admitted while
            # Redis is away (the other processes' counts and lanes live there): this read
            # raises then, as the reservation or the window would.
            await shared.reserved(user_id)
        if limit:
            wait = await shared.take_rate(f"user:{user_id}", limit, RATE_WINDOW_SECONDS)
            if wait is not None:
                ticket.release()
                raise RateLimitExceeded(wait)
        return ticket

    async def quota_state(self, user_id: int) -> QuotaState:
        """The user's quota, today's use and reservations, as /usage and /stats show them."""
        now = self._clock()
        use = await self._db.usage.daily_use(user_id, now.date())
        used = use.used
        if self._shared is not None:
            reserved = await self._shared.reserved(user_id)
        else:
            reserved = self.reserved(user_id)
        if self.is_admin(user_id):
            return QuotaState(user_id, None, "admin", used, reserved, next_reset(now))
        override = use.quota
        source: QuotaSource = "default" if override is None else "user"
        quota = effective_quota(override, self.default_quota)
        return QuotaState(user_id, quota, source, used, reserved, next_reset(now))

    async def tokens_since(self, user_id: int, since: date) -> int:
        """Tokens the user spent since the start of ``since`` (UTC)."""
        return await self._db.usage.tokens_used(user_id, day_start(since))

    # -- rate limit --------------------------------------------------------------------------

    def _check_rate(self, user_id: int) -> None:
        limit = self._settings.user_rate_limit
        if not limit:
            return
        recent = self._window(user_id)
        if len(recent) >= limit:
            retry_after = recent[0] + RATE_WINDOW_SECONDS - self._monotonic()
            raise RateLimitExceeded(max(retry_after, 0.0))

    def _note_request(self, user_id: int) -> None:
        if self._settings.user_rate_limit:
            self._window(user_id).append(self._monotonic())

    def _window(self, user_id: int) -> deque[float]:
        """The user's admitted questions within the last minute, oldest first."""
        cutoff = self._monotonic() - RATE_WINDOW_SECONDS
        recent = self._recent.get(user_id)
        if recent is None:
            recent = self._recent[user_id] = deque()
        while recent and recent[0] <= cutoff:
            recent.popleft()
        if len(self._recent) > _SWEEP_AT:
            # Forget users quiet for a minute, so the table holds only recent askers.
            for other, times in list(self._recent.items()):
                if other != user_id and (not times or times[-1] <= cutoff):
                    del self._recent[other]
        return recent

    def _unreserve(self, user_id: int, tokens: int) -> None:
        left = self._reserved.get(user_id, 0) - tokens
        if left > 0:
            self._reserved[user_id] = left
        else:
            self._reserved.pop(user_id, None)
