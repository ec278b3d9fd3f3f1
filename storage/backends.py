"""How a unit of work runs on each backend: the one way into the database.

A *unit of work* is an ``async`` function of a :class:`Connection` that runs a few
statements (:class:`~storage.sql.Statement`) and returns a value; the repositories
(:mod:`storage.repositories`) are made of them. A unit is written once for both backends;
where the SQL must differ, the statement carries both texts, and a unit may ask
:attr:`Connection.backend`.

- **SQLite**: the unit runs whole in a thread of :class:`~storage.sqlite_worker.SqliteWorker`
  on :mod:`sqlite3`: writes in the writer thread (committed in groups, a unit that raises
  undone alone), reads on a reader thread in autocommit. One hop per unit, not one or
  more per statement. :mod:`sqlite3` never waits on anything the event loop runs, so the unit's
  coroutine runs to its end in one step on that thread (:func:`_run_through`); a unit that
  awaited anything else would be refused there.
- **PostgreSQL**: the unit runs on the asyncpg driver of a connection leased for it
  (:mod:`storage.pg_lease`). A write unit runs in a transaction; one marked
  ``one_statement`` (the turn's writes: each a single statement, data-modifying CTEs where
  needed) runs in autocommit instead, which PostgreSQL makes atomic without a BEGIN / COMMIT
  round trip. Reads run in autocommit.

Errors are the driver's own (:mod:`sqlite3` or asyncpg exceptions), and
:class:`~storage.errors.DatabaseUnavailable` for an SQLite file that went away.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from storage.pg_lease import ConnectionLease
from storage.sql import Params, Row, Statement, sqlite_time
from storage.sqlite_worker import SqliteWorker

T = TypeVar("T")
BackendName = Literal["sqlite", "postgresql"]


class Connection:
    """What a unit of work runs its statements on; see the module docstring."""

    backend: BackendName

    async def rows(self, statement: Statement, params: Params | None = None) -> list[Row]:
        """Every row the statement returns, each read by column name."""
        raise NotImplementedError

    async def row(self, statement: Statement, params: Params | None = None) -> Row | None:
        """The first row, or None."""
        found = await self.rows(statement, params)
        return found[0] if found else None

    async def execute(self, statement: Statement, params: Params | None = None) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        raise NotImplementedError

    async def execute_many(self, statement: Statement, params: Sequence[Params]) -> None:
        """Run a statement once per set of parameters."""
        for each in params:
            await self.execute(statement, each)


Unit = Callable[[Connection], Awaitable[T]]


def _checked(value: object) -> None:
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")


class SqliteConnection(Connection):
    """:mod:`sqlite3` under the unit, in its worker thread. Timestamps are bound as SQLite
    keeps them (:func:`~storage.sql.sqlite_time`), dates as ISO text."""

    backend: BackendName = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        # The unit's statements mostly share one timestamp ("now"): converted once.
        self._time: object = None
        self._time_text = ""

    def _params(self, statement: Statement, params: Params | None) -> dict[str, object]:
        # Runs in the worker thread for every statement, holding the GIL the event loop
        # waits for: only the names the statement binds, one exact type test each (profiled:
        # converting every parameter with isinstance and strftime was the thread's largest
        # cost).
        given = params or {}
        bound: dict[str, object] = {}
        for name in statement.sqlite_names:
            value = given[name]
            kind = type(value)
            if kind is datetime:
                if value is not self._time:
                    self._time, self._time_text = value, sqlite_time(value)  # type: ignore[arg-type]
                value = self._time_text
            elif kind is date:
                value = value.isoformat()  # type: ignore[attr-defined]
            bound[name] = value
        return bound

    async def rows(self, statement: Statement, params: Params | None = None) -> list[Row]:
        cursor = self._connection.execute(statement.sqlite, self._params(statement, params))
        rows: list[Row] = cursor.fetchall()
        return rows

    async def row(self, statement: Statement, params: Params | None = None) -> Row | None:
        # One step of the statement, not a second one to learn that no row follows: every
        # call into SQLite gives up the GIL and must win it back from a busy event loop.
        cursor = self._connection.execute(statement.sqlite, self._params(statement, params))
        row: Row | None = cursor.fetchone()
        return row

    async def execute(self, statement: Statement, params: Params | None = None) -> int:
        return self._connection.execute(statement.sqlite, self._params(statement, params)).rowcount

    async def execute_many(self, statement: Statement, params: Sequence[Params]) -> None:
        self._connection.executemany(
            statement.sqlite, [self._params(statement, each) for each in params]
        )


class PostgresConnection(Connection):
    """asyncpg under the unit. With ``one_statement`` the connection is in autocommit and
    refuses a second statement: the unit's atomicity rests on it being one."""

    backend: BackendName = "postgresql"

    def __init__(self, driver: Any, *, one_statement: bool = False) -> None:
        self._driver = driver  # asyncpg.Connection (asyncpg ships no type information)
        self._one_statement = one_statement
        self._ran = 0

    def _args(self, statement: Statement, params: Params | None) -> list[object]:
        if self._one_statement:
            self._ran += 1
            if self._ran > 1:
                raise RuntimeError("a one-statement unit of work ran a second statement")
        args = statement.args(params or {})
        for value in args:
            _checked(value)
        return args

    async def rows(self, statement: Statement, params: Params | None = None) -> list[Row]:
        args = self._args(statement, params)
        rows: list[Row] = await self._driver.fetch(statement.postgres.text, *args)
        return rows

    async def row(self, statement: Statement, params: Params | None = None) -> Row | None:
        args = self._args(statement, params)
        row: Row | None = await self._driver.fetchrow(statement.postgres.text, *args)
        return row

    async def execute(self, statement: Statement, params: Params | None = None) -> int:
        args = self._args(statement, params)
        status: str = await self._driver.execute(statement.postgres.text, *args)
        # asyncpg returns the command tag, e.g. "UPDATE 3" or "INSERT 0 1".
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def execute_many(self, statement: Statement, params: Sequence[Params]) -> None:
        if not params:
            return
        rows = [self._args(statement, each) for each in params]
        await self._driver.executemany(statement.postgres.text, rows)


