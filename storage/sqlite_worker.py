"""SQLite units of work that run whole in a thread of their own, writes committed in groups.

Through aiosqlite every statement is several hops between the event loop and the driver's
thread, and a writer holds SQLite's single write lock across all of them: under load each hop
waits for a turn of a busy loop, so writes queue behind the lock (about 120 turns/s on two
cores). Here a unit of work is a plain function of a :class:`sqlite3.Connection`, run start to
finish in one hop:

- writes go to one writer thread. Every unit queued while it was busy is committed in the same
  transaction (group commit). A unit that raises is rolled back alone and the others still
  commit: the group then runs again with each unit in a savepoint of its own (the first run
  has none, which saves two statements per unit; see :func:`_commit`). A caller's await
  returns once its unit is committed.
- reads run on a few reader threads with a connection each (WAL: readers never wait for the
  writer) in autocommit, so every statement sees the newest commit.
- lookups (short reads by key: a chat, a quota) run at once on the event loop's own
  connection: a hop to a thread and back costs more than the read, and under load each hop
  waits a turn of the busy loop. One that finds the file busy (SQLite's recovery, a lock
  held by another program) goes to a reader thread instead, which waits as reads do.

Every write of the process goes through the one writer thread, so two writers of one process
never wait on each other's lock inside SQLite. Rows come back as :class:`sqlite3.Row`, read by
column name.

Every write transaction (at BEGIN and again before COMMIT) and every read first asks the
:class:`~storage.sqlite_guard.SqliteFileGuard` whether the file at the path is still the one
opened, and writable; connections open it with ``mode=rw`` and check its schema, so nothing is
ever written to a deleted or moved file, nor to an empty one created in its place.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from storage.sqlite_guard import SCHEMA_QUERY, SqliteFileGuard

T = TypeVar("T")
Unit = Callable[[sqlite3.Connection], T]

# Units committed together at most; a bound keeps one failing COMMIT from taking too many down.
MAX_GROUP = 256
# 64 MiB of page cache per connection: history reads touch a few dozen pages of a large file.
# No memory-mapped reads: a file truncated or failing under a mapping kills the process with
# SIGBUS, where read() returns an error that fails the unit cleanly; the storage benchmark
# shows no difference (benchmarks/RESULTS.md). SQLite maps the WAL index (-shm) regardless,
# which is why SqliteFileGuard checks it is writable before each unit.
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-65536",
    "PRAGMA mmap_size=0",
)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled; the unit ran regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


def _settle_all(outcomes: list[_Outcome]) -> None:
    for future, value, error in outcomes:
        _settle(future, value, error)


def _commit(
    connection: sqlite3.Connection,
    group: list[tuple[Unit[Any], asyncio.Future[Any]]],
    guard: SqliteFileGuard,
    *,
    isolated: bool,
) -> list[_Outcome] | None:
    """Run the group's units in one transaction and commit it; each unit's outcome.

    ``isolated``: each unit in a savepoint of its own, so one that raises is undone alone
    (a group of one needs none: its transaction is the unit). Otherwise the units run one
    after the other without savepoints, which spares two statements per unit, and thus two
    waits for the GIL the event loop holds; if one raises, nothing is kept and None says so:
    the caller runs the group again, isolated. Units are functions of the connection alone,
    so running one again does what running it once would have done.
    """
    outcomes: list[_Outcome] = []
    savepoints = isolated and len(group) > 1
    connection.execute("BEGIN IMMEDIATE")
    try:
        for unit, future in group:
            if savepoints:
                connection.execute("SAVEPOINT unit")
            try:
                value = unit(connection)
            except Exception as exc:  # the unit's own failure
                if not isolated:
                    connection.execute("ROLLBACK")
                    return None
                if savepoints:  # undo it alone
                    connection.execute("ROLLBACK TO unit")
                    connection.execute("RELEASE unit")
                else:  # a group of one: nothing else to keep
                    connection.execute("ROLLBACK")
                    return [(future, None, exc)]
                outcomes.append((future, None, exc))
            else:
                if savepoints:
                    connection.execute("RELEASE unit")
                outcomes.append((future, value, None))
        # The file may have gone while the units ran: then none of them is kept.
        guard.check()
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return outcomes


class SqliteWorker:
    """Owns the writer thread, the reader threads and their connections to one file."""

    def __init__(self, guard: SqliteFileGuard, *, busy_timeout_ms: int, readers: int = 2) -> None:
        self._guard = guard
        self._busy_timeout_ms = busy_timeout_ms
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._queue: deque[tuple[Unit[Any], asyncio.Future[Any]]] = deque()
        self._write_connection: sqlite3.Connection | None = None
        self._loop_connection: sqlite3.Connection | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False

    def _connect(self, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
        # isolation_level=None: the driver never opens transactions behind our back; units
        # and groups say BEGIN / SAVEPOINT themselves. check_same_thread=False only so that
        # close() may run on another thread once every job has finished.
        guard = self._guard
        busy_ms = self._busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
        try:
            connection = sqlite3.connect(
                guard.uri,
                uri=True,
                timeout=busy_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.OperationalError as exc:
            raise guard.cannot_open(exc) from exc
        connection.row_factory = sqlite3.Row
        try:
            # Before the first pragma: journal_mode=WAL would already write to an empty file.
            guard.check()
            guard.check_schema(row["name"] for row in connection.execute(SCHEMA_QUERY))
            for pragma in _PRAGMAS:
                connection.execute(pragma)
            connection.execute(f"PRAGMA busy_timeout={busy_ms}")
        except BaseException:
            connection.close()
            raise
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _checked(
        self, connection: sqlite3.Connection | None, busy_timeout_ms: int | None = None
    ) -> sqlite3.Connection:
        """``connection`` once the file is checked, or a new one (checked as it opens)."""
        if connection is None:
            return self._connect(busy_timeout_ms)
        self._guard.check()
        return connection

    async def write(self, unit: Unit[T]) -> T:
        """Run ``unit`` in a transaction (shared with other queued units) and return its
        result once committed; its exception, with nothing of it kept, if it raises."""
        if self._closed:
            raise RuntimeError("the SQLite worker is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        # One drain per unit queued; a drain that finds the queue empty (an earlier one took
        # its unit along) returns at once.
        self._writer.submit(self._drain)
        return await future

    async def read(self, unit: Unit[T]) -> T:
        """Run ``unit`` on a reader connection in autocommit and return its result."""
        if self._closed:
            raise RuntimeError("the SQLite worker is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, unit)

    async def lookup(self, unit: Unit[T]) -> T:
        """Run a short read at once on the event loop's connection (see the module
        docstring); on a reader thread if the file is busy."""
        if self._closed:
            raise RuntimeError("the SQLite worker is closed")
        try:
            # Never waits for a lock: the loop would wait with it.
            connection = self._loop_connection = self._checked(
                self._loop_connection, busy_timeout_ms=0
            )
            value = unit(connection)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            return await self.read(unit)
        self._guard.succeeded()
        return value

    def _read(self, unit: Unit[T]) -> T:
        connection = self._local.connection = self._checked(
            getattr(self._local, "connection", None)
        )
        value = unit(connection)
        self._guard.succeeded()
        return value

    def _drain(self) -> None:
        group: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        while self._queue and len(group) < MAX_GROUP:
            group.append(self._queue.popleft())
        if not group:
            return
        outcomes: list[_Outcome] | None
        try:
            connection = self._write_connection = self._checked(self._write_connection)
            outcomes = _commit(connection, group, self._guard, isolated=len(group) == 1)
            if outcomes is None:  # one of them raised: again, each unit undone alone if it must
                outcomes = _commit(connection, group, self._guard, isolated=True)
            assert outcomes is not None
        except Exception as exc:  # BEGIN, COMMIT or the connection failed: nothing was kept
            outcomes = [(future, None, exc) for _unit, future in group]
        else:
            self._guard.succeeded()
        # One wake-up of each waiting loop for the whole group, not one per unit: every
        # call_soon_threadsafe writes to the loop's self-pipe, and a busy loop reads them all.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    async def close(self) -> None:
        """Finish every queued unit, then close the threads and connections."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
