"""Messages of a conversation: questions, answers and their life cycle.

An answer row is created ``streaming`` when Spark is called, ``checkpoint`` saves its text
every few seconds while it streams, ``finish`` gives it its final status. After a crash,
``recover_interrupted`` (called at start) turns what was still streaming into ``partial`` so no
row stays in progress. History for the next request is read newest first in pages
(``recent_turns``); only complete answers and partial ones marked usable count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import aliased

from storage.dto import (
    FINAL_STATUSES,
    ConversationInfo,
    HistoryTurn,
    LastTurn,
    MessageRole,
    MessageStatus,
    StoredMessage,
)
from storage.models import Conversation, Message, TelegramMessage
from storage.repositories.base import Repository

_COUNTS_AS_HISTORY = or_(
    Message.status == MessageStatus.COMPLETE.value,
    and_(Message.status == MessageStatus.PARTIAL.value, Message.usable.is_(True)),
)


def _stored(row: Message) -> StoredMessage:
    role: MessageRole = "assistant" if row.role == "assistant" else "user"
    return StoredMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        role=role,
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


class MessageRepository(Repository):
    async def add_user_message(
        self,
        conversation: ConversationInfo,
        text: str,
        *,
        user_id: int | None,
        telegram_message_id: int | None = None,
    ) -> StoredMessage:
        """Store the user's question (commit it before Spark is called)."""
        ids = [telegram_message_id] if telegram_message_id is not None else []
        message = await self._insert(
            conversation,
            role="user",
            content=text,
            status=MessageStatus.COMPLETE,
            usable=True,
            telegram_message_ids=ids,
            reply_to_id=None,
            user_id=user_id,
            model=None,
        )
        await self._link(conversation.chat_id, message.id, ids)
        return message

    async def start_assistant_message(
        self,
        conversation: ConversationInfo,
        *,
        question_id: int,
        model: str,
        user_id: int | None = None,
    ) -> StoredMessage:
        """The answer row, in status ``streaming``, created before the first delta arrives."""
        return await self._insert(
            conversation,
            role="assistant",
            content="",
            status=MessageStatus.STREAMING,
            usable=False,
            telegram_message_ids=[],
            reply_to_id=question_id,
            user_id=user_id,
            model=model,
        )

    async def checkpoint(self, message_id: int, text: str) -> bool:
        """Save the text streamed so far; False (and nothing written) once the answer is no
        longer streaming, so a late checkpoint cannot overwrite the final text."""
        result = await self.session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == MessageStatus.STREAMING.value)
            .values(content=text, updated_at=self.clock())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish(
        self,
        message_id: int,
        *,
        status: MessageStatus,
        text: str,
        sid: str | None = None,
        error_code: int | None = None,
        telegram_message_ids: Sequence[int] = (),
        usable: bool | None = None,
        model: str | None = None,
    ) -> StoredMessage:
        """Give an answer its final status and text. ``usable`` defaults to True for a complete
        answer and False otherwise (say True for a partial answer worth keeping as history)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish needs a final status, got {status!r}")
        values: dict[str, Any] = {
            "status": status.value,
            "content": text,
            "sid": sid,
            "error_code": error_code,
            "usable": status is MessageStatus.COMPLETE if usable is None else usable,
            "updated_at": self.clock(),
        }
        if telegram_message_ids:
            values["telegram_message_ids"] = list(telegram_message_ids)
        if model is not None:
            values["model"] = model
        row = await self.session.scalar(
            update(Message).where(Message.id == message_id).values(**values).returning(Message),
            execution_options={"populate_existing": True},
        )
        if row is None:
            raise LookupError(f"message {message_id} is not stored")
        if telegram_message_ids:
            await self._link(
                await self._chat_of(row.conversation_id), row.id, telegram_message_ids
            )
        return _stored(row)

    async def set_telegram_message_ids(self, message_id: int, ids: Sequence[int]) -> None:
        """Record the Telegram messages that show this message (e.g. as soon as the first
        draft is sent, so replies to it resolve while it still streams)."""
        row = await self.session.scalar(
            update(Message)
            .where(Message.id == message_id)
            .values(telegram_message_ids=list(ids), updated_at=self.clock())
            .returning(Message.conversation_id)
        )
        if row is None:
            raise LookupError(f"message {message_id} is not stored")
        await self._link(await self._chat_of(row), message_id, ids)

    async def recover_interrupted(self) -> int:
        """Turn every answer still ``streaming`` (the process died mid-answer) into a
        ``partial``, not usable as history; returns how many."""
        result = await self.session.execute(
            update(Message)
            .where(Message.status == MessageStatus.STREAMING.value)
            .values(status=MessageStatus.PARTIAL.value, usable=False, updated_at=self.clock())
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def get(self, message_id: int) -> StoredMessage | None:
        row = await self.session.scalar(select(Message).where(Message.id == message_id))
        return None if row is None else _stored(row)

    async def find_by_telegram_id(
        self, chat_id: int, telegram_message_id: int
    ) -> StoredMessage | None:
        """The stored message a Telegram message shows (the question or the answer)."""
        row = await self.session.scalar(
            select(Message)
            .join(TelegramMessage, TelegramMessage.message_id == Message.id)
            .where(
                TelegramMessage.chat_id == chat_id,
                TelegramMessage.telegram_message_id == telegram_message_id,
            )
        )
        return None if row is None else _stored(row)

    async def last_turn(self, conversation_id: int) -> LastTurn | None:
        """The newest question and its current (not superseded) answer, if any."""
        question = await self.session.scalar(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.role == "user")
            .order_by(Message.id.desc())
            .limit(1)
        )
        if question is None:
            return None
        answer = await self.session.scalar(
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.reply_to_id == question.id,
                Message.status != MessageStatus.SUPERSEDED.value,
            )
            .order_by(Message.id.desc())
            .limit(1)
        )
        return LastTurn(_stored(question), None if answer is None else _stored(answer))

    async def supersede_last_answer(self, conversation_id: int) -> LastTurn | None:
        """For /retry: mark the last answer ``superseded`` and return the turn (the answer as
        it is now stored), so the question can be asked again. None when nothing was asked."""
        turn = await self.last_turn(conversation_id)
        if turn is None or turn.answer is None:
            return turn
        answer = await self.finish(
            turn.answer.id,
            status=MessageStatus.SUPERSEDED,
            text=turn.answer.content,
            sid=turn.answer.sid,
            error_code=turn.answer.error_code,
            usable=False,
        )
        return LastTurn(turn.question, answer)

    async def recent_turns(
        self, conversation_id: int, *, before_answer_id: int | None = None, limit: int = 32
    ) -> list[HistoryTurn]:
        """Turns that count as history, newest first, older than ``before_answer_id``."""
        question = aliased(Message)
        query = (
            select(Message.id, Message.content, question.id, question.content)
            .join(question, question.id == Message.reply_to_id)
            .where(
                Message.conversation_id == conversation_id,
                Message.role == "assistant",
                _COUNTS_AS_HISTORY,
            )
            .order_by(Message.id.desc())
            .limit(limit)
        )
        if before_answer_id is not None:
            query = query.where(Message.id < before_answer_id)
        rows = await self.session.execute(query)
        return [
            HistoryTurn(question_id=q_id, answer_id=a_id, question=q_text, answer=a_text)
            for a_id, a_text, q_id, q_text in rows
        ]

    async def count_turns(
        self, conversation_id: int, *, before_answer_id: int | None = None
    ) -> int:
        query = select(func.count()).where(
            Message.conversation_id == conversation_id,
            Message.role == "assistant",
            Message.reply_to_id.is_not(None),
            _COUNTS_AS_HISTORY,
        )
        if before_answer_id is not None:
            query = query.where(Message.id < before_answer_id)
        return int(await self.session.scalar(query) or 0)

    async def conversation_messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every message of a conversation, oldest first (exports, tests)."""
        rows = await self.session.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
        )
        return [_stored(row) for row in rows]

    async def _insert(self, conversation: ConversationInfo, **values: Any) -> StoredMessage:
        now = self.clock()
        status: MessageStatus = values.pop("status")
        message_id = await self.session.scalar(
            self.insert(Message)
            .values(
                conversation_id=conversation.id,
                status=status.value,
                created_at=now,
                updated_at=now,
                **values,
            )
            .returning(Message.id)
        )
        if message_id is None:
            raise LookupError(f"could not store a message in conversation {conversation.id}")
        return StoredMessage(
            id=message_id,
            conversation_id=conversation.id,
            role=values["role"],
            content=values["content"],
            status=status,
            usable=values["usable"],
            telegram_message_ids=tuple(values["telegram_message_ids"]),
            reply_to_id=values["reply_to_id"],
            user_id=values["user_id"],
            model=values["model"],
            sid=None,
            error_code=None,
            created_at=now,
            updated_at=now,
        )

    async def _chat_of(self, conversation_id: int) -> int:
        chat_id = await self.session.scalar(
            select(Conversation.chat_id).where(Conversation.id == conversation_id)
        )
        if chat_id is None:
            raise LookupError(f"conversation {conversation_id} is not stored")
        return chat_id

    async def _link(self, chat_id: int, message_id: int, ids: Sequence[int]) -> None:
        if not ids:
            return
        # The set given is the whole set: links this message no longer has are dropped.
        await self.session.execute(
            delete(TelegramMessage).where(
                TelegramMessage.message_id == message_id,
                TelegramMessage.telegram_message_id.not_in(list(ids)),
            )
        )
        stmt = self.insert(TelegramMessage).values(
            [
                {"chat_id": chat_id, "telegram_message_id": tg_id, "message_id": message_id}
                for tg_id in dict.fromkeys(ids)
            ]
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[TelegramMessage.chat_id, TelegramMessage.telegram_message_id],
                set_={"message_id": stmt.excluded.message_id},
            )
        )
