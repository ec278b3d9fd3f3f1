"""The turn hot path on SQLite: each method one function run whole in the worker's writer
thread (writes, committed in groups) or a reader thread (the prompt), on :mod:`sqlite3`; see
:mod:`storage.repositories.turns`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage.dto import (
    Calibration,
    ChatInfo,
    Clock,
    ConversationInfo,
    LedgerEntry,
    MessageStatus,
    PromptHistory,
    StoredMessage,
)
from storage.repositories.turns import (
    Arrival,
    TurnRepository,
    finish_params,
    new_message,
    prompt_history,
    sqlite_time,
    stored_message,
)
from storage.repositories.turns_sql import Sqlite
from storage.sqlite_worker import SqliteWorker


class SqliteTurns(TurnRepository):
    """Runs each method whole in the worker's writer thread (writes) or a reader thread."""

    def __init__(self, worker: SqliteWorker, clock: Clock) -> None:
        super().__init__(clock)
        self._worker = worker

    async def close(self) -> None:
        await self._worker.close()

    async def add_question(
        self,
        conversation: ConversationInfo,
        text: str,
        *,
        tokens: int,
        user_id: int | None,
        telegram_message_id: int | None = None,
    ) -> StoredMessage:
        now = self.clock()
        ids = [telegram_message_id] if telegram_message_id is not None else []
        params: dict[str, object] = {
            "conversation": conversation.id,
            "user": user_id,
            "content": text,
            "tokens": tokens,
            "ids": json.dumps(ids),
            "now": sqlite_time(now),
        }

        def unit(connection: sqlite3.Connection) -> int:
            message_id: int = connection.execute(Sqlite.INSERT_QUESTION, params).fetchone()[0]
            if telegram_message_id is not None:
                link = {
                    "chat": conversation.chat_id,
                    "telegram_id": telegram_message_id,
                    "message": message_id,
                }
                connection.execute(Sqlite.LINK, link)
            return message_id

        message_id = await self._worker.write(unit)
        return new_message(
            message_id,
            conversation,
            now,
            role="user",
            content=text,
            status=MessageStatus.COMPLETE,
            ids=ids,
            user_id=user_id,
        )

    async def start_answer(
        self,
        conversation: ConversationInfo,
        *,
        question_id: int,
        model: str,
        user_id: int | None = None,
    ) -> StoredMessage:
        now = self.clock()
        params: dict[str, object] = {
            "conversation": conversation.id,
            "question": question_id,
            "user": user_id,
            "content": "",
            "tokens": 0,
            "model": model,
            "now": sqlite_time(now),
        }

        def unit(connection: sqlite3.Connection) -> int:
            message_id: int = connection.execute(Sqlite.INSERT_ANSWER, params).fetchone()[0]
            return message_id

        message_id = await self._worker.write(unit)
        return new_message(
            message_id,
            conversation,
            now,
            role="assistant",
            content="",
            status=MessageStatus.STREAMING,
            reply_to_id=question_id,
            user_id=user_id,
            model=model,
        )

    async def checkpoint(self, message_id: int, text: str) -> bool:
        params = {"message": message_id, "content": text, "now": sqlite_time(self.clock())}

        def unit(connection: sqlite3.Connection) -> bool:
            return connection.execute(Sqlite.CHECKPOINT, params).rowcount > 0

        return await self._worker.write(unit)

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
        params, ids = finish_params(
            message_id,
            self.clock(),
            status=status,
            text=text,
            tokens=tokens,
            sid=sid,
            error_code=error_code,
            telegram_message_ids=telegram_message_ids,
            usable=usable,
            model=model,
            ledger=ledger,
            calibration=calibration,
        )
        params["now"] = sqlite_time(params["now"])

        def unit(connection: sqlite3.Connection) -> tuple[Any, ...]:
            row = connection.execute(Sqlite.FINISH, params).fetchone()
            if row is None:
                raise LookupError(f"message {message_id} is not stored")
            conversation_id = row[1]
            if ids:
                connection.executemany(
                    Sqlite.LINK_OF_CONVERSATION,
                    [
                        {"telegram_id": i, "message": message_id, "conversation": conversation_id}
                        for i in ids
                    ],
                )
            if ledger is not None:
                connection.execute(Sqlite.LEDGER, {**params, "conversation": conversation_id})
            if calibration is not None:
                connection.execute(Sqlite.CALIBRATE, params)
            return tuple(row)

        return stored_message(await self._worker.write(unit))

    async def arrival(self, arrival: Arrival) -> tuple[ChatInfo, ConversationInfo] | None:
        params = arrival.params()

        def unit(connection: sqlite3.Connection) -> Any:
            return connection.execute(Sqlite.ARRIVAL, params).fetchone()

        return arrival.settled(await self._worker.read(unit))

    async def claim_update(self, bot_id: int, update_id: int) -> bool:
        params = {"bot": bot_id, "update": update_id, "now": sqlite_time(self.clock())}

        def unit(connection: sqlite3.Connection) -> bool:
            return connection.execute(Sqlite.CLAIM, params).rowcount > 0

        return await self._worker.write(unit)

    async def forget_updates(self, before: datetime) -> int:
        params = {"before": sqlite_time(before)}

        def unit(connection: sqlite3.Connection) -> int:
            return connection.execute(Sqlite.FORGET, params).rowcount

        return await self._worker.write(unit)

    async def prompt_history(
        self, conversation_id: int, chat_id: int, *, room: int, turn_overhead: int
    ) -> PromptHistory:
        params = {
            "conversation": conversation_id,
            "chat": chat_id,
            "room": room,
            "overhead": turn_overhead,
        }

        def unit(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(Sqlite.PROMPT, params).fetchall()

        return prompt_history(await self._worker.read(unit))
