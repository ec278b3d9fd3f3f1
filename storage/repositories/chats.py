"""Telegram chats: type and title, per-chat model and system prompt, the Spark uid, and the
token calibration ratio (the schema's default for a new chat; updated with each finished
answer, see :mod:`storage.repositories.turns`); plus the Spark uids of forum topics."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Row, bindparam, select

from storage.dto import ChatInfo
from storage.repositories.base import Repository, insert_for, new_spark_uid, table

CHATS = table("chats")
TOPICS = table("chat_topics")
_GET = select(CHATS).where(CHATS.c.id == bindparam("b_id"))
_TOPIC_UID = select(TOPICS.c.spark_uid).where(
    TOPICS.c.chat_id == bindparam("b_chat"), TOPICS.c.thread_id == bindparam("b_thread")
)


@cache
def _upsert(dialect: str) -> Any:
    stmt = insert_for(dialect, CHATS)
    return stmt.on_conflict_do_update(
        index_elements=[CHATS.c.id],
        set_={
            "type": stmt.excluded.type,
            "title": stmt.excluded.title,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(*CHATS.c)


@cache
def _insert_topic(dialect: str) -> Any:
    return insert_for(dialect, TOPICS).on_conflict_do_nothing()


def _chat_info(row: Row[*tuple[Any, ...]]) -> ChatInfo:
    return ChatInfo(
        id=row.id,
        type=row.type,
        title=row.title,
        model=row.model,
        system_prompt=row.system_prompt,
        token_ratio=row.token_ratio,
        spark_uid=row.spark_uid,
        created_at=row.created_at,
    )


class ChatRepository(Repository):
    async def upsert(self, chat_id: int, *, type: str, title: str | None = None) -> ChatInfo:
        """Create the chat (with a fresh random Spark uid) or refresh its type and title;
        settings, uid and ratio of an existing chat are kept."""
        now = self.clock()
        result = await self.execute(
            _upsert(self.dialect),
            {
                "id": chat_id,
                "type": type,
                "title": title,
                "spark_uid": new_spark_uid(),
                "created_at": now,
                "updated_at": now,
            },
        )
        return _chat_info(result.one())

    async def get(self, chat_id: int) -> ChatInfo | None:
        row = (await self.execute(_GET, {"b_id": chat_id})).first()
        return None if row is None else _chat_info(row)

    async def set_model(self, chat_id: int, model: str | None) -> bool:
        """Per-chat model override (None: the operator's default). False if no such chat."""
        return await self._set(chat_id, model=model)

    async def set_system_prompt(self, chat_id: int, prompt: str | None) -> bool:
        """Per-chat system prompt (None or blank: the operator's default)."""
        return await self._set(chat_id, system_prompt=(prompt or "").strip() or None)

    async def _set(self, chat_id: int, **values: object) -> bool:
        result = await self.execute(
            CHATS.update().where(CHATS.c.id == chat_id).values(updated_at=self.clock(), **values)
        )
        return bool(result.rowcount)

    async def topic_uid(self, chat_id: int, thread_id: int) -> str:
        """The Spark uid of a forum topic, created on first use."""
        params = {"b_chat": chat_id, "b_thread": thread_id}
        uid = (await self.execute(_TOPIC_UID, params)).scalar()
        if uid is None:
            await self.execute(
                _insert_topic(self.dialect),
                {
                    "chat_id": chat_id,
                    "thread_id": thread_id,
                    "spark_uid": new_spark_uid(),
                    "created_at": self.clock(),
                },
            )
            uid = (await self.execute(_TOPIC_UID, params)).scalar()
        if uid is None:
            raise LookupError(f"chat {chat_id} is not stored")
        return str(uid)
