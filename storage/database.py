"""The database handle: URL normalisation, the async engine, and short units of work.

:class:`Database` owns the engine and the session factory. ``session()`` opens one transaction
for one unit of work and commits it on success; ``repositories()`` does the same and hands out
the repositories bound to that session.

SQLite specifics, because hundreds of chats write at once: WAL (readers never block the
writer), ``synchronous=NORMAL`` (a commit survives a crash of the bot, not of the machine),
foreign keys on, a busy timeout for writers in other processes, and inside this process one
write lock plus ``BEGIN IMMEDIATE`` so a writer never starts as a reader and then fails to
upgrade its lock ("database is locked"). Read-only units take no lock and run in autocommit.

The turn hot path does not go through these units: :attr:`Database.turns` runs each of its
methods as a unit of work of its own on the driver directly (see
:mod:`storage.repositories.turns`); on SQLite through a :class:`~storage.sqlite_worker.
SqliteWorker`, which the write units here pause while they run.

A database taken away under the running process (the SQLite file deleted, moved, replaced,
made immutable) is noticed before each unit of work by :mod:`storage.sqlite_guard` and raised
as :class:`~storage.errors.DatabaseUnavailable`; :meth:`Database.health` answers ``/healthz``
with the same checks. Connections open an existing file only (``mode=rw``); the migration is
the one place that may create it.

PostgreSQL connections are not pinged on checkout (a ping is three round trips through
SQLAlchemy's asyncpg adapter, more than a turn's writes): a connection the server closed is
known to asyncpg already and is replaced on checkout instead.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from storage.availability import Availability
from storage.dto import Clock, utc_now
from storage.errors import DatabaseUnavailable
from storage.pg_lease import ConnectionLease
from storage.repositories import Repositories
from storage.repositories.turns import TurnRepository
from storage.repositories.turns_postgres import PostgresTurns
from storage.repositories.turns_sqlite import SqliteTurns
from storage.sqlite_guard import SCHEMA_QUERY, SqliteFileGuard, read_write_uri
from storage.sqlite_worker import SqliteWorker

SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL connections the turn hot path keeps (at most half the pool): two cores' worth of
# statements in flight; more only adds server processes switching on the same cores.
HOT_PATH_CONNECTIONS = 4
# /healthz waits this long for the database before calling it unavailable.
HEALTH_TIMEOUT_SECONDS = 3.0
_WRITE_OPTION = "storage_write"
_READ_OPTION = "storage_read"


def normalise_url(url: str) -> str:
    """The async-driver form of a database URL.

    ``postgres://`` and ``postgresql://`` (as Heroku and most hosts hand them out) become
    ``postgresql+asyncpg://``; libpq's ``sslmode`` becomes asyncpg's ``ssl``; ``sqlite://``
    becomes ``sqlite+aiosqlite://``. Anything else is returned unchanged.
    """
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif driver == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername == "postgresql+asyncpg" and "sslmode" in parsed.query:
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def _server_settings(options: str) -> dict[str, str]:
    """``-c name=value`` pairs of libpq's ``options`` parameter (asyncpg does not read it)."""
    settings: dict[str, str] = {}
    words = shlex.split(options)
    for index, word in enumerate(words):
        if word == "-c" and index + 1 < len(words):
            word = "-c" + words[index + 1]
        if word.startswith("-c") and "=" in word:
            name, value = word[2:].split("=", 1)
            settings[name.strip()] = value.strip()
    return settings


def sqlite_file(url: str) -> str | None:
    """The path of the SQLite file ``url`` names; None for memory, ``file:`` URIs, others."""
    parsed = make_url(normalise_url(url))
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return str(Path(database).expanduser())


def describe_location(url: str) -> str:
    """Where ``url`` points, for log lines: the SQLite file, or the server without secrets."""
    path = sqlite_file(url)
    if path is not None:
        return path
    parsed = make_url(normalise_url(url))
    return f"{parsed.get_backend_name()} {parsed.host or ''}:{parsed.port or ''}/{parsed.database}"


