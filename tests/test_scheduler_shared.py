"""Send schedulers of several processes on one Redis (real Redis, a client each, real time):
together they keep one chat's interval, a group's minute and the global second, as Redis's
times of their calls show; a 429 met by one holds the others; a call another process's
traffic holds back waits in its place among its own process's calls; a withdrawn call frees
its place; Redis cut while sending, or silent, falls back to each process's own budget and
comes back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from bot.service.clock import SYSTEM_CLOCK
from bot.telegram.send_budgets import SendBudgets
from bot.telegram.send_scheduler import Priority, SendScheduler
from bot.telegram.shared_send_budget import SharedSendBudget
from coordination.send_windows import SendWindows
from tests.support.tcp_proxy import TcpProxy

SCOPE = "send:42:"


@dataclass(slots=True)
class Process:
    """One process's scheduler on its own Redis client, and Redis's times of its calls."""

    scheduler: SendScheduler
    taken: list[float] = field(default_factory=list)

    async def send(self, chat_id: int, **ask: Any) -> float:
        """One call to ``chat_id`` once granted; when Redis counted it (for a process that
        sends one call at a time)."""
        counted = len(self.taken)
        async with asyncio.timeout(20):
            await self.scheduler.slot(chat_id, is_group=False, **ask)
        self.scheduler.release()
        return self.taken[counted] if len(self.taken) > counted else float("nan")


ProcessFactory = Callable[..., Coroutine[Any, Any, Process]]


@pytest.fixture
async def make_process(redis: Redis, redis_prefix: str) -> AsyncIterator[ProcessFactory]:
    clients: list[Redis] = []
    schedulers: list[SendScheduler] = []

    async def make(url: str | None = None, **budgets: Any) -> Process:
        client = Redis.from_url(url or os.environ["TEST_REDIS_URL"])
        clients.append(client)
        taken: list[float] = []
        shared = SharedSendBudget(SendWindows(client, redis_prefix), SCOPE, on_taken=taken.append)
        scheduler = SendScheduler(SendBudgets(**budgets), SYSTEM_CLOCK, shared=shared)
        schedulers.append(scheduler)
        return Process(scheduler, taken)

    try:
        yield make
    finally:
        for scheduler in schedulers:
            await scheduler.aclose()
        for client in clients:
            await client.aclose()


def _ms(times: list[float]) -> list[int]:
    return sorted(round(at * 1000) for at in times)


def _most_in_any_window(times: list[float], seconds: float) -> int:
    stamps, span = _ms(times), round(seconds * 1000)
    return max(sum(1 for s in stamps if t - span < s <= t) for t in stamps)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the scheduler moves on Redis's answers
            await asyncio.sleep(0.005)


async def test_processes_sending_to_one_chat_keep_its_interval_together(
    make_process: ProcessFactory,
) -> None:
    processes = [await make_process(private_interval=0.1) for _ in range(3)]

    async def sender(process: Process) -> None:
        for _ in range(4):
            await process.send(101)

    await asyncio.gather(*map(sender, processes))
    times = [at for process in processes for at in process.taken]
    assert len(times) == 12  # every call was counted in Redis
    stamps = _ms(times)
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= 100


async def test_processes_sending_to_many_chats_keep_one_global_second(
    make_process: ProcessFactory,
) -> None:
    # Six a second for the bot: each process alone would send its six at once, 18 in all.
    processes = [await make_process(global_per_second=6) for _ in range(3)]

    async def sender(number: int, process: Process) -> None:
        await asyncio.gather(*(process.send(1000 * number + chat) for chat in range(6)))

    await asyncio.gather(*(sender(n, p) for n, p in enumerate(processes)))
    times = [at for process in processes for at in process.taken]
    assert len(times) == 18
    assert _most_in_any_window(times, 1.0) == 6


async def test_processes_sending_to_one_group_share_its_minute(
    make_process: ProcessFactory,
) -> None:
    budgets = {"group_interval": 0.01, "group_per_minute": 3}
    here, there = await make_process(**budgets), await make_process(**budgets)
    for process in (there, here, there):
        await process.scheduler.slot(-501, is_group=True)
        process.scheduler.release()
    fourth = here.scheduler.ask(-501, is_group=True)
    # Here's own count says one of three; Redis says three of three: the call waits.
    await _until(lambda: here.scheduler.waiting() == 1)
    assert not fourth.done()
    assert len(here.taken) + len(there.taken) == 3
    fourth.cancel()
    assert await there.send(777) > 0  # other chats go on


async def test_a_429_met_by_one_process_holds_the_chat_for_every_process(
    make_process: ProcessFactory, redis: Redis, redis_prefix: str
) -> None:
    # A chat's interval far shorter than the 429's deadline: only the deadline holds it.
    first = await make_process(private_interval=0.05)
    second = await make_process(private_interval=0.05)
    await first.send(101)
    first.scheduler.retry_after(101, "message", 0.5)
    deadline = redis_prefix + SCOPE + "hold:101:message"
    async with asyncio.timeout(10):
        while not await redis.exists(deadline):  # noqa: ASYNC110 - written by its own task
            await asyncio.sleep(0.005)
    held_until_ms = int(await redis.get(deadline) or 0)

    other_chat = await second.send(102)  # only that chat is held
    held = await second.send(101, priority=Priority.FINAL)
    assert round(other_chat * 1000) < held_until_ms <= round(held * 1000)
    # The second process met the deadline in Redis and holds the chat itself meanwhile.
    assert second.scheduler.held_until(101) > float("-inf")


async def test_a_call_held_back_by_another_process_waits_in_its_place(
    make_process: ProcessFactory,
) -> None:
    here, there = await make_process(global_per_second=1), await make_process(global_per_second=1)
    spent = await there.send(1)  # the other process spends the global second
    granted: list[str] = []
    refresh = here.scheduler.ask(2, is_group=False, priority=Priority.REFRESH)
    refresh.add_done_callback(lambda _: granted.append("refresh"))
    await _until(lambda: here.scheduler.waiting() == 1)  # refused by Redis: queued again
    final = here.scheduler.ask(3, is_group=False, priority=Priority.FINAL)
    final.add_done_callback(lambda _: granted.append("final"))
    async with asyncio.timeout(20):
        await asyncio.gather(refresh, final)
    assert granted == ["final", "refresh"]  # the final asked later goes first
    final_at, refresh_at = here.taken
    assert round(spent * 1000) + 1000 <= round(final_at * 1000)
    assert round(final_at * 1000) + 1000 <= round(refresh_at * 1000)


async def test_a_withdrawn_call_frees_its_place_in_flight(make_process: ProcessFactory) -> None:
    here = await make_process(max_in_flight=1, private_interval=30.0)
    there = await make_process(private_interval=30.0)
    await there.send(5)  # chat 5 is the other process's for 30 s
    held = here.scheduler.ask(5, is_group=False)
    await _until(lambda: here.scheduler.waiting() == 1)  # Redis said wait: queued again
    held.cancel()
    asking = here.scheduler.ask(6, is_group=False)
    asking.cancel()  # withdrawn before Redis answered (Redis may count it still: harmless)
    await here.send(7)  # granted: the only place in flight is free again
    assert here.taken  # and counted in Redis
    assert here.scheduler.waiting() == 0


async def test_closing_withdraws_calls_still_waiting_for_redis(
    make_process: ProcessFactory,
) -> None:
    process = await make_process()
    pending = process.scheduler.ask(8, is_group=False)
    await process.scheduler.aclose()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    assert pending.cancelled() or pending.done()


async def test_redis_cut_while_sending_falls_back_then_shares_again(
    make_process: ProcessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.shared_send_budget")
    target = urlsplit(os.environ["TEST_REDIS_URL"])
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}{target.path}"
        process = await make_process(url)
        await process.send(1)
        assert len(process.taken) == 1

        proxy.cut()
        for chat_id in range(2, 6):  # answers keep going, on this process's budget
            await process.send(chat_id)
        assert len(process.taken) == 1

        proxy.restore()
        chat_id = 100
        async with asyncio.timeout(10):
            while len(process.taken) == 1:  # asked again a second after the loss
                chat_id += 1
                await process.send(chat_id)
                await asyncio.sleep(0.02)
    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "bot.telegram.shared_send_budget"
    ]
    assert [level for level, _ in lines] == ["ERROR", "WARNING"]
    assert "Telegram send budgets are counted by this process alone" in lines[0][1]
    assert "Telegram send budgets are shared again" in lines[1][1]


async def test_a_redis_that_does_not_answer_holds_no_call_up_for_long(
    make_process: ProcessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.shared_send_budget")

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # takes every command, answers none
            pass
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        process = await make_process(f"redis://127.0.0.1:{port}/0")
        # Eight chats at once: each is granted on this process's budget, the first ones once
        # Redis has had its second to answer, the rest without asking it again.
        await asyncio.gather(*(process.send(chat_id) for chat_id in range(8)))
        await process.send(9)
        assert process.taken == []
    finally:
        server.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.telegram.shared_send_budget"]
    assert lines == [
        "Redis at Redis is unavailable; Telegram send budgets are counted by this process "
        "alone until it answers: no answer within 1 s"
    ]
