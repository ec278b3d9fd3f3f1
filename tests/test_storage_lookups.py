"""SQLite lookups: short reads run at once on the event loop's own connection, never waiting
for a write in progress (WAL), and on a reader thread when the file is locked."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage.availability import Availability
from storage.migrate import upgrade
from storage.sqlite_guard import SqliteFileGuard
from storage.sqlite_worker import SqliteWorker
from tests.support.db_rows import SQLITE_INSERT_CHAT


@pytest.fixture
async def path(tmp_path: Path) -> Path:
    await upgrade(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}")
    return tmp_path / "bot.sqlite3"


@pytest.fixture
async def worker(path: Path) -> AsyncIterator[SqliteWorker]:
    worker = SqliteWorker(SqliteFileGuard(str(path), Availability()), busy_timeout_ms=5000)
    try:
        yield worker
    finally:
        await worker.close()


def _chats(threads: list[int]) -> Callable[[sqlite3.Connection], int]:
    def unit(connection: sqlite3.Connection) -> int:
        threads.append(threading.get_ident())
        count: int = connection.execute("SELECT count(*) FROM chats").fetchone()[0]
        return count

    return unit


async def test_a_lookup_runs_on_the_loop_and_sees_the_newest_commit(worker: SqliteWorker) -> None:
    threads: list[int] = []
    assert await worker.lookup(_chats(threads)) == 0
    await worker.write(lambda connection: connection.execute(SQLITE_INSERT_CHAT, (1, "uid-1")))
    assert await worker.lookup(_chats(threads)) == 1
    assert threads == [threading.get_ident()] * 2


async def test_a_lookup_does_not_wait_for_a_write_in_progress(worker: SqliteWorker) -> None:
    inserted, release = threading.Event(), threading.Event()

    def slow_insert(connection: sqlite3.Connection) -> None:
        connection.execute(SQLITE_INSERT_CHAT, (1, "uid-1"))
        inserted.set()
        release.wait(10)  # the write lock is held, the row not committed

    writing = asyncio.create_task(worker.write(slow_insert))
    await asyncio.to_thread(inserted.wait, 10)
    started = time.monotonic()
    assert await worker.lookup(_chats([])) == 0
    assert time.monotonic() - started < 0.5
    release.set()
    await writing
    assert await worker.lookup(_chats([])) == 1


async def test_a_lookup_of_a_locked_file_waits_on_a_reader_thread(
    worker: SqliteWorker, path: Path
) -> None:
    threads: list[int] = []
    # Another program holds the file whole: no other connection may even read it.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute(SQLITE_INSERT_CHAT, (1, "uid-1"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticking = asyncio.create_task(tick())
    looking = asyncio.create_task(worker.lookup(_chats(threads)))
    await asyncio.sleep(0.3)
    assert not looking.done()
    assert ticks >= 5  # the event loop was not held while the lookup waited
    other.close()
    assert await looking == 1
    ticking.cancel()
    assert threads
    assert threading.get_ident() not in threads  # read on a reader thread
    assert await worker.lookup(_chats(threads)) == 1  # and on the loop again, once it can
    assert threads[-1] == threading.get_ident()
