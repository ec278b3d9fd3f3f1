"""Shared send budget benchmark: what counting a Telegram call in Redis costs.

1. ``SendWindows.take`` alone, one call after another (a chat's window and the global one, as
   a message takes): microseconds per take, p50 / p95 / p99, and Redis's own time per call of
   the script (``INFO commandstats``);
2. the same from ``--concurrency`` tasks at once (one client, its connection pool): takes a
   second;
3. the send scheduler granting ``--grants`` calls to distinct chats (budgets too large to
   hold any back), without and with the shared budget: microseconds per grant, from the ask
   to the waiter holding its slot.

Needs a Redis (``--redis-url``, default TEST_REDIS_URL); its keys live under a prefix of
their own and are deleted at the end. Usage: ``python benchmarks/send_budget.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, and its name would hide packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from redis.asyncio import Redis  # noqa: E402

from bot.service.clock import SYSTEM_CLOCK  # noqa: E402
from bot.telegram.send_budgets import SendBudgets  # noqa: E402
from bot.telegram.send_scheduler import SendScheduler  # noqa: E402
from bot.telegram.shared_send_budget import SharedSendBudget  # noqa: E402
from coordination.send_windows import RateWindow, SendWindows  # noqa: E402

HUGE = 10_000_000


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(percent / 100 * len(ordered)))]


async def _script_usec(redis: Redis) -> tuple[int, float]:
    """Calls and total microseconds of EVALSHA so far, as Redis counts them."""
    stats = await redis.info("commandstats")
    entry = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(entry["calls"]), float(entry["usec"])


async def sequential(windows: SendWindows, redis: Redis, count: int) -> None:
    global_window = RateWindow("global", HUGE, 1.0)
    for n in range(200):  # warm-up: the script loaded, the connection open
        await windows.take([RateWindow(f"warm:{n}", 1, 1.0), global_window])
    calls_before, usec_before = await _script_usec(redis)
    took: list[float] = []
    for n in range(count):
        start = time.perf_counter()
        await windows.take([RateWindow(f"chat:{n}:message", 1, 1.0), global_window])
        took.append((time.perf_counter() - start) * 1e6)
    calls_after, usec_after = await _script_usec(redis)
    inside = (usec_after - usec_before) / max(1, calls_after - calls_before)
    print(
        f"take, one after another ({count}): p50 {_percentile(took, 50):.0f} µs, "
        f"p95 {_percentile(took, 95):.0f} µs, p99 {_percentile(took, 99):.0f} µs, "
        f"mean {statistics.fmean(took):.0f} µs; inside Redis {inside:.1f} µs per call"
    )


async def concurrent(windows: SendWindows, count: int, concurrency: int) -> None:
    global_window = RateWindow("global", HUGE, 1.0)
    chats = iter(range(count))

    async def worker() -> None:
        for n in chats:
            await windows.take([RateWindow(f"many:{n}:message", 1, 1.0), global_window])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    print(
        f"take, {concurrency} at once ({count}): {count / elapsed:,.0f} takes/s, "
        f"{elapsed / count * 1e6:.0f} µs each"
    )


async def scheduler_grants(windows: SendWindows | None, count: int, label: str) -> None:
    budgets = SendBudgets(global_per_second=HUGE)  # and 48 in flight, as in production
    shared = SharedSendBudget(windows, "bench:") if windows is not None else None
    scheduler = SendScheduler(budgets, SYSTEM_CLOCK, shared=shared)

    async def one(chat_id: int) -> None:
        await scheduler.slot(chat_id, is_group=False)
        scheduler.release()

    await asyncio.gather(*(one(-n - 1) for n in range(200)))  # warm-up
    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    elapsed = time.perf_counter() - start
    await scheduler.aclose()
    print(f"scheduler, {label} ({count} grants at once): {elapsed / count * 1e6:.0f} µs/grant")


async def main(arguments: argparse.Namespace) -> None:
    redis = Redis.from_url(arguments.redis_url)
    prefix = f"bench-{secrets.token_hex(4)}:"
    windows = SendWindows(redis, prefix)
    try:
        await sequential(windows, redis, arguments.takes)
        await concurrent(windows, arguments.takes, arguments.concurrency)
        await scheduler_grants(None, arguments.grants, "in-process budget")
        await scheduler_grants(windows, arguments.grants, "shared budget on Redis")
    finally:
        keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL", ""))
    parser.add_argument("--takes", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--grants", type=int, default=5000)
    parsed = parser.parse_args()
    if not parsed.redis_url:
        parser.error("no Redis: pass --redis-url or set TEST_REDIS_URL")
    asyncio.run(main(parsed))
