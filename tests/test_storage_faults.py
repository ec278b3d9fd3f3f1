"""Storage when its SQLite file is taken away: nothing creates a new file, nothing is written to
a file that is no longer the database, the reason is named, and the migration is the one place
that creates a database (saying so)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from storage.availability import Availability
from storage.database import create_database, create_engine
from storage.errors import DatabaseUnavailable
from storage.migrate import upgrade
from storage.repositories.conversations import Arrival
from storage.sqlite_guard import SqliteFileGuard
from storage.sqlite_worker import SqliteWorker
from tests.support import db_rows
from tests.support.db_rows import SQLITE_INSERT_CHAT

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ARRIVAL = Arrival(
    user_id=1,
    username=None,
    first_name="Ann",
    language_code="en",
    chat_id=1,
    chat_type="private",
    title=None,
    thread_id=0,
    scope_user_id=0,
)
MISSING = "file missing (its directory deleted or moved?)"


def _url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'bot.sqlite3'}"


def _chats(connection: sqlite3.Connection) -> int:
    count: int = connection.execute("SELECT count(*) AS chats FROM chats").fetchone()["chats"]
    return count


async def test_no_connection_creates_a_missing_database_file(tmp_path: Path) -> None:
    data, away = tmp_path / "data", tmp_path / "away"
    await upgrade(_url(data))
    database = create_database(_url(data))
    fresh = create_database(_url(data))
    engine = create_engine(_url(data))
    try:
        assert await database.chats.get(1) is None  # a reader holds an open connection now
        data.rename(away)
        data.mkdir()  # the directory is back, empty

        with pytest.raises(DatabaseUnavailable, match=r"file missing"):
            await database.chats.get(1)
        with pytest.raises(DatabaseUnavailable, match=r"file missing"):
            await db_rows.settled_arrival(database, ARRIVAL)  # the other reader, maybe first
        with pytest.raises(DatabaseUnavailable, match=r"file missing"):
            await fresh.chats.get(1)  # a new handle's first connection
        with pytest.raises(DatabaseUnavailable, match=r"file missing"):
            await db_rows.upsert_user(fresh, 1)  # and its writer's
        with pytest.raises(OperationalError, match="unable to open database file"):
            async with engine.connect():  # a bare engine too opens existing files only
                pass
        assert await database.health() == MISSING
        assert list(data.iterdir()) == []
    finally:
        await engine.dispose()
        await fresh.dispose()
        await database.dispose()


async def test_a_write_whose_file_goes_away_before_commit_keeps_nothing(tmp_path: Path) -> None:
    data, away = tmp_path / "data", tmp_path / "away"
    await upgrade(_url(data))
    worker = SqliteWorker(
        SqliteFileGuard(str(data / "bot.sqlite3"), Availability()), busy_timeout_ms=1000
    )
    try:

        def insert_as_the_directory_goes(connection: sqlite3.Connection) -> None:
            connection.execute(SQLITE_INSERT_CHAT, (1, "uid-1"))
            data.rename(away)  # between the unit's statements and the group's COMMIT

        with pytest.raises(DatabaseUnavailable, match=r"file missing"):
            await worker.write(insert_as_the_directory_goes)
        with pytest.raises(DatabaseUnavailable, match=r"file missing"):
            await worker.write(
                lambda connection: connection.execute(SQLITE_INSERT_CHAT, (2, "uid-2"))
            )
        away.rename(data)

        assert await worker.read(_chats) == 0  # not one row went to the moved file
        await worker.write(lambda connection: connection.execute(SQLITE_INSERT_CHAT, (3, "uid-3")))
        assert await worker.read(_chats) == 1
    finally:
        await worker.close()


async def test_a_connection_refuses_a_file_without_the_schema(tmp_path: Path) -> None:
    url = _url(tmp_path)
    await upgrade(url)
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as db:
        db.execute("DROP TABLE alembic_version")
    database = create_database(url)
    try:
        problem = "schema missing (no alembic_version table): not a migrated database"
        assert await database.health() == problem
        with pytest.raises(DatabaseUnavailable, match=r"schema missing"):
            await db_rows.settled_arrival(database, ARRIVAL)
    finally:
        await database.dispose()


async def test_the_migration_creates_a_missing_file_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "new" / "bot.sqlite3"
    caplog.set_level(logging.INFO, logger="storage.migrate")
    await upgrade(_url(path.parent))
    assert path.is_file()
    assert f"database file {path} does not exist: creating a new, empty database" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    ]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []

    caplog.clear()
    await upgrade(_url(path.parent))  # an existing database: nothing to say
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []

    empty = tmp_path / "empty.sqlite3"
    empty.touch()  # say, what replaced the database while the bot ran
    await upgrade(f"sqlite+aiosqlite:///{empty}")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"database {empty} has no schema yet: creating it"
    ]


async def test_start_up_refuses_a_database_whose_tables_are_gone(tmp_path: Path) -> None:
    url = _url(tmp_path)
    await upgrade(url)
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as db:
        db.execute("ALTER TABLE messages RENAME TO messages_elsewhere")
    # alembic_version still says head, so the migration alone would call it up to date.
    with pytest.raises(DatabaseUnavailable, match=r"schema missing .*: no table messages$"):
        await upgrade(url)


# Run in a child process: where the file is memory-mapped (PRAGMA mmap_size), the read below
# is a SIGBUS, which would end the whole test run instead of failing one test. Unmapped, it is
# an error, or the pages still in the connection's cache.
TRUNCATED_READ = textwrap.dedent(
    """
    import asyncio, os, sqlite3, sys
    from storage.availability import Availability
    from storage.sqlite_guard import SqliteFileGuard
    from storage.sqlite_worker import SqliteWorker

    async def main(path: str) -> None:
        worker = SqliteWorker(SqliteFileGuard(path, Availability()), busy_timeout_ms=1000)
        total = "SELECT sum(length(x)) FROM filler"
        try:
            # The writer's connection open beside the reader's, as in the running bot.
            await worker.write(lambda c: c.execute("INSERT INTO filler VALUES (x'00')"))
            print("before", await worker.read(lambda c: c.execute(total).fetchone()[0]))
            os.truncate(path, 200 * 4096)  # the file cut short in place: same inode
            try:
                value = await worker.read(lambda c: c.execute(total).fetchone()[0])
            except sqlite3.DatabaseError as exc:
                print("after: an error:", exc)
            else:
                print("after: read from the page cache:", value)
        finally:
            await worker.close()

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_file_cut_short_under_the_bot_fails_the_read_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await upgrade(_url(tmp_path))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TABLE filler (x BLOB)")
        db.executemany("INSERT INTO filler VALUES (randomblob(1000))", [()] * 2000)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        TRUNCATED_READ,
        str(path),
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await child.communicate()
    assert child.returncode == 0, stderr.decode()  # not -SIGBUS
    before, after = stdout.decode().splitlines()
    assert before == "before 2000001"
    assert after in (
        "after: an error: database disk image is malformed",
        "after: read from the page cache: 2000001",
    )
