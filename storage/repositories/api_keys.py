"""Keys of the HTTP API: created, found by the hash of their text, listed, revoked.

A key's text is never stored, only its SHA-256 (:func:`key_hash`); looking one up is an
indexed equality on that hash, so no stored secret is ever compared byte by byte. A key
bills its traffic to a ``users`` row: its own (a negative id, never a Telegram user's) or,
when created for one, a Telegram user's, whose quota it then shares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select

from storage.repositories.base import Repository, table

API_KEYS = table("api_keys")
USERS = table("users")
_K = API_KEYS.c
_BY_HASH = select(API_KEYS).where(_K.key_hash == bindparam("b_hash"))
_BY_NAME = select(API_KEYS).where(_K.name == bindparam("b_name"))
_ALL = select(API_KEYS).order_by(_K.created_at, _K.id)
_LOWEST_USER = select(func.min(USERS.c.id))
_REVOKE = (
    API_KEYS.update()
    .where(_K.name == bindparam("b_name"), _K.revoked_at.is_(None))
    .values(revoked_at=bindparam("b_now"))
)


def key_hash(key: str) -> str:
    """The hex SHA-256 of a key's text: what is stored and looked up."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: int
    name: str
    user_id: int
    daily_tokens: int | None
    rate_per_minute: int | None
    models: tuple[str, ...]  # empty: every enabled model
    created_at: datetime
    revoked_at: datetime | None
    key_hash: str = field(repr=False, default="")

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class KeyNameTaken(Exception):
    """A key of that name exists already (revoked ones keep their name)."""


def _info(row: Row[*tuple[Any, ...]]) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        user_id=row.user_id,
        daily_tokens=row.daily_tokens,
        rate_per_minute=row.rate_per_minute,
        models=tuple(part for part in (row.models or "").split(",") if part),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        key_hash=row.key_hash,
    )


class ApiKeyRepository(Repository):
    async def create(
        self,
        name: str,
        hashed: str,
        *,
        daily_tokens: int | None = None,
        rate_per_minute: int | None = None,
        models: tuple[str, ...] = (),
        user_id: int | None = None,
    ) -> ApiKeyInfo:
        """Store a key (its hash only). Without ``user_id`` the key gets a users row of its
        own, named after it, whose daily quota is ``daily_tokens``; with one, that user's row
        is created if it does not exist yet and the key shares its quota."""
        if (await self.execute(_BY_NAME, {"b_name": name})).first() is not None:
            raise KeyNameTaken(name)
        now = self.clock()
        if user_id is None:
            lowest = (await self.execute(_LOWEST_USER)).scalar()
            user_id = min(0, int(lowest or 0)) - 1
            await self.execute(
                USERS.insert(),
                {
                    "id": user_id,
                    "username": None,
                    "first_name": f"key {name}",
                    "language_code": None,
                    "daily_token_quota": daily_tokens,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        elif (await self.execute(select(USERS.c.id).where(USERS.c.id == user_id))).first() is None:
            await self.execute(
                USERS.insert(),
                {"id": user_id, "created_at": now, "updated_at": now},
            )
        result = await self.execute(
            API_KEYS.insert().returning(*API_KEYS.c),
            {
                "name": name,
                "key_hash": hashed,
                "user_id": user_id,
                "daily_tokens": daily_tokens,
                "rate_per_minute": rate_per_minute,
                "models": ",".join(models) or None,
                "created_at": now,
                "revoked_at": None,
            },
        )
        return _info(result.one())

    async def find(self, hashed: str) -> ApiKeyInfo | None:
        """The key whose text hashes to ``hashed`` (revoked or not), or None."""
        row = (await self.execute(_BY_HASH, {"b_hash": hashed})).first()
        return None if row is None else _info(row)

    async def by_name(self, name: str) -> ApiKeyInfo | None:
        row = (await self.execute(_BY_NAME, {"b_name": name})).first()
        return None if row is None else _info(row)

    async def list_all(self) -> list[ApiKeyInfo]:
        return [_info(row) for row in await self.execute(_ALL)]

    async def revoke(self, name: str) -> bool:
        """Revoke the key; False when no key of that name is active."""
        result = await self.execute(_REVOKE, {"b_name": name, "b_now": self.clock()})
        return bool(result.rowcount)
