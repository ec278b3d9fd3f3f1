"""Keys of the HTTP API: created, found by the hash of their text, listed, revoked.

A key's text is never stored, only its SHA-256 (:func:`key_hash`); looking one up is an
indexed equality on that hash, so no stored secret is ever compared byte by byte. A key
bills its traffic to a ``users`` row: its own (a negative id, never a Telegram user's) or,
when created for one, a Telegram user's, whose quota it then shares.
"""

from __future__ import annotations

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from storage.backends import Connection
from storage.repositories import Repository
from storage.sql import Row, maybe_utc, sql, utc

KEY_COLUMNS = (
    "id, name, key_hash, user_id, daily_tokens, rate_per_minute, models, created_at, revoked_at"
)
BY_HASH = sql(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = :hash")
BY_NAME = sql(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE name = :name")
ALL = sql(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
LOWEST_USER = sql("SELECT min(id) AS lowest FROM users")
USER_EXISTS = sql("SELECT id FROM users WHERE id = :id")
INSERT_USER = sql(
    "INSERT INTO users (id, username, first_name, language_code, daily_token_quota, "
    "created_at, updated_at) VALUES (:id, NULL, :first_name, NULL, :quota, :now, :now)"
)
INSERT = sql(
    "INSERT INTO api_keys (name, key_hash, user_id, daily_tokens, rate_per_minute, models, "
    "created_at, revoked_at) VALUES (:name, :hash, :user, :daily_tokens, :rate, :models, :now, "
    f"NULL) RETURNING {KEY_COLUMNS}"
)
REVOKE = sql("UPDATE api_keys SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL")


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


def _info(row: Row) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        name=row["name"],
        user_id=row["user_id"],
        daily_tokens=row["daily_tokens"],
        rate_per_minute=row["rate_per_minute"],
        models=tuple(part for part in (row["models"] or "").split(",") if part),
        created_at=utc(row["created_at"]),
        revoked_at=maybe_utc(row["revoked_at"]),
        key_hash=row["key_hash"],
    )


class ApiKeys(Repository):
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
        now = self.clock()

        async def unit(connection: Connection) -> ApiKeyInfo:
            if await connection.row(BY_NAME, {"name": name}) is not None:
                raise KeyNameTaken(name)
            owner = user_id
            if owner is None:
                found = await connection.row(LOWEST_USER)
                lowest = found["lowest"] if found is not None else None
                owner = min(0, int(lowest or 0)) - 1
                user = {"id": owner, "first_name": f"key {name}", "quota": daily_tokens}
                await connection.execute(INSERT_USER, {**user, "now": now})
            elif await connection.row(USER_EXISTS, {"id": owner}) is None:
                user = {"id": owner, "first_name": None, "quota": None}
                await connection.execute(INSERT_USER, {**user, "now": now})
            row = await connection.row(
                INSERT,
                {
                    "name": name,
                    "hash": hashed,
                    "user": owner,
                    "daily_tokens": daily_tokens,
                    "rate": rate_per_minute,
                    "models": ",".join(models) or None,
                    "now": now,
                },
            )
            assert row is not None  # RETURNING of an insert always has its row
            return _info(row)

        return await self.backend.write(unit)

    async def find(self, hashed: str) -> ApiKeyInfo | None:
        """The key whose text hashes to ``hashed`` (revoked or not), or None."""

        async def unit(connection: Connection) -> ApiKeyInfo | None:
            row = await connection.row(BY_HASH, {"hash": hashed})
            return None if row is None else _info(row)

        return await self.backend.read(unit)

    async def list_all(self) -> list[ApiKeyInfo]:
        async def unit(connection: Connection) -> list[ApiKeyInfo]:
            return [_info(row) for row in await connection.rows(ALL)]

        return await self.backend.read(unit)

    async def revoke(self, name: str) -> bool:
        """Revoke the key; False when no key of that name is active."""
        params = {"name": name, "now": self.clock()}

        async def unit(connection: Connection) -> bool:
            return await connection.execute(REVOKE, params) > 0

        return await self.backend.write(unit)
