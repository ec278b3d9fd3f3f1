"""The alembic chain: it builds exactly the models' schema, and every revision goes up, down
and up again ("stairway") on each backend."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from storage.database import create_engine
from storage.migrate import PROJECT_ROOT, alembic_config, downgrade, upgrade
from storage.models import Base

TABLES = {
    "alembic_version",
    "api_keys",
    "chat_topics",
    "chats",
    "conversations",
    "messages",
    "processed_updates",
    "telegram_messages",
    "usage_daily",
    "usage_daily_chats",
    "usage_daily_errors",
    "usage_daily_latency",
    "usage_daily_users",
    "usage_chats_seen",
    "usage_monthly_chats",
    "usage_monthly_users",
    "usage_users_seen",
    "usage_records",
    "users",
    "web_conversations",
}


def _revisions() -> list[str]:
    """Oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


async def _inspect(url: str, probe: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(probe)
    finally:
        await engine.dispose()


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _version(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def test_revision_files_are_date_prefixed_and_form_one_chain() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1
    for path in (PROJECT_ROOT / "alembic" / "versions").glob("*.py"):
        assert path.name[:11].replace("_", "").isdigit(), path.name


async def test_models_and_migrations_agree(database_url: str) -> None:
    await upgrade(database_url)
    assert await _inspect(database_url, _diff) == []
    assert await _inspect(database_url, _tables) == TABLES


async def test_stairway_up_down_up_over_every_revision(database_url: str) -> None:
    revisions = _revisions()
    assert revisions, "no revisions found"
    previous = ["base", *revisions[:-1]]
    for revision, before in zip(revisions, previous, strict=True):
        await upgrade(database_url, revision)
        assert await _inspect(database_url, _version) == revision
        await downgrade(database_url, before)
        expected = None if before == "base" else before
        assert await _inspect(database_url, _version) == expected
        await upgrade(database_url, revision)
        assert await _inspect(database_url, _version) == revision
    await downgrade(database_url, "base")
    assert await _inspect(database_url, _tables) <= {"alembic_version"}


def _reused_number(connection: Connection) -> tuple[int, int]:
    """The newest web conversation's number, deleted, and the next one's."""
    connection.execute(
        text(
            "INSERT INTO users (id, created_at, updated_at) "
            "VALUES (-1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
    )
    connection.execute(
        text(
            "INSERT INTO api_keys (name, key_hash, user_id, created_at) "
            "VALUES ('k', 'h', -1, CURRENT_TIMESTAMP)"
        )
    )
    insert = text(
        "INSERT INTO web_conversations (key_id, created_at) "
        "SELECT id, CURRENT_TIMESTAMP FROM api_keys RETURNING id"
    )
    connection.execute(insert)
    newest = connection.execute(insert).scalar_one()
    connection.execute(text("DELETE FROM web_conversations WHERE id = :id"), {"id": newest})
    return int(newest), int(connection.execute(insert).scalar_one())


async def test_web_conversation_numbers_are_never_reused_after_the_migration(
    database_url: str,
) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            deleted, next_one = await connection.run_sync(_reused_number)
    finally:
        await engine.dispose()
    assert next_one > deleted


def test_migrate_command_creates_the_default_sqlite_database_under_data(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "SPARK_", "TELEGRAM_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    database = tmp_path / "data" / "bot.sqlite3"
    assert database.is_file()
    with closing(sqlite3.connect(database)) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert names >= TABLES
    assert version == (_revisions()[-1],)


def test_alembic_cli_takes_the_url_from_x_argument(tmp_path: Path) -> None:
    target = tmp_path / "cli.sqlite3"
    result = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(PROJECT_ROOT / "alembic.ini"),
            "-x",
            f"url=sqlite:///{target}",
            "upgrade",
            "head",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with closing(sqlite3.connect(target)) as connection:
        version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == (_revisions()[-1],)
