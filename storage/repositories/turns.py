"""The turn hot path: the claim on an arriving update's id, question, answer row, checkpoints,
finished answer with its ledger row and calibration, and the prompt's history, each one unit of
work in as few statements as the backend allows.

The Core repositories cost about 0.3 ms of Python per statement plus, on SQLite, several hops
to aiosqlite's thread per statement, all while holding the write lock. A turn through them is
ten statements, about 120 turns/s on two cores. Here each method is a unit of work by itself:

- PostgreSQL: every write is one statement (data-modifying CTEs) on a leased connection's
  driver in autocommit: atomic without BEGIN / COMMIT round trips, and committed without
  waiting for the WAL flush (SQLite's synchronous=NORMAL promise: a crash of the bot loses
  nothing, one of the server or machine may lose the last fraction of a second of turns,
  never half of one). The prompt is two statements.
- SQLite: every method is one function run whole in :class:`~storage.sqlite_worker.
  SqliteWorker`'s writer thread (writes, committed in groups) or a reader thread (the prompt),
  on :mod:`sqlite3` directly: one hop per unit instead of four per statement.

This module holds the interface and what both backends share; :mod:`.turns_postgres` and
:mod:`.turns_sqlite` implement it, with the SQL of :mod:`.turns_sql`. Obtain it as
:attr:`storage.database.Database.turns`. Methods and results match the Core
repositories' (``MessageRepository.add_user_message`` and so on), which stay for the rest.
Errors are the driver's own (:mod:`sqlite3` or asyncpg exceptions), ``LookupError`` for an
unknown message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage.dto import (
    FINAL_STATUSES,
    Calibration,
    ChatInfo,
    Clock,
    ConversationInfo,
    HistoryTurn,
    LedgerEntry,
    MessageRole,
    MessageStatus,
    PromptHistory,
    StoredMessage,
    TokenUsage,
)
from storage.repositories.base import member_spark_uid


@dataclass(frozen=True, slots=True)
class Arrival:
    """Who asked where, as Telegram describes them now (see :meth:`TurnRepository.arrival`)."""

    user_id: int
    username: str | None
    first_name: str | None
    language_code: str | None
    chat_id: int
    chat_type: str
    title: str | None
    thread_id: int  # 0 outside forum topics
    scope_user_id: int  # 0 for a conversation the whole chat shares

    def params(self) -> dict[str, object]:
        return {
            "chat": self.chat_id,
            "user": self.user_id,
            "thread": self.thread_id,
            "scope": self.scope_user_id,
        }

    def settled(self, row: Sequence[Any] | None) -> tuple[ChatInfo, ConversationInfo] | None:
        """The chat and open conversation from an :data:`~.turns_sql.ARRIVAL` row, or None
        when something must be written first (a new user, chat, topic or conversation, or a
        changed name or title)."""
        if row is None:
            return None
        chat = chat_info(row[:8])
        user_id, username, first_name, language_code, conversation_id, created_at, topic_uid = row[
            8:
        ]
        if (
            chat is None
            or user_id is None
            or (username, first_name, language_code)
            != (self.username, self.first_name, self.language_code)
            or (chat.type, chat.title) != (self.chat_type, self.title)
            or conversation_id is None
            or (self.thread_id and topic_uid is None)
        ):
            return None
        uid = topic_uid if self.thread_id else chat.spark_uid
        if self.scope_user_id:
            uid = member_spark_uid(uid, self.scope_user_id)
        conversation = ConversationInfo(
            id=conversation_id,
            chat_id=chat.id,
            thread_id=self.thread_id,
            scope_user_id=self.scope_user_id,
            spark_uid=uid,
            created_at=_utc(created_at),
            closed_at=None,
        )
        return chat, conversation


def sqlite_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
    # The text SQLAlchemy's SQLite DATETIME keeps (naive UTC), so both paths sort and compare.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stored_message(row: Sequence[Any]) -> StoredMessage:
    ids = row[6]
    if isinstance(ids, str):
        ids = json.loads(ids)
    role: MessageRole = "assistant" if row[2] == "assistant" else "user"
    return StoredMessage(
        id=row[0],
        conversation_id=row[1],
        role=role,
        content=row[3],
        status=MessageStatus(row[4]),
        usable=bool(row[5]),
        telegram_message_ids=tuple(ids or ()),
        reply_to_id=row[7],
        user_id=row[8],
        model=row[9],
        sid=row[10],
        error_code=row[11],
        created_at=_utc(row[12]),
        updated_at=_utc(row[13]),
    )


def chat_info(row: Sequence[Any] | None) -> ChatInfo | None:
    if row is None:
        return None
    return ChatInfo(
        id=row[0],
        type=row[1],
        title=row[2],
        model=row[3],
        system_prompt=row[4],
        token_ratio=row[5],
        spark_uid=row[6],
        created_at=_utc(row[7]),
    )


def new_message(
    message_id: int,
    conversation: ConversationInfo,
    now: datetime,
    *,
    role: MessageRole,
    content: str,
    status: MessageStatus,
    ids: Sequence[int] = (),
    reply_to_id: int | None = None,
    user_id: int | None = None,
    model: str | None = None,
) -> StoredMessage:
    return StoredMessage(
        id=message_id,
        conversation_id=conversation.id,
        role=role,
        content=content,
        status=status,
        usable=status is MessageStatus.COMPLETE,
        telegram_message_ids=tuple(ids),
        reply_to_id=reply_to_id,
        user_id=user_id,
        model=model,
        sid=None,
        error_code=None,
        created_at=now,
        updated_at=now,
    )


def prompt_history(rows: Sequence[Sequence[Any]]) -> PromptHistory:
    """The chat and history from the rows of :data:`~.turns_sql.PROMPT`: one per turn read,
    newest first, each with the chat's columns; one row without a turn when none is."""
    if not rows:
        return PromptHistory(None, [], 0)
    chat = chat_info(rows[0][:8]) if rows[0][0] is not None else None
    turns = [
        HistoryTurn(
            question_id=row[9],
            answer_id=row[8],
            question=row[14],
            answer=row[13],
            question_tokens=row[11],
            answer_tokens=row[10],
        )
        for row in rows
        if row[8] is not None
    ]
    return PromptHistory(chat, turns, int(rows[0][12] or 0))


