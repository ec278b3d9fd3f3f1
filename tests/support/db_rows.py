"""What is stored, read back for assertions: plain SQL by column name, through the same runner
as the repositories (so a test reads what the bot wrote, on either backend).

Production code has no methods that only tests call; these reads are the tests' own.
Timestamps come back as aware UTC datetimes, ``usable`` as a bool, on both backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from storage.backends import Connection
from storage.database import Database
from storage.dto import ChatInfo, ConversationInfo, HistoryTurn, StoredMessage, UserInfo
from storage.repositories import chats, users
from storage.repositories.conversations import (
    ARRIVAL,
    Arrival,
    conversation_key,
    current_conversation,
)
from storage.repositories.messages import MESSAGE_COLUMNS, stored_message
from storage.sql import Row, as_date, maybe_utc, sql

# A chat row written straight through sqlite3, for tests that hold the file themselves.
SQLITE_INSERT_CHAT = (
    "INSERT INTO chats (id, type, token_ratio, spark_uid, created_at, updated_at) "
    "VALUES (?, 'private', 1.0, ?, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
)

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608


class Record(Mapping[str, Any]):
    """One row by column name, also as attributes (``record.total_tokens``)."""

    def __init__(self, row: Row) -> None:
        values: dict[str, Any] = {}
        for key in row.keys():  # noqa: SIM118 - a row iterates its values, not its names
            value = row[key]
            if key.endswith("_at") and isinstance(value, str | datetime):
                value = maybe_utc(value)
            elif key in ("day", "month", "last_day") and isinstance(value, str | date):
                value = as_date(value)
            elif key == "usable" and value is not None:
                value = bool(value)
            values[str(key)] = value
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Any:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Record({self._values!r})"


async def rows(database: Database, query: str, **params: object) -> list[Record]:
    """Every row of ``query`` (``:name`` placeholders), read in one unit of work."""
    statement = sql(query)

    async def unit(connection: Connection) -> list[Record]:
        return [Record(row) for row in await connection.rows(statement, params)]

    return await database.runner.read(unit)


async def one(database: Database, query: str, **params: object) -> Record | None:
    found = await rows(database, query, **params)
    return found[0] if found else None


async def ledger(database: Database) -> list[Record]:
    """Every ledger row, oldest first."""
    return await rows(database, "SELECT * FROM usage_records ORDER BY id")


async def _messages(database: Database, where: str, **params: object) -> list[StoredMessage]:
    query = sql(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY conversation_id, id"
    )

    async def unit(connection: Connection) -> list[StoredMessage]:
        return [stored_message(row) for row in await connection.rows(query, params)]

    return await database.runner.read(unit)


async def chat_messages(database: Database, chat_id: int) -> list[StoredMessage]:
    """Every stored message of every conversation of ``chat_id``, oldest first."""
    return await _messages(
        database,
        "conversation_id IN (SELECT id FROM conversations WHERE chat_id = :chat)",
        chat=chat_id,
    )


async def conversation_messages(database: Database, conversation_id: int) -> list[StoredMessage]:
    """Every message of one conversation, oldest first."""
    return await _messages(
        database, "conversation_id = :conversation", conversation=conversation_id
    )


async def message(database: Database, message_id: int) -> StoredMessage | None:
    found = await _messages(database, "id = :id", id=message_id)
    return found[0] if found else None


async def message_shown_by(
    database: Database, chat_id: int, telegram_message_id: int
) -> StoredMessage | None:
    """The stored message a Telegram message shows (through its link), or None."""
    found = await _messages(
        database,
        "id IN (SELECT message_id FROM telegram_messages WHERE chat_id = :chat "
        "AND telegram_message_id = :telegram_id)",
        chat=chat_id,
        telegram_id=telegram_message_id,
    )
    return found[0] if found else None


async def tokens_of(database: Database, user_id: int) -> list[int]:
    """The ledger's total_tokens of ``user_id``'s requests, oldest first."""
    found = await rows(
        database,
        "SELECT total_tokens FROM usage_records WHERE user_id = :user ORDER BY id",
        user=user_id,
    )
    return [row.total_tokens for row in found]


async def settled_arrival(
    database: Database, arrival: Arrival
) -> tuple[ChatInfo, ConversationInfo] | None:
    """What the arrival's one-statement read finds: None when something must be written first
    (as ``Database.conversations.arrive`` then does)."""

    async def unit(connection: Connection) -> Row | None:
        return await connection.row(ARRIVAL, arrival.key())

    return arrival.settled(await database.runner.read(unit))


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


async def usage_totals(
    database: Database,
    since: datetime,
    *,
    user_id: int | None = None,
    chat_id: int | None = None,
) -> Totals:
    """The ledger's sums from ``since``, of one user or chat when given."""
    found = await one(
        database,
        "SELECT count(*) AS requests, count(error_code) AS failed, "
        "COALESCE(sum(prompt_tokens), 0) AS prompt, "
        "COALESCE(sum(completion_tokens), 0) AS completion, "
        "COALESCE(sum(total_tokens), 0) AS total FROM usage_records "
        "WHERE created_at >= :since "
        "AND (CAST(:user AS BIGINT) IS NULL OR user_id = CAST(:user AS BIGINT)) "
        "AND (CAST(:chat AS BIGINT) IS NULL OR chat_id = CAST(:chat AS BIGINT))",
        since=since,
        user=user_id,
        chat=chat_id,
    )
    assert found is not None
    return Totals(
        int(found.requests),
        int(found.failed),
        int(found.prompt),
        int(found.completion),
        int(found.total),
    )


