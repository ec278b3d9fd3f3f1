"""Telegram users: who asked, and their per-user quota override."""

from __future__ import annotations

from sqlalchemy import select, update

from storage.dto import UserInfo
from storage.models import User
from storage.repositories.base import Repository


def _user_info(row: User) -> UserInfo:
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
        stmt = self.insert(User).values(
            id=user_id,
            username=username,
            first_name=first_name,
            language_code=language_code,
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[User.id],
            set_={
                "username": stmt.excluded.username,
                "first_name": stmt.excluded.first_name,
                "language_code": stmt.excluded.language_code,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(User)
        row = (
            await self.session.scalars(stmt, execution_options={"populate_existing": True})
        ).one()
        return _user_info(row)

    async def get(self, user_id: int) -> UserInfo | None:
        row = await self.session.scalar(select(User).where(User.id == user_id))
        return None if row is None else _user_info(row)

    async def set_daily_quota(self, user_id: int, quota: int | None) -> bool:
        """Override the daily token quota (None: back to the default; 0: unlimited)."""
        if quota is not None and quota < 0:
            raise ValueError(f"quota must be >= 0 or None, got {quota}")
        result = await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(daily_token_quota=quota, updated_at=self.clock())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