def finish_params(
    message_id: int,
    now: datetime,
    *,
    status: MessageStatus,
    text: str,
    tokens: int,
    sid: str | None,
    error_code: int | None,
    telegram_message_ids: Sequence[int],
    usable: bool | None,
    model: str | None,
    ledger: LedgerEntry | None,
    calibration: Calibration | None,
) -> tuple[dict[str, Any], list[int]]:
    if status not in FINAL_STATUSES:
        raise ValueError(f"finish needs a final status, got {status!r}")
    ids = list(dict.fromkeys(telegram_message_ids))
    usage = (ledger.usage if ledger is not None else None) or TokenUsage()
    rules = calibration.rules if calibration is not None else None
    params: dict[str, Any] = {
        "message": message_id,
        "status": status.value,
        "content": text,
        "tokens": tokens,
        "sid": sid,
        "error_code": error_code,
        "usable": status is MessageStatus.COMPLETE if usable is None else usable,
        "model": model,
        "replace_ids": bool(ids),
        "ids": json.dumps(ids),
        "with_ledger": ledger is not None,
        "l_user": ledger.user_id if ledger is not None else None,
        "l_chat": ledger.chat_id if ledger is not None else None,
        "l_model": ledger.model if ledger is not None else None,
        "l_prompt": usage.prompt_tokens,
        "l_completion": usage.completion_tokens,
        "l_total": usage.total_tokens,
        "l_first_token": ledger.first_token_ms if ledger is not None else None,
        "l_duration": ledger.duration_ms if ledger is not None else None,
        "l_error": ledger.error_code if ledger is not None else None,
        "c_chat": calibration.chat_id if calibration is not None else None,
        "raw": float(calibration.raw_estimate) if calibration is not None else 0.0,
        "reported": float(calibration.reported_prompt_tokens) if calibration else 0.0,
        "r_default": rules.default if rules is not None else 1.0,
        "r_least": rules.least if rules is not None else 1.0,
        "r_greatest": rules.greatest if rules is not None else 1.0,
        "r_up": rules.up if rules is not None else 0.0,
        "r_down": rules.down if rules is not None else 0.0,
        "now": now,
    }
    return params, ids


class TurnRepository:
    """The hot path's units of work; see the module docstring. Backend-neutral front."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def add_question(
        self,
        conversation: ConversationInfo,
        text: str,
        *,
        tokens: int,
        user_id: int | None,
        telegram_message_id: int | None = None,
    ) -> StoredMessage:
        """Store the user's question, with the token count the service gave it, and its
        Telegram link (committed on return)."""
        raise NotImplementedError

    async def start_answer(
        self,
        conversation: ConversationInfo,
        *,
        question_id: int,
        model: str,
        user_id: int | None = None,
    ) -> StoredMessage:
        """The answer row, in status ``streaming``."""
        raise NotImplementedError

    async def checkpoint(self, message_id: int, text: str) -> bool:
        """Save the text streamed so far; False once the answer is no longer streaming."""
        raise NotImplementedError

    async def finish_answer(
        self,
        message_id: int,
        *,
        status: MessageStatus,
        text: str,
        tokens: int,
        sid: str | None = None,
        error_code: int | None = None,
        telegram_message_ids: Sequence[int] = (),
        usable: bool | None = None,
        model: str | None = None,
        ledger: LedgerEntry | None = None,
        calibration: Calibration | None = None,
    ) -> StoredMessage:
        """``MessageRepository.finish`` (same arguments and result), plus in the same unit of
        work the ledger row (``ledger``) and the chat's calibration (``calibration``).
        ``tokens`` is the text's token count. ``LookupError`` and nothing written if the
        message is not stored."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the hot path holds (threads, connections); :meth:`Database.dispose`
        calls it."""
        raise NotImplementedError

    async def arrival(self, arrival: Arrival) -> tuple[ChatInfo, ConversationInfo] | None:
        """The chat and its open conversation for a question, read in one statement; None
        when the user, chat, topic or conversation is not stored yet or Telegram's profile of
        them changed, i.e. when the Core repositories must write first (users.upsert,
        chats.upsert, conversations.current). Most questions write nothing here."""
        raise NotImplementedError

    async def claim_update(self, bot_id: int, update_id: int) -> bool:
        """Record that ``bot_id`` takes on Telegram update ``update_id`` (committed on return):
        True the first time, False when it was claimed before (a re-delivery). One insert that
        ignores a conflict, so of two concurrent claims of one id exactly one wins."""
        raise NotImplementedError

    async def forget_updates(self, before: datetime) -> int:
        """Forget the claims received before ``before`` (pruning); returns how many."""
        raise NotImplementedError

    async def prompt_history(
        self, conversation_id: int, chat_id: int, *, room: int, turn_overhead: int
    ) -> PromptHistory:
        """The chat row and the turns that count as history, newest first, read in one
        statement: those whose running cost (their two token counts plus ``turn_overhead``
        each) stays within ``room``, and always the newest, with the count of all."""
        raise NotImplementedError
