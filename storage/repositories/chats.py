"""Telegram chats: type and title, per-chat model and system prompt, the Spark uid, and the
token calibration ratio (the schema's default for a new chat; updated with each finished
answer, see :mod:`storage.repositories.messages`); plus the Spark uids of forum topics."""

from __future__ import annotations

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608
import hashlib
import secrets
from datetime import datetime

from storage.backends import Connection
from storage.dto import ChatInfo
from storage.models import SPARK_UID_LENGTH
from storage.repositories import Repository
from storage.sql import Params, Row, Statement, sql, utc

CHAT_COLUMNS = "id, type, title, model, system_prompt, token_ratio, spark_uid, created_at"
UPSERT = sql(
    "INSERT INTO chats (id, type, title, spark_uid, created_at, updated_at) "
    "VALUES (:id, :type, :title, :spark_uid, :now, :now) "
    "ON CONFLICT (id) DO UPDATE SET type = excluded.type, title = excluded.title, "
    f"updated_at = excluded.updated_at RETURNING {CHAT_COLUMNS}"
)
GET = sql(f"SELECT {CHAT_COLUMNS} FROM chats WHERE id = :id")
SET_MODEL = sql("UPDATE chats SET model = :model, updated_at = :now WHERE id = :id")
SET_SYSTEM_PROMPT = sql(
    "UPDATE chats SET system_prompt = :prompt, updated_at = :now WHERE id = :id"
)
TOPIC_UID = sql("SELECT spark_uid FROM chat_topics WHERE chat_id = :chat AND thread_id = :thread")
INSERT_TOPIC = sql(
    "INSERT INTO chat_topics (chat_id, thread_id, spark_uid, created_at) "
    "VALUES (:chat, :thread, :spark_uid, :now) ON CONFLICT DO NOTHING"
)


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


def chat_info(row: Row) -> ChatInfo:
    """A chat from a row holding :data:`CHAT_COLUMNS` (by those names)."""
    return ChatInfo(
        id=row["id"],
        type=row["type"],
        title=row["title"],
        model=row["model"],
        system_prompt=row["system_prompt"],
        token_ratio=row["token_ratio"],
        spark_uid=row["spark_uid"],
        created_at=utc(row["created_at"]),
    )


async def upsert_chat(
    connection: Connection, now: datetime, chat_id: int, *, type: str, title: str | None
) -> ChatInfo:
    """Create the chat (with a fresh random Spark uid) or refresh its type and title;
    settings, uid and ratio of an existing chat are kept."""
    params = {"id": chat_id, "type": type, "title": title, "spark_uid": new_spark_uid()}
    row = await connection.row(UPSERT, {**params, "now": now})
    assert row is not None  # RETURNING of an upsert always has its row
    return chat_info(row)


async def topic_uid(connection: Connection, now: datetime, chat_id: int, thread_id: int) -> str:
    """The Spark uid of a forum topic, created on first use."""
    key = {"chat": chat_id, "thread": thread_id}
    row = await connection.row(TOPIC_UID, key)
    if row is None:
        await connection.execute(INSERT_TOPIC, {**key, "spark_uid": new_spark_uid(), "now": now})
        row = await connection.row(TOPIC_UID, key)
    if row is None:
        raise LookupError(f"chat {chat_id} is not stored")
    return str(row["spark_uid"])


class Chats(Repository):
    async def get(self, chat_id: int) -> ChatInfo | None:
        async def unit(connection: Connection) -> ChatInfo | None:
            row = await connection.row(GET, {"id": chat_id})
            return None if row is None else chat_info(row)

        return await self.backend.lookup(unit)

    async def set_model(
        self, chat_id: int, model: str | None, *, type: str, title: str | None = None
    ) -> None:
        """Store the chat (as :meth:`upsert`) with its model override (None: the operator's
        default)."""
        await self._set(SET_MODEL, chat_id, type, title, {"model": model})

    async def set_system_prompt(
        self, chat_id: int, prompt: str | None, *, type: str, title: str | None = None
    ) -> None:
        """Store the chat (as :meth:`upsert`) with its system prompt (None or blank: the
        operator's default)."""
        prompt = (prompt or "").strip() or None
        await self._set(SET_SYSTEM_PROMPT, chat_id, type, title, {"prompt": prompt})

    async def _set(
        self, statement: Statement, chat_id: int, type: str, title: str | None, values: Params
    ) -> None:
        now = self.clock()

        async def unit(connection: Connection) -> None:
            await upsert_chat(connection, now, chat_id, type=type, title=title)
            await connection.execute(statement, {**values, "id": chat_id, "now": now})

        await self.backend.write(unit)
