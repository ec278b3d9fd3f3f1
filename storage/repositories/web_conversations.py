"""Web conversations: an API key's own conversations, numbered once and for all.

Each is a ``web_conversations`` row (its number, its key) and a chat of type ``web`` with the
id :func:`web_chat_id`, so history, model, system prompt, token calibration and Spark uid are
kept exactly as for a Telegram chat, by the same repositories. Numbers are never handed out
again after a delete (see :class:`storage.models.WebConversation`), so neither is a chat id:
a client holding an old number is told "not found", and the ledger's rows of a deleted
conversation are never attributed to a newer one. A key reaches only its own rows: every
statement here names the key.
"""

from __future__ import annotations

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608
from dataclasses import dataclass
from datetime import datetime

from storage.backends import Connection
from storage.dto import ChatInfo, ConversationInfo, StoredMessage
from storage.repositories import Repository
from storage.repositories.chats import CHAT_COLUMNS, chat_info, upsert_chat
from storage.repositories.conversations import conversation_key, current_conversation
from storage.repositories.messages import MESSAGE_COLUMNS, stored_message
from storage.sql import Row, sql, utc

WEB_CHAT_TYPE = "web"
# Above any Telegram chat id (they fit in 52 bits), so a web chat never meets a Telegram one.
WEB_CHAT_BASE = 1 << 62
# Listing from the newest: a number above any the table can hold.
NEWEST = WEB_CHAT_BASE


def web_chat_id(number: int) -> int:
    """The chat that keeps conversation ``number``'s history and settings."""
    return WEB_CHAT_BASE + number


