"""Pytest fixtures for Telegram: a started Bot API fake, its user driver, a ptb Bot on it.

`fake_telegram` uses Telegram's real flood budgets and a real clock; tests that need other
budgets or a hand-moved clock build their own with `make_fake_telegram(limits=..., clock=...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from telegram import Bot

from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_driver import TelegramDriver

FakeFactory = Callable[..., Awaitable[FakeTelegram]]


def bot_for(fake: FakeTelegram) -> Bot:
    """A ptb Bot that talks to `fake` (not yet initialized)."""
    return Bot(token=fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url)


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """ptb 22 warns on every RetryAfter (even while building it) unless PTB_TIMEDELTA is set;
    with warnings as errors that would hide the 429s the fake produces. In this mode
    RetryAfter.retry_after is a datetime.timedelta."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture
async def make_fake_telegram() -> AsyncIterator[FakeFactory]:
    """Start FakeTelegram(**kwargs) servers; all are stopped when the test ends."""
    async with AsyncExitStack() as stack:

        async def make(**kwargs: Any) -> FakeTelegram:
            return await stack.enter_async_context(FakeTelegram(**kwargs))

        yield make


@pytest.fixture
async def fake_telegram(make_fake_telegram: FakeFactory) -> FakeTelegram:
    return await make_fake_telegram()


@pytest.fixture
def telegram_driver(fake_telegram: FakeTelegram) -> TelegramDriver:
    return TelegramDriver(fake_telegram)


@pytest.fixture
async def ptb_bot(fake_telegram: FakeTelegram) -> AsyncIterator[Bot]:
    async with bot_for(fake_telegram) as bot:
        yield bot
