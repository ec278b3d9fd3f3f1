"""What every repository shares: its connection, the clock, statement execution, and
dialect-aware ``INSERT ... ON CONFLICT`` builders.

Repositories speak SQLAlchemy Core on one connection inside one transaction, mostly with
statements built once per module and executed with parameters: on the hot path (a few
statements per chat turn) building ORM statements and running them through a Session cost
several times the database's own work.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import CursorResult, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from storage.dto import Clock
from storage.models import SPARK_UID_LENGTH, Base


def new_spark_uid() -> str:
    """A random uid for Spark's ``header.uid`` (≤ 32 characters); never a Telegram id."""
    return secrets.token_hex(SPARK_UID_LENGTH // 2)


def member_spark_uid(chat_uid: str, user_id: int) -> str:
    """The uid of one member's own conversation in a chat (group history scope ``user``).

    Spark refuses a second request for a uid while one is being answered (10006 / 10007), and
    members' conversations are answered in parallel, so each gets its own uid: stable, derived
    from the chat's random uid, and no Telegram id in it.
    """
    digest = hashlib.sha256(f"{chat_uid}:{user_id}".encode()).hexdigest()
    return digest[:SPARK_UID_LENGTH]


def table(name: str) -> Table:
    return Base.metadata.tables[name]


def insert_for(dialect: str, target: Table) -> Any:
    """``INSERT`` that supports ``on_conflict_do_*`` on ``dialect``."""
    if dialect == "postgresql":
        return postgresql.insert(target)
    if dialect == "sqlite":
        return sqlite.insert(target)
    raise NotImplementedError(f"unsupported database backend {dialect!r}")


class Repository:
    """Bound to one connection in one transaction (one unit of work); never outlives it."""

    def __init__(self, connection: AsyncConnection, clock: Clock) -> None:
        self.connection = connection
        self.clock = clock
        self.dialect = connection.dialect.name

    async def execute(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> CursorResult[*tuple[Any, ...]]:
        return await self.connection.execute(statement, params)
