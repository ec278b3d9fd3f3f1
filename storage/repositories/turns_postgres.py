"""The turn hot path on PostgreSQL: each method one statement (two for the prompt) on a
leased connection's asyncpg driver, in autocommit; see :mod:`storage.repositories.turns`."""

from __future__ import annotations

import json
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
from storage.pg_lease import ConnectionLease
from storage.repositories.turns import (
    Arrival,
    TurnRepository,
    finish_params,
    new_message,
    prompt_history,
    stored_message,
)
from storage.repositories.turns_sql import Numbered, Postgres


class PostgresTurns(TurnRepository):
    """Runs each method on a leased connection's asyncpg driver, in autocommit."""

    def __init__(self, lease: ConnectionLease, clock: Clock) -> None:
        super().__init__(clock)
        self._lease = lease

    async def _fetch(self, statement: Numbered, params: dict[str, object]) -> list[Any]:
        async with self._lease.driver() as driver:
            rows: list[Any] = await driver.fetch(statement.text, *statement.args(params))
            return rows

    async def close(self) -> None:
        await self._lease.close()

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
            "now": now,
            "chat": conversation.chat_id,
            "telegram_id": telegram_message_id,
        }
        rows = await self._fetch(Postgres.INSERT_QUESTION, params)
        return new_message(
            rows[0][0],
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
            "now": now,
        }
        rows = await self._fetch(Postgres.INSERT_ANSWER, params)
        return new_message(
            rows[0][0],
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
        params: dict[str, object] = {"message": message_id, "content": text, "now": self.clock()}
        return bool(await self._fetch(Postgres.CHECKPOINT, params))

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
        params["link_ids"] = ids
        rows = await self._fetch(Postgres.FINISH, params)
        if not rows:
            raise LookupError(f"message {message_id} is not stored")
        return stored_message(rows[0])

    async def arrival(self, arrival: Arrival) -> tuple[ChatInfo, ConversationInfo] | None:
        async with self._lease.driver() as driver:
            row = await driver.fetchrow(
                Postgres.ARRIVAL.text, *Postgres.ARRIVAL.args(arrival.params())
            )
        return arrival.settled(row)

    async def claim_update(self, bot_id: int, update_id: int) -> bool:
        params: dict[str, object] = {"bot": bot_id, "update": update_id, "now": self.clock()}
        return bool(await self._fetch(Postgres.CLAIM, params))

    async def forget_updates(self, before: datetime) -> int:
        async with self._lease.driver() as driver:
            gone: int = await driver.fetchval(Postgres.FORGET.text, before)
        return gone

    async def prompt_history(
        self, conversation_id: int, chat_id: int, *, room: int, turn_overhead: int
    ) -> PromptHistory:
        params: dict[str, object] = {
            "conversation": conversation_id,
            "chat": chat_id,
            "room": room,
            "overhead": turn_overhead,
        }
        return prompt_history(await self._fetch(Postgres.PROMPT, params))
