"""The web conversations' storage port on today's database: chats in each key's id block.

Conversations are ``chats`` rows of type ``web`` (:mod:`bot.service.web_store`), their
questions and answers the usual ``conversations`` and ``messages`` rows, so no table of
their own is needed. Listing a key's conversations is a range scan of the chats' primary key.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from bot.service.conversation import Participant
from bot.service.web_store import (
    WEB_CHAT_BASE,
    WEB_CHAT_TYPE,
    WebConversationInfo,
    key_block,
    web_chat_id,
)
from storage.database import Database
from storage.dto import MessageRole, MessageStatus, StoredMessage
from storage.models import Chat, Conversation, Message
from storage.repositories.base import new_spark_uid

# Two keys' first conversations created at the same moment may race for a number: retry.
CREATE_ATTEMPTS = 5


def _info(chat: Chat) -> WebConversationInfo:
    return WebConversationInfo(
        number=(chat.id - WEB_CHAT_BASE) & ((1 << 31) - 1),
        chat_id=chat.id,
        title=chat.title,
        model=chat.model,
        system_prompt=chat.system_prompt,
        created_at=chat.created_at,
    )


def _stored(row: Message) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        role=cast(MessageRole, row.role),
        content=row.content,
        status=MessageStatus(row.status),
        usable=row.usable,
        telegram_message_ids=tuple(row.telegram_message_ids or ()),
        reply_to_id=row.reply_to_id,
        user_id=row.user_id,
        model=row.model,
        sid=row.sid,
        error_code=row.error_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlWebConversationStore:
    """:class:`~bot.service.web_store.WebConversationStore` over :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, key_id: int) -> WebConversationInfo:
        first, last = key_block(key_id)
        for attempt in range(CREATE_ATTEMPTS):
            try:
                async with self._db.session() as session:
                    highest = await session.scalar(
                        select(func.max(Chat.id)).where(Chat.id.between(first, last))
                    )
                    chat_id = first if highest is None else int(highest) + 1
                    if chat_id > last:
                        raise ValueError(f"key {key_id} has no conversation numbers left")
                    now = self._db.clock()
                    chat = Chat(
                        id=chat_id,
                        type=WEB_CHAT_TYPE,
                        title=None,
                        spark_uid=new_spark_uid(),
                        token_ratio=1.0,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(chat)
                return _info(chat)
            except IntegrityError:
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def page(
        self, key_id: int, *, before: int | None, limit: int
    ) -> list[WebConversationInfo]:
        first, last = key_block(key_id)
        if before is not None:
            last = min(last, web_chat_id(key_id, max(1, before)) - 1)
        async with self._db.session(readonly=True) as session:
            rows = await session.scalars(
                select(Chat)
                .where(Chat.id.between(first, last), Chat.type == WEB_CHAT_TYPE)
                .order_by(Chat.id.desc())
                .limit(limit)
            )
            return [_info(chat) for chat in rows]

    async def get(self, key_id: int, number: int) -> WebConversationInfo | None:
        try:
            chat_id = web_chat_id(key_id, number)
        except ValueError:
            return None
        async with self._db.session(readonly=True) as session:
            chat = await session.get(Chat, chat_id)
            if chat is None or chat.type != WEB_CHAT_TYPE:
                return None
            return _info(chat)

    async def delete(self, key_id: int, number: int) -> bool:
        try:
            chat_id = web_chat_id(key_id, number)
        except ValueError:
            return False
        async with self._db.session() as session:
            # Messages first: answers point at their questions without ON DELETE.
            conversations = select(Conversation.id).where(Conversation.chat_id == chat_id)
            await session.execute(
                delete(Message).where(
                    Message.conversation_id.in_(conversations),
                    Message.role == "assistant",
                )
            )
            await session.execute(
                delete(Message).where(Message.conversation_id.in_(conversations))
            )
            result = await session.execute(
                delete(Chat).where(Chat.id == chat_id, Chat.type == WEB_CHAT_TYPE)
            )
            return bool(getattr(result, "rowcount", 0))

    async def messages(self, chat_id: int) -> list[StoredMessage]:
        async with self._db.session(readonly=True) as session:
            open_conversation = (
                select(Conversation.id)
                .where(Conversation.chat_id == chat_id, Conversation.closed_at.is_(None))
                .scalar_subquery()
            )
            rows = await session.scalars(
                select(Message)
                .where(Message.conversation_id == open_conversation)
                .order_by(Message.id)
            )
            return [_stored(row) for row in rows]

    async def answer_to(self, chat_id: int, question_id: int) -> StoredMessage | None:
        async with self._db.session(readonly=True) as session:
            row = await session.scalar(
                select(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Conversation.chat_id == chat_id, Message.reply_to_id == question_id)
                .order_by(Message.id.desc())
                .limit(1)
            )
            return None if row is None else _stored(row)

    async def participant(self, user_id: int) -> Participant:
        async with self._db.repositories(readonly=True) as repos:
            user = await repos.users.get(user_id)
        if user is None:
            return Participant(user_id=user_id)
        return Participant(
            user_id=user_id,
            username=user.username,
            first_name=user.first_name,
            language_code=user.language_code,
        )
