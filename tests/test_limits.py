"""Daily quotas with reservations and the per-user rate limit, against a real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.config import LimitSettings
from bot.errors import QuotaExhausted, RateLimitExceeded
from bot.service.conversation import AdmissionTicket, Participant
from bot.service.limits import QuotaState, UsageLimits
from bot.spark.models import get_model
from storage.database import Database
from storage.dto import TokenUsage
from storage.repositories.usage import Usage
from tests.support import db_rows

NOW = datetime(2026, 11, 29, 15, 30, tzinfo=UTC)
MODEL = get_model("lite")
ANN = Participant(user_id=7, username="ann")


class Ticks:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(
    database: Database, *, quota: int = 0, rate: int = 0, admins: tuple[int, ...] = ()
) -> UsageLimits:
    return UsageLimits(
        database,
        LimitSettings(daily_token_quota=quota, user_rate_limit=rate),
        admin_user_ids=admins,
        clock=lambda: NOW,
    )


async def spend(database: Database, user_id: int, tokens: int, at: datetime = NOW) -> None:
    await Usage(database.runner, lambda: at).record(
        model="lite", usage=TokenUsage(0, tokens, tokens), user_id=user_id, chat_id=user_id
    )


async def test_quota_boundary_and_reset_time(database: Database) -> None:
    gate = limits(database, quota=1000)
    await spend(database, ANN.user_id, 999)
    await spend(database, ANN.user_id, 5000, at=datetime(2026, 11, 28, 23, 59, tzinfo=UTC))
    ticket = await gate.admit(ANN, MODEL, 0)  # one token left: admitted
    ticket.release()
    await spend(database, ANN.user_id, 1)
    with pytest.raises(QuotaExhausted) as refused:
        await gate.admit(ANN, MODEL, 0)
    assert (refused.value.used, refused.value.quota) == (1000, 1000)
    assert refused.value.resets_at == datetime(2026, 11, 30, tzinfo=UTC)
    state = await gate.quota_state(ANN.user_id)
    assert (state.quota, state.source, state.used_today, state.remaining) == (
        1000,
        "default",
        1000,
        0,
    )


async def test_concurrent_questions_cannot_share_the_last_tokens(database: Database) -> None:
    gate = limits(database, quota=1000)
    await spend(database, ANN.user_id, 900)
    results = await asyncio.gather(
        *(gate.admit(ANN, MODEL, 200) for _ in range(10)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExhausted)]
    assert (len(admitted), len(refused)) == (1, 9)
    assert gate.reserved(ANN.user_id) == 200
    # The answer costs its reservation; once stored and released the quota stays spent.
    await spend(database, ANN.user_id, 200)
    ticket: AdmissionTicket = admitted[0]
    ticket.release()
    ticket.release()  # a second release changes nothing
    assert gate.reserved(ANN.user_id) == 0
    with pytest.raises(QuotaExhausted):
        await gate.admit(ANN, MODEL, 200)
    assert (await gate.quota_state(ANN.user_id)).used_today == 1100  # < quota + one answer


async def test_released_reservations_let_the_next_question_in(database: Database) -> None:
    gate = limits(database, quota=1000)
    first = await gate.admit(ANN, MODEL, 600)
    second = await gate.admit(ANN, MODEL, 600)  # 600 < 1000: still tokens left
    with pytest.raises(QuotaExhausted):
        await gate.admit(ANN, MODEL, 600)
    first.release()
    await spend(database, ANN.user_id, 100)  # the first answer was short
    third = await gate.admit(ANN, MODEL, 600)  # 100 used + 600 reserved < 1000
    assert gate.reserved(ANN.user_id) == 1200
    second.release()
    third.release()
    assert gate.reserved(ANN.user_id) == 0


async def test_user_override_admins_and_unlimited(database: Database) -> None:
    gate = limits(database, quota=100, admins=(1,))
    for user_id in (1, 2, 3):
        await db_rows.upsert_user(database, user_id)
    await database.users.set_daily_quota(2, 0)  # unlimited
    await database.users.set_daily_quota(3, 5000)
    for user_id in (1, 2, 3):
        await spend(database, user_id, 1000)
    await spend(database, 4, 100)
    for user_id in (1, 2, 3):
        (await gate.admit(Participant(user_id), MODEL, 100)).release()
    with pytest.raises(QuotaExhausted):
        await gate.admit(Participant(4), MODEL, 100)
    states = [await gate.quota_state(user_id) for user_id in (1, 2, 3, 4)]
    assert [(s.quota, s.source) for s in states] == [
        (None, "admin"),
        (None, "user"),
        (5000, "user"),
        (100, "default"),
    ]
    assert states[2].remaining == 4000
    assert states[0].remaining is None
    assert await limits(database, quota=0).quota_state(4) == QuotaState(
        4, None, "default", 100, 0, datetime(2026, 11, 30, tzinfo=UTC)
    )


async def test_rate_limit_window_and_retry_after(database: Database) -> None:
    ticks = Ticks()
    start = ticks.now
    gate = UsageLimits(
        database,
        LimitSettings(user_rate_limit=3),
        admin_user_ids=(1,),
        clock=lambda: NOW,
        monotonic=ticks,
    )
    for offset in (0, 10, 30):
        ticks.now = start + offset
        (await gate.admit(ANN, MODEL, 10)).release()
    ticks.now = start + 45
    with pytest.raises(RateLimitExceeded) as refused:
        await gate.admit(ANN, MODEL, 10)
    assert refused.value.retry_after_seconds == pytest.approx(15)
    ticks.now = start + 60  # the question at 0 s is a minute old: out of the window
    (await gate.admit(ANN, MODEL, 10)).release()
    ticks.now = start + 61
    with pytest.raises(RateLimitExceeded) as again:
        await gate.admit(ANN, MODEL, 10)
    assert again.value.retry_after_seconds == pytest.approx(9)
    # Refused questions do not count: once the one at 10 s ages out, one more is admitted.
    ticks.now = start + 70
    (await gate.admit(ANN, MODEL, 10)).release()
    with pytest.raises(RateLimitExceeded):
        await gate.admit(ANN, MODEL, 10)
    # Other users have their own budget, and admins none.
    (await gate.admit(Participant(8), MODEL, 10)).release()
    for _ in range(10):
        (await gate.admit(Participant(1), MODEL, 10)).release()
