"""Telegram users: who asked, and their per-user quota override."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Row, bindparam, select

from storage.dto import UserInfo
from storage.repositories.base import Repository, insert_for, table

USERS = table("users")
_GET = select(USERS).where(USERS.c.id == bindparam("b_id"))
_SET_QUOTA = (
    USERS.update()
    .where(USERS.c.id == bindparam("b_id"))
    .values(daily_token_quota=bindparam("b_quota"), updated_at=bindparam("b_now"))
)


@cache
def _upsert(dialect: str) -> Any:
    stmt = insert_for(dialect, USERS)
    return stmt.on_conflict_do_update(
        index_elements=[USERS.c.id],
        set_={
            "username": stmt.excluded.username,
            "first_name": stmt.excluded.first_name,
            "language_code": stmt.excluded.language_code,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(*USERS.c)


def _user_info(row: Row[*tuple[Any, ...]]) -> UserInfo:
    return UserInfo(
        id=row.id,
        username=row.username,
        first_name=row.first_name,
        language_code=row.language_code,
        daily_token_quota=row.daily_token_quota,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class UserRepository(Repository):
    async def upsert(
        self,
        user_id: int,
        *,
        username: str | None = None,
        first_name: str | None = None,
        language_code: str | None = None,
    ) -> UserInfo:
        """Create the user or refresh the profile fields Telegram sent; the quota is kept."""
        now = self.clock()
        result = await self.execute(
            _upsert(self.dialect),
            {
                "id": user_id,
                "username": username,
                "first_name": first_name,
                "language_code": language_code,
                "created_at": now,
                "updated_at": now,
            },
        )
        return _user_info(result.one())

    async def get(self, user_id: int) -> UserInfo | None:
        row = (await self.execute(_GET, {"b_id": user_id})).first()
        return None if row is None else _user_info(row)

    async def set_daily_quota(self, user_id: int, quota: int | None) -> bool:
        """Override the daily token quota (None: back to the default; 0: unlimited)."""
        if quota is not None and quota < 0:
            raise ValueError(f"quota must be >= 0 or None, got {quota}")
        result = await self.execute(
            _SET_QUOTA, {"b_id": user_id, "b_quota": quota, "b_now": self.clock()}
        )
        return bool(result.rowcount)