async def open_conversation(
    database: Database,
    chat_id: int,
    *,
    thread_id: int | None = None,
    user_id: int | None = None,
    scope: str = "chat",
) -> ConversationInfo:
    """The open conversation of a stored chat (opened if there is none), as the service's
    arrival finds it."""
    key = conversation_key(chat_id, thread_id or 0, user_id if scope == "user" and user_id else 0)

    async def unit(connection: Connection) -> ConversationInfo:
        return await current_conversation(connection, database.clock(), key)

    return await database.runner.write(unit)


async def recent_turns(database: Database, conversation_id: int) -> list[HistoryTurn]:
    """Every turn that counts as history, newest first."""
    found = await database.messages.prompt_history(conversation_id, 0, room=2**62, turn_overhead=0)
    return found.turns


async def execute(database: Database, query: str, **params: object) -> int:
    """A test's own write (setting a stage no repository method sets): rows changed."""
    statement = sql(query)

    async def unit(connection: Connection) -> int:
        return await connection.execute(statement, params)

    return await database.runner.write(unit)


@dataclass(frozen=True, slots=True)
class Latency:
    """Nearest-rank percentiles in ms over successful requests; None without samples."""

    first_token_p50_ms: int | None
    first_token_p95_ms: int | None
    duration_p50_ms: int | None
    duration_p95_ms: int | None


def _nearest_rank(values: list[int], percent: int) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, -(-percent * len(ordered) // 100)) - 1]


async def latency(database: Database, since: datetime, *, chat_id: int | None = None) -> Latency:
    """The ledger's own latency percentiles from ``since`` (of one chat when given)."""
    found = await rows(
        database,
        "SELECT first_token_ms, duration_ms FROM usage_records WHERE error_code IS NULL "
        "AND created_at >= :since "
        "AND (CAST(:chat AS BIGINT) IS NULL OR chat_id = CAST(:chat AS BIGINT))",
        since=since,
        chat=chat_id,
    )
    first = [row.first_token_ms for row in found if row.first_token_ms is not None]
    duration = [row.duration_ms for row in found if row.duration_ms is not None]
    return Latency(
        _nearest_rank(first, 50),
        _nearest_rank(first, 95),
        _nearest_rank(duration, 50),
        _nearest_rank(duration, 95),
    )


# -- a test's own stage: rows the service would store on a question's arrival ----------------


async def upsert_user(
    database: Database,
    user_id: int,
    *,
    username: str | None = None,
    first_name: str | None = None,
    language_code: str | None = None,
) -> UserInfo:
    """Store a user as a question's arrival does (the quota is kept)."""

    async def unit(connection: Connection) -> UserInfo:
        return await users.upsert_user(
            connection,
            database.clock(),
            user_id,
            username=username,
            first_name=first_name,
            language_code=language_code,
        )

    return await database.runner.write(unit)


async def upsert_chat(
    database: Database, chat_id: int, *, type: str, title: str | None = None
) -> ChatInfo:
    """Store a chat as a question's arrival does (its settings, uid and ratio are kept)."""

    async def unit(connection: Connection) -> ChatInfo:
        return await chats.upsert_chat(
            connection, database.clock(), chat_id, type=type, title=title
        )

    return await database.runner.write(unit)


async def user(database: Database, user_id: int) -> UserInfo | None:
    """The stored user, or None."""
    statement = sql(f"SELECT {users.USER_COLUMNS} FROM users WHERE id = :id")

    async def unit(connection: Connection) -> UserInfo | None:
        row = await connection.row(statement, {"id": user_id})
        return None if row is None else users.user_info(row)

    return await database.runner.read(unit)
