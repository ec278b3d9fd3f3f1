"""Conversations: one open conversation per chat, forum topic and (in "user" scope) user;
/new closes it (it is kept) and opens the next. And a question's arrival: the chat and its
open conversation, written only when something is new or changed."""

from __future__ import annotations

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608
from dataclasses import dataclass
from datetime import datetime

from storage.backends import Connection
from storage.dto import ChatInfo, ConversationInfo
from storage.repositories import Repository
from storage.repositories.chats import (
    CHAT_COLUMNS,
    chat_info,
    member_spark_uid,
    topic_uid,
    upsert_chat,
)
from storage.repositories.users import upsert_user
from storage.sql import Row, sql, utc

_CHAT = ", ".join(f"c.{column} AS {column}" for column in CHAT_COLUMNS.split(", "))

# Everything a question's arrival needs, read in one statement: the chat, the asker's stored
# profile, the open conversation and the topic's uid. When all is there and unchanged, the
# arrival writes nothing.
ARRIVAL = sql(
    f"SELECT {_CHAT}, u.id AS user_id, u.username AS username, u.first_name AS first_name, "
    "u.language_code AS language_code, v.id AS conversation_id, "
    "v.created_at AS conversation_created_at, t.spark_uid AS topic_uid "
    "FROM chats c "
    "LEFT JOIN users u ON u.id = :user "
    "LEFT JOIN conversations v ON v.chat_id = c.id AND v.thread_id = :thread "
    "AND v.scope_user_id = :scope AND v.closed_at IS NULL "
    "LEFT JOIN chat_topics t ON t.chat_id = c.id AND t.thread_id = :thread "
    "WHERE c.id = :chat"
)
# The open conversation with the chat's and the topic's uid.
OPEN = sql(
    "SELECT v.id AS id, v.chat_id AS chat_id, v.thread_id AS thread_id, "
    "v.scope_user_id AS scope_user_id, v.created_at AS created_at, v.closed_at AS closed_at, "
    "c.spark_uid AS chat_uid, t.spark_uid AS topic_uid "
    "FROM conversations v JOIN chats c ON c.id = v.chat_id "
    "LEFT JOIN chat_topics t ON t.chat_id = v.chat_id AND t.thread_id = v.thread_id "
    "WHERE v.chat_id = :chat AND v.thread_id = :thread AND v.scope_user_id = :scope "
    "AND v.closed_at IS NULL"
)
CLOSE = sql(
    "UPDATE conversations SET closed_at = :now WHERE chat_id = :chat AND thread_id = :thread "
    "AND scope_user_id = :scope AND closed_at IS NULL"
)
# A concurrent caller may open the conversation first: the partial unique index turns this
# insert into a no-op and the caller reads theirs.
INSERT = sql(
    "INSERT INTO conversations (chat_id, thread_id, scope_user_id, created_at) "
    "VALUES (:chat, :thread, :scope, :now) ON CONFLICT DO NOTHING"
)
CHAT_EXISTS = sql("SELECT id FROM chats WHERE id = :chat")


@dataclass(frozen=True, slots=True)
class Arrival:
    """Who asked where, as Telegram describes them now."""

    user_id: int
    username: str | None
    first_name: str | None
    language_code: str | None
    chat_id: int
    chat_type: str
    title: str | None
    thread_id: int = 0  # 0 outside forum topics
    scope_user_id: int = 0  # 0 for a conversation the whole chat shares

    def key(self) -> dict[str, object]:
        """The open conversation's key (and the asker, for the arrival's read)."""
        return {
            "chat": self.chat_id,
            "user": self.user_id,
            "thread": self.thread_id,
            "scope": self.scope_user_id,
        }

    def settled(self, row: Row | None) -> tuple[ChatInfo, ConversationInfo] | None:
        """The chat and open conversation from an :data:`ARRIVAL` row, or None when something
        must be written first (a new user, chat, topic or conversation, or a changed name or
        title)."""
        if row is None:
            return None
        chat = chat_info(row)
        if (
            row["user_id"] is None
            or (row["username"], row["first_name"], row["language_code"])
            != (self.username, self.first_name, self.language_code)
            or (chat.type, chat.title) != (self.chat_type, self.title)
            or row["conversation_id"] is None
            or (self.thread_id and row["topic_uid"] is None)
        ):
            return None
        uid = row["topic_uid"] if self.thread_id else chat.spark_uid
        if self.scope_user_id:
            uid = member_spark_uid(uid, self.scope_user_id)
        conversation = ConversationInfo(
            id=row["conversation_id"],
            chat_id=chat.id,
            thread_id=self.thread_id,
            scope_user_id=self.scope_user_id,
            spark_uid=uid,
            created_at=utc(row["conversation_created_at"]),
            closed_at=None,
        )
        return chat, conversation


