"""Conversations: one open conversation per chat, forum topic and (in "user" scope) user;
/new closes it (it is kept) and opens the next."""

from __future__ import annotations

from sqlalchemy import and_, select, update

from storage.dto import ConversationInfo, HistoryScope
from storage.models import Chat, ChatTopic, Conversation
from storage.repositories.base import Repository
from storage.repositories.chats import ChatRepository


def _key(
    chat_id: int, thread_id: int | None, user_id: int | None, scope: HistoryScope
) -> tuple[int, int, int]:
    if scope not in ("chat", "user"):
        raise ValueError(f"scope must be 'chat' or 'user', got {scope!r}")
    if scope == "user" and user_id is None:
        raise ValueError("scope 'user' needs a user_id")
    return chat_id, thread_id or 0, user_id if scope == "user" and user_id is not None else 0


class ConversationRepository(Repository):
    async def current(
        self,
        chat_id: int,
        *,
        thread_id: int | None = None,
        user_id: int | None = None,
        scope: HistoryScope = "chat",
    ) -> ConversationInfo:
        """The open conversation for this chat / topic / scope, opened if there is none.

        The chat must be stored already (:meth:`ChatRepository.upsert`). ``scope`` "user"
        gives every user of a group a conversation of their own.
        """
        key = _key(chat_id, thread_id, user_id, scope)
        found = await self._open(key)
        if found is not None:
            return found
        return await self._create(key)

    async def start_new(
        self,
        chat_id: int,
        *,
        thread_id: int | None = None,
        user_id: int | None = None,
        scope: HistoryScope = "chat",
    ) -> ConversationInfo:
        """Close the open conversation (its messages are kept) and open a fresh one."""
        chat, thread, scope_user = key = _key(chat_id, thread_id, user_id, scope)
        await self.session.execute(
            update(Conversation)
            .where(
                Conversation.chat_id == chat,
                Conversation.thread_id == thread,
                Conversation.scope_user_id == scope_user,
                Conversation.closed_at.is_(None),
            )
            .values(closed_at=self.clock())
        )
        return await self._create(key)

    async def get(self, conversation_id: int) -> ConversationInfo | None:
        return await self._one(Conversation.id == conversation_id)

    async def _open(self, key: tuple[int, int, int]) -> ConversationInfo | None:
        chat, thread, scope_user = key
        return await self._one(
            Conversation.chat_id == chat,
            Conversation.thread_id == thread,
            Conversation.scope_user_id == scope_user,
            Conversation.closed_at.is_(None),
        )

    async def _one(self, *where: object) -> ConversationInfo | None:
        # One query for the hot path: the conversation with the chat's and the topic's uid.
        query = (
            select(Conversation, Chat.spark_uid, ChatTopic.spark_uid)
            .join(Chat, Chat.id == Conversation.chat_id)
            .outerjoin(
                ChatTopic,
                and_(
                    ChatTopic.chat_id == Conversation.chat_id,
                    ChatTopic.thread_id == Conversation.thread_id,
                ),
            )
            .where(*where)  # type: ignore[arg-type]
        )
        row = (await self.session.execute(query)).first()
        if row is None:
            return None
        conversation, chat_uid, topic_uid = row
        if conversation.thread_id and topic_uid is None:
            topic_uid = await ChatRepository(self.session, self.clock).topic_uid(
                conversation.chat_id, conversation.thread_id
            )
        return ConversationInfo(
            id=conversation.id,
            chat_id=conversation.chat_id,
            thread_id=conversation.thread_id,
            scope_user_id=conversation.scope_user_id,
            spark_uid=topic_uid if conversation.thread_id else chat_uid,
            created_at=conversation.created_at,
            closed_at=conversation.closed_at,
        )

    async def _create(self, key: tuple[int, int, int]) -> ConversationInfo:
        chat, thread, scope_user = key
        if await self.session.scalar(select(Chat.id).where(Chat.id == chat)) is None:
            raise LookupError(f"chat {chat} is not stored; upsert it before its conversations")
        if thread:
            await ChatRepository(self.session, self.clock).topic_uid(chat, thread)
        # A concurrent caller may have opened it first: the partial unique index turns our
        # insert into a no-op and we read theirs.
        await self.session.execute(
            self.insert(Conversation)
            .values(
                chat_id=chat, thread_id=thread, scope_user_id=scope_user, created_at=self.clock()
            )
            .on_conflict_do_nothing()
        )
        found = await self._open(key)
        if found is None:
            raise LookupError(f"conversation {key} vanished while being opened")
        return found
