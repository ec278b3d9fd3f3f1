"""The database handle: URL normalisation, the engine, and the repositories.

:class:`Database` is opened in one step (:func:`create_database`): it builds the runner of
units of work for its backend (:mod:`storage.backends`) and every repository on it, as
attributes: ``users``, ``chats``, ``conversations``, ``messages``, ``usage``, ``updates``,
``api_keys``, ``web_conversations`` and ``stats``. Each repository method is one unit of work;
there is no other way in. Threads (SQLite) and leased connections (PostgreSQL) are taken on
first use and released by :meth:`Database.dispose`.

SQLite, because hundreds of chats write at once: WAL (readers never block the writer),
``synchronous=NORMAL`` (a commit survives a crash of the bot, not of the machine), foreign keys
on, a busy timeout for writers in other processes; every write of the process goes through the
worker's one writer thread (:mod:`storage.sqlite_worker`), so two writers of one process never
wait on each other's lock inside SQLite.

A database taken away under the running process (the SQLite file deleted, moved, replaced,
made immutable) is noticed before each unit of work by :mod:`storage.sqlite_guard` and raised
as :class:`~storage.errors.DatabaseUnavailable`; :meth:`Database.health` answers ``/healthz``
with the same checks. Connections open an existing file only (``mode=rw``); the migration is
the one place that may create it.

The SQLAlchemy engine remains the migration's (alembic) and, on PostgreSQL, the source of the
connections the runner leases (same URL, server settings and schema). Its connections are not
pinged on checkout (a ping is three round trips through SQLAlchemy's asyncpg adapter): a
connection the server closed is known to asyncpg already and is replaced on checkout instead.
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from storage.availability import Availability
from storage.backends import Backend, BackendName, PostgresBackend, SqliteBackend
from storage.backends import Connection as UnitConnection
from storage.dto import Clock, utc_now
from storage.errors import DatabaseUnavailable
from storage.pg_lease import ConnectionLease
from storage.repositories.api_keys import ApiKeys
from storage.repositories.chats import Chats
from storage.repositories.conversations import Conversations
from storage.repositories.messages import Messages
from storage.repositories.updates import Updates
from storage.repositories.usage import Usage
from storage.repositories.users import Users
from storage.repositories.web_conversations import WebConversations
from storage.sql import sql
from storage.sqlite_guard import SqliteFileGuard, read_write_uri
from storage.sqlite_worker import SqliteWorker
from storage.stats import Stats

SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL connections the runner keeps (at most half the pool): two cores' worth of
# statements in flight; more only adds server processes switching on the same cores.
LEASED_CONNECTIONS = 4
# /healthz waits this long for the database before calling it unavailable.
HEALTH_TIMEOUT_SECONDS = 3.0
HEALTH = sql("SELECT 1 AS ok FROM alembic_version")


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
        # The engine only migrates (units of work run on the worker's own connections).
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
        # A writer takes the write lock at once, never failing to upgrade a read lock.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The repositories on one database; one per process, closed with :meth:`dispose`."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock
        self.availability = Availability()
        self.runner = self._runner(engine)
        self.users = Users(self.runner, clock)
        self.chats = Chats(self.runner, clock)
        self.conversations = Conversations(self.runner, clock)
        self.messages = Messages(self.runner, clock)
        self.usage = Usage(self.runner, clock)
        self.updates = Updates(self.runner, clock)
        self.api_keys = ApiKeys(self.runner, clock)
        self.web_conversations = WebConversations(self.runner, clock)
        self.stats = Stats(self.runner, clock)

    def _runner(self, engine: AsyncEngine) -> Backend:
        if engine.dialect.name == "sqlite":
            path = sqlite_file(engine.url.render_as_string(hide_password=False))
            if path is None:
                # The worker's own connections would each open a different database.
                raise NotImplementedError("storage needs an SQLite database file")
            guard = SqliteFileGuard(path, self.availability)
            return SqliteBackend(SqliteWorker(guard, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS))
        pool = engine.pool
        pool_size = pool.size() if isinstance(pool, QueuePool) else LEASED_CONNECTIONS
        size = min(LEASED_CONNECTIONS, max(1, pool_size // 2))
        return PostgresBackend(ConnectionLease(engine, size))

    @property
    def backend(self) -> BackendName:
        return self.runner.name

    async def health(self) -> str | None:
        """None when the schema can be read now; else what is wrong, in a few words without
        path or secrets (``/healthz`` shows it). The same checks as every unit of work."""

        async def probe(connection: UnitConnection) -> None:
            await connection.rows(HEALTH)

        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                await self.runner.read(probe)
        except DatabaseUnavailable as exc:
            return exc.problem
        except TimeoutError:
            return f"no answer within {HEALTH_TIMEOUT_SECONDS:g} s"
        except Exception as exc:  # whatever the driver raised, the probe's answer is "no"
            return _short_error(exc)
        return None

    async def dispose(self) -> None:
        await self.runner.close()
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
