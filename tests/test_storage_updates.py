"""Claims on Telegram update ids (``Database.updates.claim``) on real databases: the first
claim wins, a re-delivery loses, also after a restart and under concurrency; pruning forgets
only what is old."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from storage.database import Database, create_database
from tests.support import db_rows

BOT_ID = 123456
OTHER_BOT_ID = 654321
START = datetime(2026, 12, 3, 8, 0, 0, 250000, tzinfo=UTC)


class Clock:
    """A hand-moved clock for the database's timestamps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _rows(database: Database) -> list[tuple[int, int, datetime]]:
    rows = await db_rows.rows(
        database,
        "SELECT bot_id, update_id, received_at FROM processed_updates ORDER BY bot_id, update_id",
    )
    return [(row.bot_id, row.update_id, row.received_at) for row in rows]


async def test_the_first_claim_wins_and_a_redelivery_loses(database: Database) -> None:
    timed = Database(database.engine, clock=Clock(START))
    try:
        assert await timed.updates.claim(BOT_ID, 901)
        assert not await timed.updates.claim(BOT_ID, 901)
        assert await timed.updates.claim(BOT_ID, 902)
        # Update ids count per bot: another bot's 901 is another update.
        assert await timed.updates.claim(OTHER_BOT_ID, 901)
        assert not await timed.updates.claim(OTHER_BOT_ID, 901)
    finally:
        await timed.runner.close()  # the engine is the fixture's
    assert await _rows(database) == [
        (BOT_ID, 901, START),
        (BOT_ID, 902, START),
        (OTHER_BOT_ID, 901, START),
    ]


async def test_a_claim_outlives_a_restart(database_url: str, database: Database) -> None:
    assert await database.updates.claim(BOT_ID, 2**31 + 5)  # ids beyond 32 bits fit
    await database.dispose()
    restarted = create_database(database_url)
    try:
        assert not await restarted.updates.claim(BOT_ID, 2**31 + 5)
        assert await restarted.updates.claim(BOT_ID, 2**31 + 6)
    finally:
        await restarted.dispose()


async def test_of_concurrent_claims_of_one_id_exactly_one_wins(database: Database) -> None:
    outcomes = await asyncio.gather(*(database.updates.claim(BOT_ID, 77) for _ in range(40)))
    assert sorted(outcomes) == [False] * 39 + [True]
    # Distinct ids claimed together (on SQLite: committed in one group) all win.
    distinct = await asyncio.gather(
        *(database.updates.claim(BOT_ID, 1000 + n) for n in range(100))
    )
    assert all(distinct)
    assert len(await _rows(database)) == 101


async def test_forgetting_drops_only_claims_older_than_the_cut(database: Database) -> None:
    clock = Clock(START)
    timed = Database(database.engine, clock=clock)
    try:
        assert await timed.updates.claim(BOT_ID, 1)
        clock.now = START + timedelta(hours=23)
        assert await timed.updates.claim(BOT_ID, 2)
        clock.now = START + timedelta(hours=25)
        assert await timed.updates.claim(BOT_ID, 3)

        cut = clock.now - timedelta(hours=24)
        assert await timed.updates.forget(cut) == 1
        assert await timed.updates.forget(cut) == 0
        # A claim exactly at the cut is kept: only older ones go.
        assert await timed.updates.forget(START + timedelta(hours=23)) == 0

        assert not await timed.updates.claim(BOT_ID, 2)
        assert not await timed.updates.claim(BOT_ID, 3)
        # Telegram gave up on update 1 long ago; an id seen again after that counts as new.
        assert await timed.updates.claim(BOT_ID, 1)
    finally:
        await timed.runner.close()  # the engine is the fixture's
    assert await _rows(database) == [
        (BOT_ID, 1, START + timedelta(hours=25)),
        (BOT_ID, 2, START + timedelta(hours=23)),
        (BOT_ID, 3, START + timedelta(hours=25)),
    ]
