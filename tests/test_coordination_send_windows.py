"""Send windows and deadlines counted by every process in one Redis step (real Redis): each
process's takes together never put more calls in a window than its limit, on Redis's clock; a
refusal counts nothing and names what holds; deadlines hold every process; keys expire."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from coordination.errors import CoordinationUnavailable
from coordination.send_windows import RateWindow, Refused, SendWindows, Taken
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def processes(redis: Redis, redis_prefix: str) -> AsyncIterator[list[SendWindows]]:
    """Three processes' windows: a Redis client each, as separate processes would have."""
    clients = [Redis.from_url(os.environ["TEST_REDIS_URL"]) for _ in range(3)]
    try:
        yield [SendWindows(client, redis_prefix) for client in clients]
    finally:
        for client in clients:
            await client.aclose()


async def _take_until_taken(
    windows: SendWindows, wanted: Sequence[RateWindow], deadlines: Sequence[str] = ()
) -> float:
    """Take one call, waiting as told between refusals; Redis's time of the take."""
    async with asyncio.timeout(20):
        while True:
            answer = await windows.take(wanted, deadlines)
            if isinstance(answer, Taken):
                return answer.at
            await asyncio.sleep(answer.seconds)


def _most_in_any_window(times: list[float], seconds: float) -> int:
    """The most of ``times`` in any window of ``seconds`` (ms, as Redis counts: a call
    ``seconds`` old has left the window)."""
    stamps = sorted(round(at * 1000) for at in times)
    span = round(seconds * 1000)
    return max(sum(1 for s in stamps if t - span < s <= t) for t in stamps)


async def test_processes_taking_one_chats_window_at_once_keep_its_interval(
    processes: list[SendWindows],
) -> None:
    chat = RateWindow("chat:7", 1, 0.1)

    async def sender(windows: SendWindows) -> list[float]:
        return [await _take_until_taken(windows, [chat]) for _ in range(4)]

    times = [at for ats in await asyncio.gather(*map(sender, processes)) for at in ats]
    assert len(times) == 12
    stamps = sorted(round(at * 1000) for at in times)
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= 100


async def test_processes_sending_to_many_chats_share_one_global_window(
    processes: list[SendWindows],
) -> None:
    global_window = RateWindow("global", 4, 0.25)

    async def sender(number: int, windows: SendWindows) -> list[float]:
        return [
            await _take_until_taken(
                windows, [RateWindow(f"chat:{number}:{n}", 1, 1.0), global_window]
            )
            for n in range(8)
        ]

    times = [
        at
        for ats in await asyncio.gather(*(sender(n, w) for n, w in enumerate(processes)))
        for at in ats
    ]
    assert len(times) == 24
    assert _most_in_any_window(times, 0.25) == 4


async def test_a_refusal_counts_nothing_and_names_the_window_that_holds_longest(
    redis: Redis, redis_prefix: str, processes: list[SendWindows]
) -> None:
    first, second, _ = processes
    roomy = RateWindow("chat:1", 5, 60.0)
    short = RateWindow("global", 1, 0.5)
    long = RateWindow("group:1:minute", 1, 60.0)
    assert isinstance(await first.take([short, long]), Taken)
    answer = await second.take([roomy, short, long])
    assert isinstance(answer, Refused)
    assert answer.key == "group:1:minute"
    assert 59.0 < answer.seconds <= 60.0
    assert await redis.zcard(redis_prefix + "chat:1") == 0  # nothing was counted


async def test_a_deadline_holds_every_process_and_only_grows(
    redis: Redis, redis_prefix: str, processes: list[SendWindows]
) -> None:
    first, second, third = processes
    chat = RateWindow("chat:7", 1, 0.01)
    assert await first.hold("hold:7", 30.0) == pytest.approx(30.0)
    assert await second.hold("hold:7", 5.0) > 29.0  # a shorter 429 does not shorten it
    answer = await third.take([chat], ["hold:7"])
    assert isinstance(answer, Refused)
    assert answer.key == "hold:7"
    assert 29.0 < answer.seconds <= 30.0
    assert isinstance(await third.take([chat], ["hold:8"]), Taken)  # other chats go on
    assert 29.0 < await second.held_for("hold:7") <= 30.0
    assert await second.held_for("hold:8") == 0.0


async def test_a_deadline_past_lets_calls_through(
    redis: Redis, redis_prefix: str, processes: list[SendWindows]
) -> None:
    first, second, _ = processes
    await first.hold("hold:7", 0.2)
    deadline_ms = int(await redis.get(redis_prefix + "hold:7") or 0)
    taken_at = await _take_until_taken(second, [RateWindow("chat:7", 1, 1.0)], ["hold:7"])
    assert round(taken_at * 1000) >= deadline_ms
    assert await first.held_for("hold:7") == 0.0


async def test_every_key_expires_by_itself(
    redis: Redis, redis_prefix: str, processes: list[SendWindows]
) -> None:
    windows = processes[0]
    await windows.take([RateWindow("chat:1", 1, 1.0), RateWindow("global", 30, 1.0)])
    await windows.take([RateWindow("group:2:minute", 20, 60.0)], ["hold:2"])
    await windows.hold("hold:3", 120.0)
    keys = sorted([key.decode() async for key in redis.scan_iter(match=redis_prefix + "*")])
    assert [key.removeprefix(redis_prefix) for key in keys] == [
        "chat:1",
        "global",
        "group:2:minute",
        "hold:3",
    ]
    ttls = {key.removeprefix(redis_prefix): await redis.pttl(key) for key in keys}
    assert 0 < ttls["chat:1"] <= 1000
    assert 0 < ttls["global"] <= 1000
    assert 59_000 < ttls["group:2:minute"] <= 60_000
    assert 119_000 < ttls["hold:3"] <= 120_000


async def test_redis_unreachable_is_reported_with_where(redis_prefix: str) -> None:
    target = urlsplit(os.environ["TEST_REDIS_URL"])
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        client = Redis.from_url(f"redis://127.0.0.1:{proxy.port}{target.path}")
        try:
            windows = SendWindows(client, redis_prefix, "redis://127.0.0.1:1/0")
            assert isinstance(await windows.take([RateWindow("chat:1", 1, 1.0)]), Taken)
            proxy.cut()
            with pytest.raises(CoordinationUnavailable) as caught:
                await windows.take([RateWindow("chat:2", 1, 1.0)])
            assert caught.value.location == "redis://127.0.0.1:1/0"
            with pytest.raises(CoordinationUnavailable):
                await windows.hold("hold:2", 1.0)
            proxy.restore()
            assert isinstance(await windows.take([RateWindow("chat:3", 1, 1.0)]), Taken)
        finally:
            await client.aclose()
