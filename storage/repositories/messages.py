"""Messages of a conversation: questions, answers and their life cycle.

An answer row is created ``streaming`` when Spark is called, ``checkpoint`` saves its text
every few seconds while it streams, ``finish`` gives it its final status. After a crash,
``recover_interrupted`` (called at start) turns what was still streaming into ``partial`` so no
row stays in progress. History for the next request is read newest first in pages
(``recent_turns``); only complete answers and partial ones marked usable count.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, Row, and_, bindparam, func, or_, select

from storage.dto import (
    FINAL_STATUSES,
    ConversationInfo,
    HistoryPage,
    HistoryTurn,
    LastTurn,
    MessageRole,
    MessageStatus,
    StoredMessage,
)
from storage.repositories.base import Repository, insert_for, table
from storage.repositories.conversations import CONVERSATIONS

MESSAGES = table("messages")
LINKS = table("telegram_messages")
_M = MESSAGES.c
_STREAMING = MessageStatus.STREAMING.value
_NEWEST = 2**62

_COUNTS_AS_HISTORY = or_(
    _M.status == MessageStatus.COMPLETE.value,
    and_(_M.status == MessageStatus.PARTIAL.value, _M.usable.is_(True)),
)
_ANSWERS_BEFORE = and_(
    _M.conversation_id == bindparam("b_conversation"),
    _M.role == "assistant",
    _M.reply_to_id.is_not(None),
    _COUNTS_AS_HISTORY,
    _M.id < bindparam("b_before"),
)
_QUESTION = MESSAGES.alias("question")
_RECENT_TURNS = (
    select(
        _M.id.label("answer_id"),
        _M.content.label("answer"),
        _M.tokens.label("answer_tokens"),
        _QUESTION.c.id.label("question_id"),
        _QUESTION.c.content.label("question"),
        _QUESTION.c.tokens.label("question_tokens"),
        # Every counted turn older than the cursor, page or not: evaluated before LIMIT, so
        # the prompt builder learns how many turns it leaves out without a second query.
        func.count().over().label("older_turns"),
    )
    .join_from(MESSAGES, _QUESTION, _QUESTION.c.id == _M.reply_to_id)
    .where(_ANSWERS_BEFORE)
    .order_by(_M.id.desc())
    .limit(bindparam("b_limit"))
)
_COUNT_TURNS = select(func.count()).select_from(MESSAGES).where(_ANSWERS_BEFORE)
_INSERT = MESSAGES.insert().returning(_M.id)
_GET = select(MESSAGES).where(_M.id == bindparam("b_id"))
_CHECKPOINT = (
    MESSAGES.update()
    .where(_M.id == bindparam("b_id"), _M.status == _STREAMING)
    .values(content=bindparam("b_text"), updated_at=bindparam("b_now"))
)
_FINISH_VALUES = {
    "status": bindparam("b_status"),
    "content": bindparam("b_text"),
    "tokens": bindparam("b_tokens"),
    "sid": bindparam("b_sid"),
    "error_code": bindparam("b_error"),
    "usable": bindparam("b_usable"),
    "updated_at": bindparam("b_now"),
    "model": func.coalesce(bindparam("b_model", type_=_M.model.type), _M.model),
}
_FINISH = (
    MESSAGES.update()
    .where(_M.id == bindparam("b_id"))
    .values(**_FINISH_VALUES)
    .returning(*MESSAGES.c)
)
_FINISH_WITH_IDS = (
    MESSAGES.update()
    .where(_M.id == bindparam("b_id"))
    .values(**_FINISH_VALUES, telegram_message_ids=bindparam("b_ids", type_=JSON))
    .returning(*MESSAGES.c)
)
_SET_IDS = (
    MESSAGES.update()
    .where(_M.id == bindparam("b_id"))
    .values(telegram_message_ids=bindparam("b_ids", type_=JSON), updated_at=bindparam("b_now"))
    .returning(_M.conversation_id)
)
_SUPERSEDE = (
    MESSAGES.update()
    .where(_M.id == bindparam("b_id"))
    .values(status=MessageStatus.SUPERSEDED.value, usable=False, updated_at=bindparam("b_now"))
    .returning(*MESSAGES.c)
)
_RECOVER = (
    MESSAGES.update()
    .where(_M.status == _STREAMING)
    .values(status=MessageStatus.PARTIAL.value, usable=False, updated_at=bindparam("b_now"))
)
_BY_TELEGRAM_ID = (
    select(MESSAGES)
    .join_from(MESSAGES, LINKS, LINKS.c.message_id == _M.id)
    .where(
        LINKS.c.chat_id == bindparam("b_chat"), LINKS.c.telegram_message_id == bindparam("b_tg")
    )
)
_LAST_QUESTION = (
    select(MESSAGES)
    .where(_M.conversation_id == bindparam("b_conversation"), _M.role == "user")
    .order_by(_M.id.desc())
    .limit(1)
)
_CURRENT_ANSWER = (
    select(MESSAGES)
    .where(
        _M.conversation_id == bindparam("b_conversation"),
        _M.reply_to_id == bindparam("b_question"),
        _M.status != MessageStatus.SUPERSEDED.value,
    )
    .order_by(_M.id.desc())
    .limit(1)
)
_ALL = select(MESSAGES).where(_M.conversation_id == bindparam("b_conversation")).order_by(_M.id)


@cache
def _upsert_link(dialect: str) -> Any:
    # The chat comes from the message's conversation, so callers only need the message id.
    chat_of = (
        select(CONVERSATIONS.c.chat_id)
        .where(CONVERSATIONS.c.id == bindparam("b_conversation"))
        .scalar_subquery()
    )
    stmt = insert_for(dialect, LINKS).values(
        chat_id=chat_of,
        telegram_message_id=bindparam("b_tg"),
        message_id=bindparam("b_id"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[LINKS.c.chat_id, LINKS.c.telegram_message_id],
        set_={"message_id": stmt.excluded.message_id},
    )


def _stored(row: Row[*tuple[Any, ...]]) -> StoredMessage:
    role: MessageRole = "assistant" if row.role == "assistant" else "user"
    return StoredMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        role=role,
        content=row.content,
        status=MessageStatus(row.status),
        usable=bool(row.usable),
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
        tokens: int,
        user_id: int | None,
        telegram_message_id: int | None = None,
    ) -> StoredMessage:
        """Store the user's question (commit it before Spark is called)."""
        ids = [telegram_message_id] if telegram_message_id is not None else []
        message = await self._insert(
            conversation,
            role="user",
            content=text,
            tokens=tokens,
            status=MessageStatus.COMPLETE,
            usable=True,
            telegram_message_ids=ids,
            reply_to_id=None,
            user_id=user_id,
            model=None,
        )
        await self._link(conversation.id, message.id, ids)
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
            tokens=0,
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
        result = await self.execute(
            _CHECKPOINT, {"b_id": message_id, "b_text": text, "b_now": self.clock()}
        )
        return bool(result.rowcount)

    async def finish(
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
    ) -> StoredMessage:
        """Give an answer its final status and text. ``usable`` defaults to True for a complete
        answer and False otherwise (say True for a partial answer worth keeping as history).
        ``telegram_message_ids``, when given, replace the list stored on the row."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish needs a final status, got {status!r}")
        params: dict[str, Any] = {
            "b_id": message_id,
            "b_status": status.value,
            "b_text": text,
            "b_tokens": tokens,
            "b_sid": sid,
            "b_error": error_code,
            "b_usable": status is MessageStatus.COMPLETE if usable is None else usable,
            "b_now": self.clock(),
            "b_model": model,
        }
        ids = list(dict.fromkeys(telegram_message_ids))
        if ids:
            params["b_ids"] = ids
        row = (await self.execute(_FINISH_WITH_IDS if ids else _FINISH, params)).first()
        if row is None:
            raise LookupError(f"message {message_id} is not stored")
        await self._link(row.conversation_id, message_id, ids)
        return _stored(row)

    async def set_telegram_message_ids(self, message_id: int, ids: Sequence[int]) -> None:
        """Record the Telegram messages that show this message (e.g. as soon as the first
        draft is sent, so replies to it resolve while it still streams)."""
        unique = list(dict.fromkeys(ids))
        conversation_id = (
            await self.execute(
                _SET_IDS, {"b_id": message_id, "b_ids": unique, "b_now": self.clock()}
            )
        ).scalar()
        if conversation_id is None:
            raise LookupError(f"message {message_id} is not stored")
        await self._link(conversation_id, message_id, unique)

    async def recover_interrupted(self) -> int:
        """Turn every answer still ``streaming`` (the process died mid-answer) into a
        ``partial``, not usable as history; returns how many."""
        return int((await self.execute(_RECOVER, {"b_now": self.clock()})).rowcount)

    async def get(self, message_id: int) -> StoredMessage | None:
        row = (await self.execute(_GET, {"b_id": message_id})).first()
        return None if row is None else _stored(row)

    async def find_by_telegram_id(
        self, chat_id: int, telegram_message_id: int
    ) -> StoredMessage | None:
        """The stored message a Telegram message shows (the question or the answer)."""
        params = {"b_chat": chat_id, "b_tg": telegram_message_id}
        row = (await self.execute(_BY_TELEGRAM_ID, params)).first()
        return None if row is None else _stored(row)

    async def last_turn(self, conversation_id: int) -> LastTurn | None:
        """The newest question and its current (not superseded) answer, if any."""
        question = (
            await self.execute(_LAST_QUESTION, {"b_conversation": conversation_id})
        ).first()
        if question is None:
            return None
        answer = (
            await self.execute(
                _CURRENT_ANSWER, {"b_conversation": conversation_id, "b_question": question.id}
            )
        ).first()
        return LastTurn(_stored(question), None if answer is None else _stored(answer))

    async def supersede_last_answer(self, conversation_id: int) -> LastTurn | None:
        """For /retry: mark the last answer ``superseded`` and return the turn (the answer as
        it is now stored), so the question can be asked again. None when nothing was asked."""
        turn = await self.last_turn(conversation_id)
        if turn is None or turn.answer is None:
            return turn
        row = (
            await self.execute(_SUPERSEDE, {"b_id": turn.answer.id, "b_now": self.clock()})
        ).one()
        return LastTurn(turn.question, _stored(row))

    async def recent_turns(
        self, conversation_id: int, *, before_answer_id: int | None = None, limit: int = 32
    ) -> list[HistoryTurn]:
        """Turns that count as history, newest first, older than ``before_answer_id``."""
        return (await self.history_page(conversation_id, before_answer_id, limit)).turns

    async def history_page(
        self, conversation_id: int, before_answer_id: int | None = None, limit: int = 32
    ) -> HistoryPage:
        """Like :meth:`recent_turns`, plus how many counted turns are older than the cursor
        in all (this page included)."""
        rows = (
            await self.execute(
                _RECENT_TURNS,
                {
                    "b_conversation": conversation_id,
                    "b_before": _NEWEST if before_answer_id is None else before_answer_id,
                    "b_limit": limit,
                },
            )
        ).all()
        turns = [
            HistoryTurn(
                question_id=row.question_id,
                answer_id=row.answer_id,
                question=row.question,
                answer=row.answer,
                question_tokens=row.question_tokens,
                answer_tokens=row.answer_tokens,
            )
            for row in rows
        ]
        return HistoryPage(turns, int(rows[0].older_turns) if rows else 0)

    async def count_turns(
        self, conversation_id: int, *, before_answer_id: int | None = None
    ) -> int:
        params = {
            "b_conversation": conversation_id,
            "b_before": _NEWEST if before_answer_id is None else before_answer_id,
        }
        return int((await self.execute(_COUNT_TURNS, params)).scalar() or 0)

    async def conversation_messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every message of a conversation, oldest first (exports, tests)."""
        rows = await self.execute(_ALL, {"b_conversation": conversation_id})
        return [_stored(row) for row in rows]

    async def _insert(self, conversation: ConversationInfo, **values: Any) -> StoredMessage:
        now = self.clock()
        status: MessageStatus = values["status"]
        message_id = (
            await self.execute(
                _INSERT,
                {
                    **values,
                    "conversation_id": conversation.id,
                    "status": status.value,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        ).scalar_one()
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

    async def _link(self, conversation_id: int, message_id: int, ids: Sequence[int]) -> None:
        # Links are only ever added: Telegram never reuses a message id within a chat, so a
        # link to a message that was since replaced can never resolve to the wrong answer.
        statement = _upsert_link(self.dialect)
        for telegram_id in ids:
            await self.execute(
                statement,
                {"b_conversation": conversation_id, "b_tg": telegram_id, "b_id": message_id},
            )
