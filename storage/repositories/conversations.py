"""Conversations: one open conversation per chat, forum topic and (in "user" scope) user;
/new closes it (it is kept) and opens the next."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Row, and_, bindparam, select

from storage.dto import ConversationInfo, HistoryScope
from storage.repositories.base import Repository, insert_for, member_spark_uid, table
from storage.repositories.chats import CHATS, TOPICS, ChatRepository

CONVERSATIONS = table("conversations")
_C = CONVERSATIONS.c
_KEY = and_(
    _C.chat_id == bindparam("b_chat"),
    _C.thread_id == bindparam("b_thread"),
    _C.scope_user_id == bindparam("b_scope"),
    _C.closed_at.is_(None),
)
# The conversation with the chat's and the topic's uid, in one query (the hot path).
_WITH_UIDS = (
    select(
        CONVERSATIONS, CHATS.c.spark_uid.label("chat_uid"), TOPICS.c.spark_uid.label("topic_uid")
    )
    .join_from(CONVERSATIONS, CHATS, CHATS.c.id == _C.chat_id)
    .outerjoin(TOPICS, and_(TOPICS.c.chat_id == _C.chat_id, TOPICS.c.thread_id == _C.thread_id))
)
_OPEN = _WITH_UIDS.where(_KEY)
_BY_ID = _WITH_UIDS.where(_C.id == bindparam("b_id"))
_CLOSE = CONVERSATIONS.update().where(_KEY).values(closed_at=bindparam("b_now"))
_CHAT_EXISTS = select(CHATS.c.id).where(CHATS.c.id == bindparam("b_chat"))


@cache
def _insert(dialect: str) -> Any:
    # A concurrent caller may open the conversation first: the partial unique index turns our
    # insert into a no-op and we read theirs.
    return insert_for(dialect, CONVERSATIONS).on_conflict_do_nothing()


def _key(
    chat_id: int, thread_id: int | None, user_id: int | None, scope: HistoryScope
) -> dict[str, int]:
    if scope not in ("chat", "user"):
        raise ValueError(f"scope must be 'chat' or 'user', got {scope!r}")
    if scope == "user" and user_id is None:
        raise ValueError("scope 'user' needs a user_id")
    return {
        "b_chat": chat_id,
        "b_thread": thread_id or 0,
        "b_scope": user_id if scope == "user" and user_id is not None else 0,
    }


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
        found = await self._one(_OPEN, key)
        return found if found is not None else await self._create(key)

    async def start_new(
        self,
        chat_id: int,
        *,
        thread_id: int | None = None,
        user_id: int | None = None,
        scope: HistoryScope = "chat",
    ) -> ConversationInfo:
        """Close the open conversation (its messages are kept) and open a fresh one."""
        key = _key(chat_id, thread_id, user_id, scope)
        await self.execute(_CLOSE, {**key, "b_now": self.clock()})
        return await self._create(key)

    async def get(self, conversation_id: int) -> ConversationInfo | None:
        return await self._one(_BY_ID, {"b_id": conversation_id})

    async def _one(self, query: Any, params: dict[str, int]) -> ConversationInfo | None:
        row: Row[*tuple[Any, ...]] | None = (await self.execute(query, params)).first()
        if row is None:
            return None
        uid = row.chat_uid
        if row.thread_id:
            uid = row.topic_uid or await ChatRepository(self.connection, self.clock).topic_uid(
                row.chat_id, row.thread_id
            )
        if row.scope_user_id:
            uid = member_spark_uid(uid, row.scope_user_id)
        return ConversationInfo(
            id=row.id,
            chat_id=row.chat_id,
            thread_id=row.thread_id,
            scope_user_id=row.scope_user_id,
            spark_uid=uid,
            created_at=row.created_at,
            closed_at=row.closed_at,
        )

    async def _create(self, key: dict[str, int]) -> ConversationInfo:
        chat, thread = key["b_chat"], key["b_thread"]
        if (await self.execute(_CHAT_EXISTS, {"b_chat": chat})).first() is None:
            raise LookupError(f"chat {chat} is not stored; upsert it before its conversations")
        if thread:
            await ChatRepository(self.connection, self.clock).topic_uid(chat, thread)
        await self.execute(
            _insert(self.dialect),
            {
                "chat_id": chat,
                "thread_id": thread,
                "scope_user_id": key["b_scope"],
                "created_at": self.clock(),
            },
        )
        found = await self._one(_OPEN, key)
        if found is None:
            raise LookupError(f"conversation {key} vanished while being opened")
        return found
