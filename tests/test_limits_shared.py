"""Quotas and rate limits counted by every process together (``REDIS_URL``): two limit gates
over one database and one Redis stand for two processes of the bot."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.config import LimitSettings
from bot.errors import QuotaExhausted, RateLimitExceeded
from bot.service.conversation import Participant
from bot.service.limits import UsageLimits
from bot.spark.models import get_model
from coordination.limits import SharedLimits
from storage.database import Database
from tests.test_limits import NOW, spend

MODEL = get_model("lite")
ANN = Participant(user_id=7, username="ann")


def process(
    database: Database, redis: Redis, prefix: str, *, quota: int = 0, rate: int = 0
) -> UsageLimits:
    return UsageLimits(
        database,
        LimitSettings(daily_token_quota=quota, user_rate_limit=rate),
        clock=lambda: NOW,
        shared=SharedLimits(redis, prefix),
    )


async def test_questions_on_two_processes_overshoot_the_quota_by_at_most_one(
    database: Database, redis: Redis, redis_prefix: str
) -> None:
    first = process(database, redis, redis_prefix, quota=1000)
    second = process(database, redis, redis_prefix, quota=1000)
    await spend(database, ANN.user_id, 500)
    attempts = [(first if number % 2 else second).admit(ANN, MODEL, 200) for number in range(10)]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    admitted = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, QuotaExhausted)]
    # 500 used: 500, 700, 900 are below 1000, so three answers start; the third may overshoot.
    assert len(admitted) == 3
    assert len(refused) == 7
    assert (await second.quota_state(ANN.user_id)).reserved == 600
    for ticket in admitted:
        ticket.release()
    async with asyncio.timeout(5):
        while (await first.quota_state(ANN.user_id)).reserved:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_rate_limit_counts_questions_on_every_process(
    database: Database, redis: Redis, redis_prefix: str
) -> None:
    first = process(database, redis, redis_prefix, rate=2)
    second = process(database, redis, redis_prefix, rate=2)
    (await first.admit(ANN, MODEL, 100)).release()
    (await second.admit(ANN, MODEL, 100)).release()
    with pytest.raises(RateLimitExceeded) as refused:
        await first.admit(ANN, MODEL, 100)
    assert 59 < refused.value.retry_after_seconds <= 60
