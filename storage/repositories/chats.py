"""Telegram chats: type and title, per-chat model and system prompt, the Spark uid, and the
token calibration ratio; plus the Spark uids of forum topics."""

from __future__ import annotations

from sqlalchemy import select, update

from bot.spark.tokens import DEFAULT_RATIO, update_ratio
from storage.dto import ChatInfo
from storage.models import Chat, ChatTopic
from storage.repositories.base import Repository, new_spark_uid


def _chat_info(row: Chat) -> ChatInfo:
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
        stmt = self.insert(Chat).values(
            id=chat_id,
            type=type,
            title=title,
            token_ratio=DEFAULT_RATIO,
            spark_uid=new_spark_uid(),
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[Chat.id],
            set_={
                "type": stmt.excluded.type,
                "title": stmt.excluded.title,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(Chat)
        row = (
            await self.session.scalars(stmt, execution_options={"populate_existing": True})
        ).one()
        return _chat_info(row)

    async def get(self, chat_id: int) -> ChatInfo | None:
        row = await self.session.scalar(select(Chat).where(Chat.id == chat_id))
        return None if row is None else _chat_info(row)

    async def set_model(self, chat_id: int, model: str | None) -> bool:
        """Per-chat model override (None: the operator's default). False if no such chat."""
        return await self._set(chat_id, model=model)

    async def set_system_prompt(self, chat_id: int, prompt: str | None) -> bool:
        """Per-chat system prompt (None or blank: the operator's default)."""
        return await self._set(chat_id, system_prompt=(prompt or "").strip() or None)

    async def _set(self, chat_id: int, **values: object) -> bool:
        result = await self.session.execute(
            update(Chat).where(Chat.id == chat_id).values(updated_at=self.clock(), **values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def update_calibration(
        self, chat_id: int, raw_estimate: int, reported_prompt_tokens: int
    ) -> float:
        """Fold Spark's reported ``prompt_tokens`` for a prompt estimated (raw) at
        ``raw_estimate`` into the chat's ratio; returns the new ratio."""
        current = await self.session.scalar(
            select(Chat.token_ratio).where(Chat.id == chat_id).with_for_update()
        )
        if current is None:
            raise LookupError(f"chat {chat_id} is not stored")
        ratio = update_ratio(current, raw_estimate, reported_prompt_tokens)
        await self.session.execute(
            update(Chat).where(Chat.id == chat_id).values(token_ratio=ratio)
        )
        return ratio

    async def topic_uid(self, chat_id: int, thread_id: int) -> str:
        """The Spark uid of a forum topic, created on first use."""
        query = select(ChatTopic.spark_uid).where(
            ChatTopic.chat_id == chat_id, ChatTopic.thread_id == thread_id
        )
        uid = await self.session.scalar(query)
        if uid is None:
            await self.session.execute(
                self.insert(ChatTopic)
                .values(
                    chat_id=chat_id,
                    thread_id=thread_id,
                    spark_uid=new_spark_uid(),
                    created_at=self.clock(),
                )
                .on_conflict_do_nothing()
            )
            uid = await self.session.scalar(query)
        if uid is None:
            raise LookupError(f"chat {chat_id} is not stored")
        return uid