def _run_through(awaitable: Awaitable[T]) -> T:
    """Run a unit's coroutine to its end in one step (SQLite: nothing in it suspends)."""
    coroutine: Coroutine[Any, Any, T] = awaitable  # type: ignore[assignment]
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a unit of work awaited something other than its SQLite connection")


class Backend:
    """Runs units of work on one database; see the module docstring."""

    name: BackendName

    async def read(self, unit: Unit[T]) -> T:
        """Run a unit that only reads (autocommit: every statement sees the newest commit)."""
        raise NotImplementedError

    async def lookup(self, unit: Unit[T]) -> T:
        """Run a short read by key (a row or a few, through an index): at once on the event
        loop where that is cheaper than handing it over (SQLite), otherwise as a read."""
        return await self.read(unit)

    async def write(self, unit: Unit[T], *, one_statement: bool = False) -> T:
        """Run a unit that writes, committed on return, nothing of it kept if it raises.
        ``one_statement``: the unit runs a single statement (autocommit on PostgreSQL)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Finish what is queued and release threads and connections."""
        raise NotImplementedError


class SqliteBackend(Backend):
    name: BackendName = "sqlite"

    def __init__(self, worker: SqliteWorker) -> None:
        self._worker = worker

    async def read(self, unit: Unit[T]) -> T:
        return await self._worker.read(lambda c: _run_through(unit(SqliteConnection(c))))

    async def lookup(self, unit: Unit[T]) -> T:
        return await self._worker.lookup(lambda c: _run_through(unit(SqliteConnection(c))))

    async def write(self, unit: Unit[T], *, one_statement: bool = False) -> T:
        return await self._worker.write(lambda c: _run_through(unit(SqliteConnection(c))))

    async def close(self) -> None:
        await self._worker.close()


class PostgresBackend(Backend):
    name: BackendName = "postgresql"

    def __init__(self, lease: ConnectionLease) -> None:
        self._lease = lease

    async def read(self, unit: Unit[T]) -> T:
        async with self._lease.driver() as driver:
            return await unit(PostgresConnection(driver))

    async def write(self, unit: Unit[T], *, one_statement: bool = False) -> T:
        async with self._lease.driver() as driver:
            if one_statement:
                return await unit(PostgresConnection(driver, one_statement=True))
            async with driver.transaction():
                return await unit(PostgresConnection(driver))

    async def close(self) -> None:
        await self._lease.close()
