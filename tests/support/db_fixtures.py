"""Database fixtures: a fresh SQLite file per test, and a fresh PostgreSQL schema per test
where TEST_DATABASE_URL points at PostgreSQL (skipped, visibly, where it does not).

``database_url`` is an empty database (not migrated); ``database`` is migrated to head and
open; ``sqlite_database`` is the same on SQLite only. PostgreSQL tests are isolated by a schema
of their own, selected with libpq's ``options=-c search_path=...`` in the URL, and dropped
afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.database import Database, create_database, create_engine, normalise_url
from storage.migrate import upgrade

BACKENDS = ["sqlite", "postgresql"]
PG_SKIP_REASON = "TEST_DATABASE_URL not set: PostgreSQL not tested"


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'bot.sqlite3'}"


def postgres_base_url() -> str:
    """TEST_DATABASE_URL (normalised), or skip the test saying why."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        pytest.skip(PG_SKIP_REASON)
    url = normalise_url(url)
    if make_url(url).get_backend_name() != "postgresql":
        pytest.skip(f"TEST_DATABASE_URL is not PostgreSQL ({make_url(url).drivername})")
    return url


def with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


async def _execute(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def postgres_schema_url(base_url: str) -> tuple[str, str]:
    schema = f"test_{secrets.token_hex(6)}"
    await _execute(base_url, f'CREATE SCHEMA "{schema}"')
    return with_search_path(base_url, schema), schema


async def drop_postgres_schema(base_url: str, schema: str) -> None:
    await _execute(base_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database on each backend (the URL only; nothing migrated)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    base = postgres_base_url()
    url, schema = await postgres_schema_url(base)
    try:
        yield url
    finally:
        await drop_postgres_schema(base, schema)


async def _migrated(url: str) -> AsyncIterator[Database]:
    await upgrade(url)
    database = create_database(url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty, open Database on each backend."""
    async for db in _migrated(database_url):
        yield db


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty, open Database on a fresh SQLite file."""
    async for db in _migrated(sqlite_url(tmp_path)):
        yield db


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """An empty PostgreSQL schema (the URL only), for what needs PostgreSQL itself: several
    processes sharing one database."""
    base = postgres_base_url()
    url, schema = await postgres_schema_url(base)
    try:
        yield url
    finally:
        await drop_postgres_schema(base, schema)
