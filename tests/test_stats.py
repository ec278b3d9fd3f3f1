"""Statistics queries on SQLite and PostgreSQL: rollups kept by the trigger, reports with
known figures, one user and one chat from the ledger, user lookup, and the paged export."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from storage.database import Database, create_database
from storage.dto import TokenUsage
from storage.migrate import upgrade
from storage.models import Base
from storage.repositories.usage import Usage
from storage.stats import (
    DAYS,
    ExportRow,
    UsageReport,
    WindowStats,
    day_start,
    latency_bucket,
    nearest_rank,
)
from tests.support import db_rows

TODAY = date(2026, 11, 29)
NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


async def record(
    database: Database,
    at: datetime,
    *,
    user_id: int | None,
    chat_id: int | None,
    prompt: int = 0,
    completion: int = 0,
    first_token_ms: int | None = None,
    duration_ms: int | None = None,
    error_code: int | None = None,
    model: str = "lite",
) -> int:
    usage = Usage(database.runner, lambda: at)
    return await usage.record(
        model=model,
        usage=TokenUsage(prompt, completion, prompt + completion),
        user_id=user_id,
        chat_id=chat_id,
        first_token_ms=first_token_ms,
        duration_ms=duration_ms,
        error_code=error_code,
        sid=f"sid{at:%d%H%M%S}",
    )


async def overview(database: Database, today: date = TODAY) -> UsageReport:
    return await database.stats.overview(today)


async def seed_known(database: Database) -> None:
    """A ledger whose figures the tests below know by heart."""
    await db_rows.upsert_user(database, 1, username="Alice", first_name="Alice")
    await db_rows.upsert_user(database, 2, first_name="Bob")
    await db_rows.upsert_chat(database, 100, type="private", title="Alice")
    await db_rows.upsert_chat(database, -200, type="group", title="Team")
    # today
    await record(database, NOON, user_id=1, chat_id=100, prompt=100, completion=50,
                 first_token_ms=200, duration_ms=1000)  # fmt: skip
    await record(database, NOON, user_id=2, chat_id=-200, prompt=200, completion=100,
                 first_token_ms=400, duration_ms=3000)  # fmt: skip
    await record(database, NOON, user_id=1, chat_id=-200, error_code=10013, duration_ms=50)
    # three days ago, at the last microsecond of the day
    late = datetime(2026, 11, 26, 23, 59, 59, 999999, tzinfo=UTC)
    await record(database, late, user_id=3, chat_id=300, prompt=600, completion=400,
                 first_token_ms=1234, duration_ms=12345)  # fmt: skip
    # ten days ago, at midnight
    midnight = datetime(2026, 11, 19, tzinfo=UTC)
    await record(database, midnight, user_id=2, chat_id=-200, error_code=-1)
    await record(database, midnight, user_id=None, chat_id=100, prompt=10)
    # 30 days ago (the window's first day) and 31 days ago (outside every window)
    await record(database, datetime(2026, 10, 31, 8, tzinfo=UTC), user_id=1, chat_id=100,
                 completion=5, first_token_ms=100, duration_ms=100)  # fmt: skip
    await record(database, datetime(2026, 10, 30, 23, 59, tzinfo=UTC), user_id=5,
                 chat_id=500, prompt=99_999)  # fmt: skip


def figures(window: WindowStats) -> tuple[Any, ...]:
    return (
        window.requests,
        window.failed_requests,
        window.prompt_tokens,
        window.completion_tokens,
        window.total_tokens,
        window.users,
        window.chats,
        window.errors,
    )


def latencies(window: WindowStats) -> tuple[int | None, ...]:
    return (
        window.first_token_p50_ms,
        window.first_token_p95_ms,
        window.duration_p50_ms,
        window.duration_p95_ms,
    )


async def test_empty_ledger_gives_an_empty_report(database: Database) -> None:
    report = await overview(database)
    assert report.empty
    assert [w.days for w in report.windows] == [1, 7, 30]
    for window in report.windows:
        assert figures(window) == (0, 0, 0, 0, 0, 0, 0, ())
        assert latencies(window) == (None, None, None, None)
    assert report.daily_tokens == (0,) * DAYS
    assert report.top_users == report.top_chats == ()


async def test_overview_figures_from_the_rollups(database: Database) -> None:
    await seed_known(database)
    report = await overview(database)
    today, week, month = report.windows
    assert figures(today) == (3, 1, 300, 150, 450, 2, 2, ((10013, 1),))
    assert latencies(today) == (200, 400, 1000, 3000)
    assert figures(week) == (4, 1, 900, 550, 1450, 3, 3, ((10013, 1),))
    assert latencies(week) == (400, 1200, 3000, 12000)
    assert figures(month) == (7, 2, 910, 555, 1465, 3, 3, ((-1, 1), (10013, 1)))
    assert latencies(month) == (200, 1200, 1000, 12000)

    daily = report.daily_tokens
    assert daily[-1] == 450
    assert daily[-4] == 1000
    assert daily[-11] == 10
    assert daily[0] == 5
    assert sum(daily) == 1465
    assert [(r.id, r.name, r.requests, r.total_tokens) for r in report.top_users] == [
        (3, None, 1, 1000),
        (2, "Bob", 2, 300),
        (1, "@Alice", 3, 155),
    ]
    assert [(r.id, r.name, r.requests, r.total_tokens) for r in report.top_chats] == [
        (300, None, 1, 1000),
        (-200, "Team", 3, 300),
        (100, "Alice", 3, 165),
    ]


async def test_one_user_and_one_chat_from_the_ledger(database: Database) -> None:
    await seed_known(database)
    stats = database.stats
    user = await stats.for_user(1, TODAY)
    chat = (await stats.for_chat(-200, TODAY)).report
    assert chat is not None
    nobody = await stats.for_user(999, TODAY)
    today, _week, month = user.windows
    assert figures(today) == (2, 1, 100, 50, 150, 1, 2, ((10013, 1),))
    assert figures(month) == (3, 1, 100, 55, 155, 1, 2, ((10013, 1),))
    assert latencies(month) == (100, 200, 100, 1000)
    assert [(r.id, r.name, r.total_tokens) for r in user.top_chats] == [
        (100, "Alice", 155),
        (-200, "Team", 0),
    ]
    assert user.top_users == ()
    assert user.daily_tokens[-1] == 150
    assert user.daily_tokens[0] == 5

    c_today, _c_week, c_month = chat.windows
    assert figures(c_today) == (2, 1, 200, 100, 300, 2, 1, ((10013, 1),))
    assert figures(c_month) == (3, 2, 200, 100, 300, 2, 1, ((-1, 1), (10013, 1)))
    assert [(r.id, r.name, r.requests) for r in chat.top_users] == [
        (2, "Bob", 2),
        (1, "@Alice", 1),
    ]
    assert nobody.empty
    assert nobody.windows[-1].users == 0


async def test_rollups_agree_with_the_ledger_on_random_traffic(database: Database) -> None:
    rng = random.Random(7)
    for _ in range(150):
        at = NOON - timedelta(minutes=rng.randrange(0, 40 * 24 * 60))
        failed = rng.random() < 0.1
        await record(
            database,
            at,
            user_id=rng.choice([None, 1, 2, 3, 4]),
            chat_id=rng.choice([None, 10, -20, 30]),
            prompt=rng.randrange(0, 3000),
            completion=0 if failed else rng.randrange(0, 2000),
            first_token_ms=None if failed else rng.randrange(50, 20_000),
            duration_ms=rng.randrange(100, 90_000),
            error_code=rng.choice([10013, 11200, -1]) if failed else None,
        )
    report = await overview(database)
    stats = database.stats
    for window in report.windows:
        since = day_start(TODAY - timedelta(days=window.days - 1))
        totals = await db_rows.usage_totals(database, since)
        assert (
            window.requests,
            window.failed_requests,
            window.prompt_tokens,
            window.completion_tokens,
            window.total_tokens,
        ) == (
            totals.requests,
            totals.failed_requests,
            totals.prompt_tokens,
            totals.completion_tokens,
            totals.total_tokens,
        )
        latency = await db_rows.latency(database, since)
        assert latencies(window) == tuple(
            None if value is None else latency_bucket(value)
            for value in (
                latency.first_token_p50_ms,
                latency.first_token_p95_ms,
                latency.duration_p50_ms,
                latency.duration_p95_ms,
            )
        )
    # One chat from the ledger sums to what the rollup says for it.
    chat = (await stats.for_chat(-20, TODAY)).report
    assert chat is not None
    for window in chat.windows:
        since = day_start(TODAY - timedelta(days=window.days - 1))
        latency = await db_rows.latency(database, since, chat_id=-20)
        assert latencies(window) == tuple(
            None if value is None else latency_bucket(value)
            for value in (
                latency.first_token_p50_ms,
                latency.first_token_p95_ms,
                latency.duration_p50_ms,
                latency.duration_p95_ms,
            )
        )
        totals = await db_rows.usage_totals(database, since, chat_id=-20)
        assert (window.requests, window.total_tokens) == (
            totals.requests,
            totals.total_tokens,
        )
    (rolled,) = [r for r in report.top_chats if r.id == -20]
    assert chat.windows[-1].total_tokens == rolled.total_tokens
    assert chat.windows[-1].requests == rolled.requests


async def test_latency_buckets_in_sql_match_python(database: Database) -> None:
    values = [0, 7, 99, 100, 104, 999, 1000, 1049, 1050, 12_345, 99_999, 100_000, 999_999]
    values += [1_234_567, 123_456_789]
    for value in values:
        await record(database, NOON, user_id=1, chat_id=1, first_token_ms=value)
    stored = {
        row.bucket: row.requests
        for row in await db_rows.rows(
            database, "SELECT bucket, requests FROM usage_daily_latency WHERE metric = 0"
        )
    }
    expected: dict[int, int] = {}
    for value in values:
        expected[latency_bucket(value)] = expected.get(latency_bucket(value), 0) + 1
    assert stored == expected
    assert expected == {
        0: 1,
        7: 1,
        99: 1,
        100: 2,
        995: 1,
        1000: 2,
        1050: 1,
        12_000: 1,
        99_500: 1,
        100_000: 1,
        995_000: 1,
        1_200_000: 1,
        123_450_000: 1,
    }


async def test_migration_rolls_up_rows_already_in_the_ledger(database_url: str) -> None:
    await upgrade(database_url, "0001")
    old = create_database(database_url)
    try:
        async with old.engine.begin() as connection:
            # The ledger as revision 0001 knew it, written before the rollups existed.
            ledger = Base.metadata.tables["usage_records"]
            row = {"created_at": NOON, "model": "lite", "chat_id": 1, "sid": None,
                   "conversation_id": None, "message_id": None}  # fmt: skip
            await connection.execute(
                ledger.insert(),
                [
                    {**row, "user_id": 1, "prompt_tokens": 1, "completion_tokens": 2,
                     "total_tokens": 3, "first_token_ms": 300, "duration_ms": 900,
                     "error_code": None},
                    {**row, "user_id": 2, "prompt_tokens": 0, "completion_tokens": 0,
                     "total_tokens": 0, "first_token_ms": None, "duration_ms": None,
                     "error_code": 10013},
                ],
            )  # fmt: skip
    finally:
        await old.dispose()
    await upgrade(database_url)
    database = create_database(database_url)
    try:
        report = await overview(database)
    finally:
        await database.dispose()
    today = report.windows[0]
    assert figures(today) == (2, 1, 1, 2, 3, 2, 1, ((10013, 1),))
    assert latencies(today) == (300, 300, 900, 900)


async def test_find_user_by_id_or_username(database: Database) -> None:
    await db_rows.upsert_user(database, 42, username="CamelCase", first_name="Cam")
    stats = database.stats
    by_id = await stats.find_user("42")
    by_name = await stats.find_user("@camelcase")
    assert by_id is not None
    assert by_name is not None
    assert by_id.id == by_name.id == 42
    assert await stats.find_user("@nobody") is None
    assert await stats.find_user("43") is None
    assert await stats.find_user("camelcase") is None  # a name needs its @
    assert await stats.find_user("@") is None
    assert (await stats.find_user(42)) == by_id
    # Not an id a database can hold: nobody, never an OverflowError or ValueError.
    for odd in ("²", "99999999999999999999999", 2**63, -(2**63) - 1):
        assert await stats.find_user(odd) is None


async def test_export_pages_through_ties_in_time_order(database: Database) -> None:
    await db_rows.upsert_user(database, 1, username="ann")
    times = [NOON - timedelta(days=40), NOON - timedelta(days=2), NOON, NOON, NOON, NOON]
    ids = [
        await record(database, at, user_id=1 if n % 2 else 2, chat_id=7, prompt=n)
        for n, at in enumerate(times)
    ]
    since = NOON - timedelta(days=30)
    pages: list[list[ExportRow]] = []
    after: tuple[datetime, int] | None = None
    stats = database.stats
    while True:
        page = await stats.export_page(since, after, limit=2)
        if not page:
            break
        pages.append(page)
        after = (page[-1].created_at, page[-1].id)
    assert [len(page) for page in pages] == [2, 2, 1]
    rows = [row for page in pages for row in page]
    assert [row.id for row in rows] == ids[1:]
    assert [row.prompt_tokens for row in rows] == [1, 2, 3, 4, 5]
    assert [row.username for row in rows] == ["ann", None, "ann", None, "ann"]
    assert rows[0].values()[1] == (NOON - timedelta(days=2)).isoformat()


def test_nearest_rank() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([(10, 1), (20, 1), (30, 1), (40, 1)], 50) == 20
    assert nearest_rank([(10, 1), (20, 1), (30, 1), (40, 1)], 95) == 40
    assert nearest_rank([(10, 19), (99, 1)], 95) == 10
    assert nearest_rank([(10, 18), (99, 2)], 95) == 99
    assert nearest_rank([(5, 0), (6, 1)], 50) == 6


async def test_top_lists_are_exact_when_month_bounds_mislead(database: Database) -> None:
    """Tokens spent in the window's first month but before the window inflate that month's
    bound: the search must still rank by the window's own sums."""
    rng = random.Random(3)
    spent: dict[int, int] = {}
    outside = datetime(2026, 10, 5, 9, tzinfo=UTC)  # same month as the window's first day
    for user_id in range(1, 41):
        # Users 1-10 spent a lot before the window and little inside it.
        if user_id <= 10:
            await record(database, outside, user_id=user_id, chat_id=-user_id, prompt=10**6)
        for _ in range(3):
            tokens = rng.randrange(1, 5000) if user_id > 10 else rng.randrange(1, 50)
            at = NOON - timedelta(days=rng.randrange(0, 30))
            await record(database, at, user_id=user_id, chat_id=-user_id, prompt=tokens)
            spent[user_id] = spent.get(user_id, 0) + tokens
    report = await overview(database)
    best = sorted(spent.items(), key=lambda item: (-item[1], item[0]))[:5]
    assert [(r.id, r.total_tokens) for r in report.top_users] == best
    assert [(-r.id, r.total_tokens) for r in report.top_chats] == best
    assert all(r.requests == 3 for r in report.top_users)