async def _open(
    connection: Connection, now: datetime, key: dict[str, int]
) -> ConversationInfo | None:
    row = await connection.row(OPEN, key)
    if row is None:
        return None
    uid = row["chat_uid"]
    if row["thread_id"]:
        uid = row["topic_uid"] or await topic_uid(
            connection, now, row["chat_id"], row["thread_id"]
        )
    if row["scope_user_id"]:
        uid = member_spark_uid(uid, row["scope_user_id"])
    return ConversationInfo(
        id=row["id"],
        chat_id=row["chat_id"],
        thread_id=row["thread_id"],
        scope_user_id=row["scope_user_id"],
        spark_uid=uid,
        created_at=utc(row["created_at"]),
        closed_at=None,
    )


async def _create(connection: Connection, now: datetime, key: dict[str, int]) -> ConversationInfo:
    chat, thread = key["chat"], key["thread"]
    if await connection.row(CHAT_EXISTS, {"chat": chat}) is None:
        raise LookupError(f"chat {chat} is not stored; upsert it before its conversations")
    if thread:
        await topic_uid(connection, now, chat, thread)
    await connection.execute(INSERT, {**key, "now": now})
    found = await _open(connection, now, key)
    if found is None:
        raise LookupError(f"conversation {key} vanished while being opened")
    return found


def conversation_key(chat_id: int, thread_id: int = 0, scope_user_id: int = 0) -> dict[str, int]:
    return {"chat": chat_id, "thread": thread_id, "scope": scope_user_id}


async def current_conversation(
    connection: Connection, now: datetime, key: dict[str, int]
) -> ConversationInfo:
    """The open conversation for this chat / topic / scope (:func:`conversation_key`),
    opened if there is none. The chat must be stored already."""
    found = await _open(connection, now, key)
    return found if found is not None else await _create(connection, now, key)


async def store_asker(connection: Connection, now: datetime, arrival: Arrival) -> ChatInfo:
    """Store the asker and the chat as Telegram describes them now."""
    await upsert_user(
        connection,
        now,
        arrival.user_id,
        username=arrival.username,
        first_name=arrival.first_name,
        language_code=arrival.language_code,
    )
    return await upsert_chat(
        connection, now, arrival.chat_id, type=arrival.chat_type, title=arrival.title
    )


async def store_arrival(
    connection: Connection, now: datetime, arrival: Arrival
) -> tuple[ChatInfo, ConversationInfo]:
    """:func:`store_asker`, and the open conversation (opened if there is none)."""
    chat = await store_asker(connection, now, arrival)
    key = conversation_key(arrival.chat_id, arrival.thread_id, arrival.scope_user_id)
    return chat, await current_conversation(connection, now, key)


class Conversations(Repository):
    async def arrive(self, arrival: Arrival) -> tuple[ChatInfo, ConversationInfo]:
        """The chat and its open conversation for a question. Read in one statement; only a
        new or changed user, chat, topic or conversation is written (a second unit), so most
        questions write nothing here."""
        params = arrival.key()

        async def read(connection: Connection) -> Row | None:
            return await connection.row(ARRIVAL, params)

        found = arrival.settled(await self.backend.lookup(read))
        if found is not None:
            return found
        now = self.clock()

        async def write(connection: Connection) -> tuple[ChatInfo, ConversationInfo]:
            return await store_arrival(connection, now, arrival)

        return await self.backend.write(write)

    async def start_new(self, arrival: Arrival) -> ConversationInfo:
        """Close the open conversation (its messages are kept) and open a fresh one."""
        now = self.clock()

        async def unit(connection: Connection) -> ConversationInfo:
            await store_asker(connection, now, arrival)
            key = conversation_key(arrival.chat_id, arrival.thread_id, arrival.scope_user_id)
            await connection.execute(CLOSE, {**key, "now": now})
            return await _create(connection, now, key)

        return await self.backend.write(unit)
