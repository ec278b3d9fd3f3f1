"""Admin statistics benchmark: /stats over a ledger of a million rows.

For each backend (a SQLite file in a temporary directory; PostgreSQL in a throw-away schema
when TEST_DATABASE_URL or --postgres-url names one) it

1. migrates an empty database and loads ``--rows`` ledger rows spread over the last
   ``--days`` days (skewed users and chats, 5 % failures), through the rollup trigger as the
   bot's own inserts go, and prints the load rate;
2. builds the whole-bot report (``Database.stats.overview``, one read-only unit of work)
   and renders it, ``--samples`` times, and prints p50 / p95 / max;
3. does the same for the busiest user and the busiest chat (``/stats user``, ``/stats chat``:
   their own ledger rows), and for a quota check (one user's rollup row for today);
4. drops everything it created.

Usage: ``python benchmarks/stats.py`` (see ``--help``).
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
import random  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote  # noqa: E402

from sqlalchemy import text  # noqa: E402

from bot.telegram.stats_format import render_report  # noqa: E402
from storage.database import Database, create_database, create_engine, normalise_url  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Base  # noqa: E402
from storage.stats import day_start  # noqa: E402

BATCH = 10_000
ERROR_CODES = (10013, 10014, 11200, 10907, -1)


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-int(percent * len(ordered)) // 100))
    return ordered[rank - 1]


def ledger_rows(
    count: int, days: int, users: int, chats: int, now: datetime, seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    span = days * 86_400
    for _ in range(count):
        # Squared uniforms: a few users and chats make most of the traffic, as in real bots.
        user = 1 + int(users * rng.random() ** 2)
        chat = user if rng.random() < 0.6 else -(1 + int(chats * rng.random() ** 2))
        failed = rng.random() < 0.05
        prompt = rng.randrange(20, 6000)
        completion = 0 if failed else rng.randrange(10, 2000)
        rows.append(
            {
                "created_at": now - timedelta(seconds=rng.random() * span),
                "user_id": user,
                "chat_id": chat,
                "model": "lite",
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "first_token_ms": None if failed else int(rng.lognormvariate(6.5, 0.6)),
                "duration_ms": int(rng.lognormvariate(8.5, 0.8)),
                "sid": f"cht000{secrets.token_hex(8)}",
                "error_code": rng.choice(ERROR_CODES) if failed else None,
            }
        )
    return rows


async def load(database: Database, rows: list[dict[str, Any]]) -> float:
    insert = Base.metadata.tables["usage_records"].insert()
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        async with database.engine.begin() as connection:
            await connection.execute(insert, rows[start : start + BATCH])
    return time.perf_counter() - started


async def timed(samples: int, action: Callable[[], Awaitable[object]]) -> dict[str, float]:
    await action()  # warm-up: caches and prepared statements, as in a running bot
    seconds = []
    for _ in range(samples):
        started = time.perf_counter()
        await action()
        seconds.append(time.perf_counter() - started)
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 95),
        "max_ms": max(ms),
    }


async def busiest(database: Database, column: str, since: datetime) -> int:
    async with database.engine.connect() as connection:
        row = await connection.execute(
            text(
                f"SELECT {column} FROM usage_records WHERE created_at >= :since "  # noqa: S608
                f"GROUP BY {column} ORDER BY COUNT(*) DESC LIMIT 1"
            ),
            {"since": since.replace(tzinfo=None) if database.backend == "sqlite" else since},
        )
        return int(row.scalar_one())


async def rows_of(database: Database, column: str, subject: int, since: datetime) -> int:
    async with database.engine.connect() as connection:
        row = await connection.execute(
            text(
                f"SELECT COUNT(*) FROM usage_records WHERE {column} = :subject "  # noqa: S608
                "AND created_at >= :since"
            ),
            {
                "subject": subject,
                "since": since.replace(tzinfo=None) if database.backend == "sqlite" else since,
            },
        )
        return int(row.scalar_one())


async def run_backend(name: str, url: str, args: argparse.Namespace) -> None:
    await upgrade(url)
    database = create_database(url)
    try:
        now = datetime.now(UTC)
        rows = ledger_rows(args.rows, args.days, args.users, args.chats, now, args.seed)
        seconds = await load(database, rows)
        del rows
        print(f"[{name}] loaded {args.rows:,} rows in {seconds:.1f} s "
              f"({args.rows / seconds:,.0f} rows/s through the trigger)")  # fmt: skip
        today = now.date()

        async def overview() -> None:
            report = await database.stats.overview(today)
            render_report(report, "en", now=now)

        since = day_start(today - timedelta(days=29))
        user_id = await busiest(database, "user_id", since)
        chat_id = await busiest(database, "chat_id", since)

        async def user_report() -> None:
            report = await database.stats.for_user(user_id, today)
            render_report(report, "en", now=now)

        async def chat_report() -> None:
            found = await database.stats.for_chat(chat_id, today)
            assert found.report is not None
            render_report(found.report, "en", now=now)

        async def quota_check() -> None:
            await database.usage.daily_use(user_id, today)

        user_rows = await rows_of(database, "user_id", user_id, since)
        chat_rows = await rows_of(database, "chat_id", chat_id, since)
        for label, action in (
            ("/stats (whole bot)", overview),
            (f"/stats user (busiest, {user_rows:,} rows in 30 d)", user_report),
            (f"/stats chat (busiest, {chat_rows:,} rows in 30 d)", chat_report),
            ("quota check (busiest user)", quota_check),
        ):
            figures = await timed(args.samples, action)
            print(
                f"[{name}] {label}: p50 {figures['p50_ms']:.1f} ms, "
                f"p95 {figures['p95_ms']:.1f} ms, max {figures['max_ms']:.1f} ms"
            )
    finally:
        await database.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30, help="spread rows over this many days")
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--chats", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as directory:
            await run_backend("sqlite", f"sqlite+aiosqlite:///{directory}/stats.sqlite3", args)
    if args.postgres_url:
        base = normalise_url(args.postgres_url)
        schema = f"bench_{secrets.token_hex(4)}"
        engine = create_engine(base)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            separator = "&" if "?" in base else "?"
            url = f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
            await run_backend("postgresql", url, args)
        finally:
            async with engine.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await engine.dispose()
    else:
        print("[postgresql] skipped: set TEST_DATABASE_URL or pass --postgres-url")


if __name__ == "__main__":
    asyncio.run(main())