def create_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, create: bool = False
) -> AsyncEngine:
    """An async engine for ``url`` (normalised first), with the SQLite set-up described above.

    An SQLite file is opened only if it exists, unless ``create`` (the migration) allows
    creating it and its directory.

    A PostgreSQL URL may carry libpq's ``options=-c search_path=...``; it is passed to asyncpg
    as server settings (tests use it to give each test its own schema).
    """
    parsed = make_url(normalise_url(url))
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None and create:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        # Every statement is a round trip to aiosqlite's thread, so skip the ones that buy
        # nothing here: a file needs no liveness ping, and Database.session always ends its
        # transaction itself, so the pool's rollback on check-in would be a second no-op.
        engine = _create_async_engine(parsed, pool_reset_on_return=None, **kwargs)
        _configure_sqlite(engine)
        if path is not None and not create:
            _open_existing_only(engine, read_write_uri(path))
        return engine
    if parsed.get_backend_name() == "postgresql" and "options" in parsed.query:
        query = dict(parsed.query)
        options = query.pop("options")
        text = options if isinstance(options, str) else " ".join(options)
        kwargs["connect_args"] = {"server_settings": _server_settings(text)}
        parsed = parsed.set(query=query)
    engine = _create_async_engine(parsed, pool_size=pool_size, max_overflow=max_overflow, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(
    dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    # asyncpg marks a connection closed as soon as the server hangs up (restart, idle
    # timeout); the pool then discards it and checks out another, at no round trip.
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this connection")


def _open_existing_only(engine: AsyncEngine, uri: str) -> None:
    @event.listens_for(engine.sync_engine, "do_connect")
    def _read_write(
        _dialect: Any, _record: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        # mode=rw: a file that went away is an error here, never a new empty database.
        cargs[0] = uri
        cparams["uri"] = True


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's legacy guesswork.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get(_WRITE_OPTION, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get(_READ_OPTION, False):
            connection.exec_driver_sql("BEGIN")
        # Read-only units run in autocommit: each statement sees the newest commit, and the
        # BEGIN round trip is saved on the hottest path (history for every turn).


class Database:
    """Owns the engine and the session factory; one per process, closed with :meth:`dispose`."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._write_engine = engine.execution_options(**{_WRITE_OPTION: True})
        # Reads need no transaction of their own: autocommit saves BEGIN / ROLLBACK round
        # trips (on PostgreSQL via the driver's autocommit, on SQLite by emitting no BEGIN).
        self._read_engine = (
            engine.execution_options(**{_READ_OPTION: True})
            if self.is_sqlite
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._worker: SqliteWorker | None = None
        self._turns: TurnRepository | None = None
        self.availability = Availability()
        path = sqlite_file(engine.url.render_as_string(hide_password=False))
        self._guard = SqliteFileGuard(path, self.availability) if path is not None else None
        if self._guard is not None:
            # First of the connect listeners: the pragmas after it would already write.
            event.listen(engine.sync_engine, "connect", self._check_new_connection, insert=True)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work: a transaction committed when the block succeeds and rolled back
        when it raises. ``readonly`` units run in autocommit (no BEGIN, nothing to commit)
        and must not write."""
        factory = self._reader if readonly else self._writer
        async with (
            self._lock(readonly),
            self._pause(readonly),
            self._checked(),
            factory() as session,
        ):
            yield session
            if not readonly:
                await session.commit()
            # Leaving the block closes the session, which rolls back anything uncommitted.

    @asynccontextmanager
    async def repositories(self, *, readonly: bool = False) -> AsyncIterator[Repositories]:
        """One unit of work, like :meth:`session`, with every repository bound to it.

        Repositories work on a bare connection rather than a Session: they return DTOs, so
        the ORM's unit-of-work machinery would only add cost to every statement.
        """
        engine = self._read_engine if readonly else self._write_engine
        async with (
            self._lock(readonly),
            self._pause(readonly),
            self._checked(),
            engine.connect() as connection,
        ):
            await connection.begin()
            yield Repositories(connection, self.clock)
            if not readonly:
                await connection.commit()
            # Closing the connection rolls back whatever was not committed.

    @property
    def turns(self) -> TurnRepository:
        """The turn hot path (question, answer, ledger, prompt), each method its own unit of
        work; see :mod:`storage.repositories.turns`."""
        if self._turns is None:
            if self.is_sqlite:
                if self._guard is None:
                    # The worker's own connections would each open a different database.
                    raise NotImplementedError("the turn hot path needs an SQLite database file")
                self._worker = SqliteWorker(self._guard, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS)
                self._turns = SqliteTurns(self._worker, self.clock)
            else:
                pool = self.engine.pool
                pool_size = pool.size() if isinstance(pool, QueuePool) else HOT_PATH_CONNECTIONS
                size = min(HOT_PATH_CONNECTIONS, max(1, pool_size // 2))
                self._turns = PostgresTurns(ConnectionLease(self.engine, size), self.clock)
        return self._turns

    async def health(self) -> str | None:
        """None when the schema can be read now; else what is wrong, in a few words without
        path or secrets (``/healthz`` shows it). The same checks as every unit of work."""
        try:
            async with (
                asyncio.timeout(HEALTH_TIMEOUT_SECONDS),
                self._checked(),
                self._read_engine.connect() as connection,
            ):
                await connection.execute(text("SELECT 1 FROM alembic_version"))
        except DatabaseUnavailable as exc:
            return exc.problem
        except TimeoutError:
            return f"no answer within {HEALTH_TIMEOUT_SECONDS:g} s"
        except Exception as exc:  # whatever the driver raised, the probe's answer is "no"
            return _short_error(exc)
        return None

    @asynccontextmanager
    async def _checked(self) -> AsyncIterator[None]:
        """A unit of work on the guarded file: checked before, reported once it succeeded."""
        guard = self._guard
        if guard is None:
            yield
            return
        guard.check()
        yield
        guard.succeeded()

    def _check_new_connection(
        self, dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry
    ) -> None:
        guard = self._guard
        assert guard is not None
        guard.check()
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(SCHEMA_QUERY)
            guard.check_schema(row[0] for row in cursor.fetchall())
        finally:
            cursor.close()

    def _lock(self, readonly: bool) -> AbstractAsyncContextManager[Any]:
        if self._write_lock is None or readonly:
            return nullcontext()
        return self._write_lock

    def _pause(self, readonly: bool) -> AbstractAsyncContextManager[Any]:
        if self._worker is None or readonly:
            return nullcontext()
        return self._worker.paused()

    async def dispose(self) -> None:
        if self._turns is not None:
            await self._turns.close()
        await self.engine.dispose()


def _short_error(exc: BaseException) -> str:
    """The driver's own error in one line (SQLAlchemy's adds the statement and a link)."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first}"[:200] if first else type(cause).__name__


def create_database(
    url: str, *, clock: Clock = utc_now, pool_size: int = 10, max_overflow: int = 20
) -> Database:
    """A :class:`Database` for ``url`` (see :func:`normalise_url` for the accepted forms)."""
    return Database(
        create_engine(url, pool_size=pool_size, max_overflow=max_overflow), clock=clock
    )
