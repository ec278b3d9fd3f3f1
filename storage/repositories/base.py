"""What every repository shares: its session, the clock, and dialect-aware INSERT builders."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.dto import Clock
from storage.models import SPARK_UID_LENGTH


def new_spark_uid() -> str:
    """A random uid for Spark's ``header.uid`` (≤ 32 characters); never a Telegram id."""
    return secrets.token_hex(SPARK_UID_LENGTH // 2)


class Repository:
    """Bound to one session (one unit of work); never outlives it."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def insert(self, table: Any) -> Any:
        """``INSERT`` with ``ON CONFLICT`` support for the session's backend."""
        if self.session.get_bind().dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)
