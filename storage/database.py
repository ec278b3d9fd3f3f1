"""The database handle: URL normalisation, the async engine, and short units of work.

:class:`Database` owns the engine and the session factory. ``session()`` opens one transaction
for one unit of work and commits it on success; ``repositories()`` does the same and hands out
the repositories bound to that session.

SQLite specifics, because hundreds of chats write at once: WAL (readers never block the
writer), ``synchronous=NORMAL`` (a commit survives a crash of the bot, not of the machine),
foreign keys on, a busy timeout for writers in other processes, and inside this process one
write lock plus ``BEGIN IMMEDIATE`` so a writer never starts as a reader and then fails to
upgrade its lock ("database is locked"). Read-only units take no lock and run in autocommit.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from storage.dto import Clock, utc_now
from storage.repositories import Repositories

SQLITE_BUSY_TIMEOUT_MS = 30_000
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


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> AsyncEngine:
    """An async engine for ``url`` (normalised first), with the SQLite set-up described above.

    A PostgreSQL URL may carry libpq's ``options=-c search_path=...``; it is passed to asyncpg
    as server settings (tests use it to give each test its own schema).
    """
    parsed = make_url(normalise_url(url))
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        # Every statement is a round trip to aiosqlite's thread, so skip the ones that buy
        # nothing here: a file needs no liveness ping, and Database.session always ends its
        # transaction itself, so the pool's rollback on check-in would be a second no-op.
        engine = _create_async_engine(parsed, pool_reset_on_return=None, **kwargs)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and "options" in parsed.query:
        query = dict(parsed.query)
        options = query.pop("options")
        text = options if isinstance(options, str) else " ".join(options)
        kwargs["connect_args"] = {"server_settings": _server_settings(text)}
        parsed = parsed.set(query=query)
    return _create_async_engine(
        parsed, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, **kwargs
    )


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

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work: a transaction committed when the block succeeds and rolled back
        when it raises. ``readonly`` units run in autocommit (no BEGIN, nothing to commit)
        and must not write."""
        factory = self._reader if readonly else self._writer
        async with self._lock(readonly), factory() as session:
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
        async with self._lock(readonly), engine.connect() as connection:
            await connection.begin()
            yield Repositories(connection, self.clock)
            if not readonly:
                await connection.commit()
            # Closing the connection rolls back whatever was not committed.

    def _lock(self, readonly: bool) -> AbstractAsyncContextManager[Any]:
        if self._write_lock is None or readonly:
            return nullcontext()
        return self._write_lock

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(
    url: str, *, clock: Clock = utc_now, pool_size: int = 10, max_overflow: int = 20
) -> Database:
    """A :class:`Database` for ``url`` (see :func:`normalise_url` for the accepted forms)."""
    return Database(
        create_engine(url, pool_size=pool_size, max_overflow=max_overflow), clock=clock
    )
