"""Telegram users (and API keys' own users): their profile and per-user quota override."""

from __future__ import annotations

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608
from datetime import datetime

from storage.backends import Connection
from storage.dto import UserInfo
from storage.repositories import Repository
from storage.sql import Row, sql, utc

USER_COLUMNS = "id, username, first_name, language_code, daily_token_quota, created_at, updated_at"
UPSERT = sql(
    "INSERT INTO users (id, username, first_name, language_code, created_at, updated_at) "
    "VALUES (:id, :username, :first_name, :language_code, :now, :now) "
    "ON CONFLICT (id) DO UPDATE SET username = excluded.username, "
    "first_name = excluded.first_name, language_code = excluded.language_code, "
    f"updated_at = excluded.updated_at RETURNING {USER_COLUMNS}"
)
SET_QUOTA = sql("UPDATE users SET daily_token_quota = :quota, updated_at = :now WHERE id = :id")


def user_info(row: Row) -> UserInfo:
    return UserInfo(
        id=row["id"],
        username=row["username"],
        first_name=row["first_name"],
        language_code=row["language_code"],
        daily_token_quota=row["daily_token_quota"],
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
    )


async def upsert_user(
    connection: Connection,
    now: datetime,
    user_id: int,
    *,
    username: str | None,
    first_name: str | None,
    language_code: str | None,
) -> UserInfo:
    """Create the user or refresh the profile fields Telegram sent; the quota is kept."""
    params = {
        "id": user_id,
        "username": username,
        "first_name": first_name,
        "language_code": language_code,
        "now": now,
    }
    row = await connection.row(UPSERT, params)
    assert row is not None  # RETURNING of an upsert always has its row
    return user_info(row)


class Users(Repository):
    async def set_daily_quota(self, user_id: int, quota: int | None) -> bool:
        """Override the daily token quota (None: back to the default; 0: unlimited)."""
        if quota is not None and quota < 0:
            raise ValueError(f"quota must be >= 0 or None, got {quota}")
        params = {"id": user_id, "quota": quota, "now": self.clock()}

        async def unit(connection: Connection) -> bool:
            return await connection.execute(SET_QUOTA, params) > 0

        return await self.backend.write(unit)
