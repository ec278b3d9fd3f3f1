"""Schema migrations: run the alembic chain from code.

``upgrade`` and ``downgrade`` work inside a running event loop (app start, tests): they open an
async connection and hand it to alembic's env.py, which then runs synchronously on it.
``upgrade_to_head`` is the blocking form for ``python -m bot migrate``.

The migration is the only place that creates a missing SQLite file (every other connection
opens an existing one); it says so at WARNING, since on a bot that already had a database it
means the history is elsewhere or gone. After an upgrade to head every table of the schema must
be there, or the bot refuses to start on that database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from alembic import command
from storage.database import create_engine, describe_location, normalise_url, sqlite_file
from storage.errors import DatabaseUnavailable
from storage.models import Base

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The PostgreSQL advisory lock every process's migration holds for its transaction: several
# processes starting at once (replicas of one bot) migrate one after the other, and all but the
# first find the schema up to date, instead of racing to create the same tables.
MIGRATION_LOCK_KEY = 0x5350_4B42_4D49_47  # "SPKBMIG"


def alembic_config(url: str | None = None) -> Config:
    """The project's alembic configuration, pointed at ``url`` when given."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    if url is not None:
        # '%' would be read as interpolation by configparser.
        config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def _file_missing(url: str) -> bool:
    path = sqlite_file(url)
    if path is not None and not Path(path).exists():
        # INFO, not WARNING: a first start does this. A file lost under a running bot is an
        # ERROR at that moment (storage.availability), before any restart gets here.
        log.info("database file %s does not exist: creating a new, empty database", path)
        return True
    return False


def _open_once(url: str) -> None:
    """Open (or create) the SQLite file once with the standard library, so that a file or
    directory that cannot be written fails here, plainly, rather than inside aiosqlite's
    worker thread, whose last report can outlive the event loop of a failed start."""
    path = sqlite_file(url)
    if path is not None:
        sqlite3.connect(path).close()


async def _run(url: str, action: str, revision: str) -> None:
    announced = _file_missing(url)
    engine = create_engine(url, create=True)  # makes a missing SQLite file's directory
    try:
        _open_once(url)
        async with engine.begin() as connection:
            await connection.run_sync(_command, url, action, revision, announced)
    finally:
        await engine.dispose()


def _command(
    connection: Connection, url: str, action: str, revision: str, announced: bool
) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    config = alembic_config(url)
    config.attributes["connection"] = connection
    if action == "upgrade":
        if not announced and MigrationContext.configure(connection).get_current_revision() is None:
            # An existing but empty database (a first run, or a file replaced by an empty
            # one): worth a line, since the history starts from nothing here.
            log.warning("database %s has no schema yet: creating it", describe_location(url))
        command.upgrade(config, revision)
        if revision == "head":
            _require_schema(connection, url)
    else:
        command.downgrade(config, revision)


def _require_schema(connection: Connection, url: str) -> None:
    """Every table of the schema is there (alembic may call a database whose tables were
    dropped up to date)."""
    missing = set(Base.metadata.tables) - set(inspect(connection).get_table_names())
    if missing:
        raise DatabaseUnavailable(
            describe_location(url),
            f"schema missing after the migration: no table {', '.join(sorted(missing))}",
        )


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    await _run(url, "upgrade", revision)


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` ("base" empties it)."""
    await _run(url, "downgrade", revision)


def upgrade_to_head(url: str) -> None:
    """Blocking upgrade to the newest revision, for the ``migrate`` command."""
    asyncio.run(upgrade(url))
    log.info("database schema is up to date")