# With the key's user as stored, so that asking leaves its profile as it is.
_COLUMNS = (
    "w.id AS id, w.created_at AS created_at, c.id AS chat_id, c.title AS title, "
    "c.model AS model, c.system_prompt AS system_prompt, u.id AS user_id, "
    "u.username AS username, u.first_name AS first_name, u.language_code AS language_code "
    f"FROM web_conversations w JOIN chats c ON c.id = w.id + {WEB_CHAT_BASE} "
    "JOIN api_keys k ON k.id = w.key_id JOIN users u ON u.id = k.user_id"
)
OWNER = sql(
    "SELECT u.id AS user_id, u.username AS username, u.first_name AS first_name, "
    "u.language_code AS language_code FROM api_keys k JOIN users u ON u.id = k.user_id "
    "WHERE k.id = :key"
)
INSERT = sql("INSERT INTO web_conversations (key_id, created_at) VALUES (:key, :now) RETURNING id")
GET = sql(f"SELECT {_COLUMNS} WHERE w.id = :id AND w.key_id = :key")
PAGE = sql(
    f"SELECT {_COLUMNS} WHERE w.key_id = :key AND w.id < :before ORDER BY w.id DESC LIMIT :limit"
)
_CHAT = ", ".join(f"c.{column} AS {column}" for column in CHAT_COLUMNS.split(", "))
# What a question needs, in one statement: the key's conversation, its chat, the key's user
# and the chat's open conversation (none before the first question).
ARRIVAL = sql(
    f"SELECT w.id AS number, w.created_at AS number_created_at, {_CHAT}, u.id AS user_id, "
    "u.username AS username, u.first_name AS first_name, u.language_code AS language_code, "
    "v.id AS conversation_id, v.created_at AS conversation_created_at "
    f"FROM web_conversations w JOIN chats c ON c.id = w.id + {WEB_CHAT_BASE} "
    "JOIN api_keys k ON k.id = w.key_id JOIN users u ON u.id = k.user_id "
    "LEFT JOIN conversations v ON v.chat_id = c.id AND v.thread_id = 0 "
    "AND v.scope_user_id = 0 AND v.closed_at IS NULL "
    "WHERE w.id = :id AND w.key_id = :key"
)
# The first question names the conversation (a concurrent one may have named it first).
NAME = sql(
    "UPDATE chats SET title = COALESCE(title, :title), updated_at = :now "
    f"WHERE id = :chat AND type = '{WEB_CHAT_TYPE}' RETURNING {CHAT_COLUMNS}"
)
DELETE = sql("DELETE FROM web_conversations WHERE id = :id AND key_id = :key")
_OF_CHAT = "conversation_id IN (SELECT id FROM conversations WHERE chat_id = :chat)"
# Answers first: they point at their questions, without ON DELETE.
DELETE_ANSWERS = sql(f"DELETE FROM messages WHERE role = 'assistant' AND {_OF_CHAT}")
DELETE_MESSAGES = sql(f"DELETE FROM messages WHERE {_OF_CHAT}")
# Its conversations and topics go with it (ON DELETE CASCADE); the ledger keeps its rows.
DELETE_CHAT = sql("DELETE FROM chats WHERE id = :chat AND type = 'web'")
OPEN_MESSAGES = sql(
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ("
    "SELECT id FROM conversations WHERE chat_id = :chat AND thread_id = 0 "
    "AND scope_user_id = 0 AND closed_at IS NULL) ORDER BY id"
)
ANSWER_TO = sql(
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE reply_to_id = :question AND {_OF_CHAT} "
    "ORDER BY id DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Owner:
    """The user the key bills to, as stored."""

    user_id: int
    username: str | None
    first_name: str | None
    language_code: str | None


@dataclass(frozen=True, slots=True)
class WebConversationInfo:
    number: int  # the id clients use
    chat_id: int
    title: str | None
    model: str | None
    system_prompt: str | None
    created_at: datetime
    owner: Owner


@dataclass(frozen=True, slots=True)
class WebArrival:
    """A question's conversation as read for it: ``chat`` and ``conversation`` (the open one;
    None before the first question) are what the conversation service stores it with."""

    info: WebConversationInfo
    chat: ChatInfo
    conversation: ConversationInfo | None


def _owner(row: Row) -> Owner:
    return Owner(row["user_id"], row["username"], row["first_name"], row["language_code"])


def _info(row: Row) -> WebConversationInfo:
    return WebConversationInfo(
        number=row["id"],
        chat_id=row["chat_id"],
        title=row["title"],
        model=row["model"],
        system_prompt=row["system_prompt"],
        created_at=utc(row["created_at"]),
        owner=_owner(row),
    )


def _arrival(row: Row) -> WebArrival:
    chat = chat_info(row)
    info = WebConversationInfo(
        number=row["number"],
        chat_id=chat.id,
        title=chat.title,
        model=chat.model,
        system_prompt=chat.system_prompt,
        created_at=utc(row["number_created_at"]),
        owner=_owner(row),
    )
    conversation = None
    if row["conversation_id"] is not None:
        conversation = ConversationInfo(
            id=row["conversation_id"],
            chat_id=chat.id,
            thread_id=0,
            scope_user_id=0,
            spark_uid=chat.spark_uid,
            created_at=utc(row["conversation_created_at"]),
            closed_at=None,
        )
    return WebArrival(info, chat, conversation)


class WebConversations(Repository):
    async def create(self, key_id: int) -> WebConversationInfo:
        """A new conversation of the key, with the next number never used before, and its
        chat (a fresh Spark uid, the operator's model and prompt)."""
        now = self.clock()

        async def unit(connection: Connection) -> WebConversationInfo:
            owner = await connection.row(OWNER, {"key": key_id})
            if owner is None:
                raise LookupError(f"no API key {key_id}")
            inserted = await connection.row(INSERT, {"key": key_id, "now": now})
            assert inserted is not None  # RETURNING of an insert always has its row
            number = int(inserted["id"])
            chat = await upsert_chat(
                connection, now, web_chat_id(number), type=WEB_CHAT_TYPE, title=None
            )
            return WebConversationInfo(
                number=number,
                chat_id=chat.id,
                title=chat.title,
                model=chat.model,
                system_prompt=chat.system_prompt,
                created_at=now,
                owner=_owner(owner),
            )

        return await self.backend.write(unit)

    async def page(
        self, key_id: int, *, before: int | None, limit: int
    ) -> list[WebConversationInfo]:
        """Up to ``limit`` of the key's conversations numbered below ``before`` (all when
        None), newest first."""
        params = {"key": key_id, "before": NEWEST if before is None else before, "limit": limit}

        async def unit(connection: Connection) -> list[WebConversationInfo]:
            return [_info(row) for row in await connection.rows(PAGE, params)]

        return await self.backend.read(unit)

    async def get(self, key_id: int, number: int) -> WebConversationInfo | None:
        """The key's conversation ``number``; None for another key's, a deleted or an
        unknown one."""
        if not 0 < number < NEWEST:
            return None
        params = {"id": number, "key": key_id}

        async def unit(connection: Connection) -> WebConversationInfo | None:
            row = await connection.row(GET, params)
            return None if row is None else _info(row)

        return await self.backend.read(unit)

    async def arrival(self, key_id: int, number: int) -> WebArrival | None:
        """The key's conversation ``number`` as a question needs it (:class:`WebArrival`), in
        one read; None like :meth:`get`."""
        if not 0 < number < NEWEST:
            return None
        params = {"id": number, "key": key_id}

        async def unit(connection: Connection) -> WebArrival | None:
            row = await connection.row(ARRIVAL, params)
            return None if row is None else _arrival(row)

        return await self.backend.read(unit)

    async def name(self, chat_id: int, title: str) -> tuple[ChatInfo, ConversationInfo] | None:
        """Give the conversation's chat ``title`` unless it has one, and open its
        conversation unless one is open: the first question's arrival, in one unit. None
        when the chat is gone (the conversation was deleted meanwhile)."""
        now = self.clock()

        async def unit(connection: Connection) -> tuple[ChatInfo, ConversationInfo] | None:
            row = await connection.row(NAME, {"chat": chat_id, "title": title, "now": now})
            if row is None:
                return None
            conversation = await current_conversation(connection, now, conversation_key(chat_id))
            return chat_info(row), conversation

        return await self.backend.write(unit)

    async def delete(self, key_id: int, number: int) -> bool:
        """Remove the key's conversation with its chat and messages (the ledger keeps its
        rows); False when the key has no such conversation."""
        if not 0 < number < NEWEST:
            return False
        chat = {"chat": web_chat_id(number)}

        async def unit(connection: Connection) -> bool:
            if not await connection.execute(DELETE, {"id": number, "key": key_id}):
                return False
            await connection.execute(DELETE_ANSWERS, chat)
            await connection.execute(DELETE_MESSAGES, chat)
            await connection.execute(DELETE_CHAT, chat)
            return True

        return await self.backend.write(unit)

    async def messages(self, chat_id: int) -> list[StoredMessage]:
        """The messages of the chat's open conversation, oldest first."""

        async def unit(connection: Connection) -> list[StoredMessage]:
            rows = await connection.rows(OPEN_MESSAGES, {"chat": chat_id})
            return [stored_message(row) for row in rows]

        return await self.backend.read(unit)

    async def answer_to(self, chat_id: int, question_id: int) -> StoredMessage | None:
        """The newest answer to question ``question_id`` of this chat, if stored."""
        params = {"chat": chat_id, "question": question_id}

        async def unit(connection: Connection) -> StoredMessage | None:
            row = await connection.row(ANSWER_TO, params)
            return None if row is None else stored_message(row)

        return await self.backend.read(unit)
