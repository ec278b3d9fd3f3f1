"""Messages of a conversation: questions, answers and their life cycle; the prompt's history.

An answer row is created ``streaming`` when Spark is called, ``checkpoint`` saves its text
every few seconds while it streams, ``finish_answer`` gives it its final status, together
with the ledger row and the chat's calibration. After a crash, ``recover_interrupted``
(called at start) turns what was still streaming into ``partial``. History for the next
request is read newest first (``prompt_history``); only complete answers and partial ones
marked usable count.

The turn's writes (question, answer row, checkpoint, finish) are one statement each on
PostgreSQL (data-modifying CTEs), so they run without a transaction round trip and commit
without waiting for the WAL flush (:data:`ASYNC_COMMIT`); on SQLite the same unit runs a few
statements in the writer thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage.backends import Connection
from storage.dto import (
    FINAL_STATUSES,
    Calibration,
    ConversationInfo,
    HistoryTurn,
    LastTurn,
    LedgerEntry,
    MessageRole,
    MessageStatus,
    PromptHistory,
    StoredMessage,
    TokenUsage,
)
from storage.errors import AnswerNotStreaming
from storage.repositories import Repository
from storage.repositories.chats import CHAT_COLUMNS, chat_info, upsert_chat
from storage.repositories.conversations import (
    Arrival,
    conversation_key,
    current_conversation,
    store_arrival,
)
from storage.repositories.usage import LEDGER_COLUMNS, LEDGER_VALUES
from storage.sql import ASYNC_COMMIT, Params, Row, id_list, sql, utc

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608

MESSAGE_COLUMNS = (
    "id, conversation_id, role, content, status, usable, telegram_message_ids, reply_to_id, "
    "user_id, model, sid, error_code, created_at, updated_at"
)

_INSERT = (
    "INSERT INTO messages (conversation_id, reply_to_id, user_id, role, content, tokens, status, "
    "usable, telegram_message_ids, model, created_at, updated_at) "
    "VALUES (:conversation, {reply_to}, :user, {role}, :content, :tokens, {status}, {usable}, "
    "{ids}, {model}, :now, :now) RETURNING id"
)
_LINK_CONFLICT = (
    "ON CONFLICT (chat_id, telegram_message_id) DO UPDATE SET message_id = excluded.message_id"
)
_QUESTION = dict(reply_to="NULL", role="'user'", status="'complete'", model="NULL")
INSERT_QUESTION = sql(
    _INSERT.format(**_QUESTION, usable="1", ids=":ids"),
    postgres=(
        "WITH question AS ("
        + _INSERT.format(**_QUESTION, usable="TRUE", ids="CAST(:ids AS JSON)")
        + "), link AS (INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
        "SELECT CAST(:chat AS BIGINT), CAST(:telegram_id AS BIGINT), id FROM question "
        f"WHERE CAST(:telegram_id AS BIGINT) IS NOT NULL {_LINK_CONFLICT}) "
        f"SELECT id, {ASYNC_COMMIT} FROM question"
    ),
)
LINK = sql(
    "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
    f"VALUES (:chat, :telegram_id, :message) {_LINK_CONFLICT}"
)
_ANSWER = dict(reply_to=":question", role="'assistant'", status="'streaming'")
INSERT_ANSWER = sql(
    _INSERT.format(**_ANSWER, usable="0", ids="'[]'", model=":model"),
    postgres=_INSERT.format(
        **_ANSWER, usable="FALSE", ids="CAST('[]' AS JSON)", model="CAST(:model AS VARCHAR)"
    )
    + f", {ASYNC_COMMIT}",
)
_CHECKPOINT = (
    "UPDATE messages SET content = :content, updated_at = :now "
    "WHERE id = :message AND status = 'streaming'"
)
CHECKPOINT = sql(
    _CHECKPOINT + " RETURNING id", postgres=f"{_CHECKPOINT} RETURNING id, {ASYNC_COMMIT}"
)


def _number(name: str) -> str:
    # asyncpg prepares the statement, so PostgreSQL must learn each parameter's type.
    return f"CAST(:{name} AS DOUBLE PRECISION)"


def _clamp(value: str, least: str, greatest: str) -> str:
    return f"{least}({greatest}({value}, {_number('r_least')}), {_number('r_greatest')})"


def ratio_update(least: str, greatest: str) -> str:
    """``token_ratio``'s next value in SQL, for a chat row being updated: the calibration
    rules passed as numbers (params :r_default, :r_least, :r_greatest, :r_up, :r_down;
    ``CalibrationRules``), applied to Spark's count :reported for the raw estimate :raw."""
    current = _clamp(f"COALESCE(token_ratio, {_number('r_default')})", least, greatest)
    sample = _clamp(f"{_number('reported')} / NULLIF({_number('raw')}, 0)", least, greatest)
    weight = f"CASE WHEN {sample} > {current} THEN {_number('r_up')} ELSE {_number('r_down')} END"
    return _clamp(f"{current} + {weight} * ({sample} - {current})", least, greatest)


_FINISH_SET = (
    "status = :status, content = :content, tokens = :tokens, sid = :sid, "
    "error_code = :error_code, usable = :usable, updated_at = :now, "
    "model = COALESCE({model}, model), "
    "telegram_message_ids = CASE WHEN :replace_ids THEN {ids} ELSE telegram_message_ids END"
)
_LEDGER_FROM_ANSWER = LEDGER_VALUES.format(conversation="a.conversation_id", message="a.id")


def _finish_postgres(*, async_commit: bool) -> str:
    """The whole finish as one statement: the answer, its Telegram links, its ledger row and
    the chat's calibration."""
    commit = f", {ASYNC_COMMIT}" if async_commit else ""
    return (
        "WITH answer AS (UPDATE messages SET "
        + _FINISH_SET.format(model="CAST(:model AS VARCHAR)", ids="CAST(:ids AS JSON)")
        + f" WHERE id = :message AND status = 'streaming' RETURNING {MESSAGE_COLUMNS}"
        "), link AS ("
        "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
        "SELECT c.chat_id, t.id, a.id FROM answer a "
        "JOIN conversations c ON c.id = a.conversation_id "
        "CROSS JOIN unnest(CAST(:link_ids AS BIGINT[])) AS t(id) "
        f"{_LINK_CONFLICT}"
        "), ledger AS ("
        f"INSERT INTO usage_records ({LEDGER_COLUMNS}) "
        f"SELECT {_LEDGER_FROM_ANSWER} FROM answer a WHERE :with_ledger"
        "), ratio AS ("
        f"UPDATE chats SET token_ratio = {ratio_update('LEAST', 'GREATEST')} "
        "WHERE id = CAST(:c_chat AS BIGINT) AND CAST(:raw AS DOUBLE PRECISION) > 0 "
        "AND CAST(:reported AS DOUBLE PRECISION) > 0 AND EXISTS (SELECT 1 FROM answer)"
        f") SELECT {MESSAGE_COLUMNS}{commit} FROM answer"
    )


_FINISH_SQLITE = (
    f"UPDATE messages SET {_FINISH_SET.format(model=':model', ids=':ids')} "
    f"WHERE id = :message AND status = 'streaming' RETURNING {MESSAGE_COLUMNS}"
)
# On SQLite the finish is four statements in the writer thread (SQLite has no data-modifying
# CTEs); on PostgreSQL one, committed asynchronously alone, or as part of a larger unit.
FINISH = sql(_FINISH_SQLITE, postgres=_finish_postgres(async_commit=True))
FINISH_IN_UNIT = sql(_FINISH_SQLITE, postgres=_finish_postgres(async_commit=False))
LINK_OF_CONVERSATION = sql(
    "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
    "SELECT chat_id, :telegram_id, :message FROM conversations WHERE id = :conversation "
    f"{_LINK_CONFLICT}"
)
LEDGER_OF_ANSWER = sql(
    f"INSERT INTO usage_records ({LEDGER_COLUMNS}) "
    f"VALUES ({LEDGER_VALUES.format(conversation=':conversation', message=':message')})"
)
CALIBRATE = sql(
    f"UPDATE chats SET token_ratio = {ratio_update('min', 'max')} "
    "WHERE id = :c_chat AND :raw > 0 AND :reported > 0"
)

_CHAT = ", ".join(f"c.{column} AS {column}" for column in CHAT_COLUMNS.split(", "))
# The chat row and the turns that count as history, newest first, with the running total of
# their raw cost; only those within :room leave the database, plus always the newest (so the
# count of all turns, which the prompt reports as dropped, arrives even when none fits). One
# row per turn, each with the chat's columns; a single row without a turn when there is none.
PROMPT = sql(
    f"""
WITH counted AS (
    SELECT a.id AS answer_id, a.reply_to_id AS question_id,
           a.tokens AS answer_tokens, q.tokens AS question_tokens,
           sum(a.tokens + q.tokens) OVER w AS running, row_number() OVER w AS position,
           count(*) OVER () AS total
    FROM messages a JOIN messages q ON q.id = a.reply_to_id
    WHERE a.conversation_id = :conversation AND a.role = 'assistant'
      AND a.reply_to_id IS NOT NULL
      AND (a.status = 'complete' OR (a.status = 'partial' AND a.usable = TRUE))
    WINDOW w AS (ORDER BY a.id DESC ROWS UNBOUNDED PRECEDING)
), taken AS (
    SELECT t.answer_id, t.question_id, t.answer_tokens, t.question_tokens, t.total,
           a.content AS answer, q.content AS question
    FROM counted t
    JOIN messages a ON a.id = t.answer_id
    JOIN messages q ON q.id = t.question_id
    WHERE t.running + :overhead * t.position <= :room OR t.position = 1
)
SELECT {_CHAT},
       h.answer_id AS answer_id, h.question_id AS question_id,
       h.answer_tokens AS answer_tokens, h.question_tokens AS question_tokens,
       h.total AS total, h.answer AS answer, h.question AS question
FROM (SELECT 1 AS one) o
LEFT JOIN chats c ON c.id = :chat
LEFT JOIN taken h ON 1 = 1
ORDER BY h.answer_id DESC
"""
)
_INTERRUPT = "UPDATE messages SET status = 'partial', usable = FALSE, updated_at = :now "
RECOVER = sql(_INTERRUPT + "WHERE status = 'streaming' AND updated_at <= :before")
# A conversation key (chat, topic, scope) writes one answer at a time, so at most one of its
# answers is streaming; /new may have opened a newer conversation since, hence every one.
INTERRUPT_ANSWER = sql(
    _INTERRUPT + "WHERE status = 'streaming' AND role = 'assistant' AND conversation_id IN ("
    "SELECT id FROM conversations WHERE chat_id = :chat AND thread_id = :thread "
    f"AND scope_user_id = :scope) RETURNING {MESSAGE_COLUMNS}"
)
# The failed marker of a question nobody will answer, unless it has an answer already.
_UNANSWERED = (
    "INSERT INTO messages (conversation_id, reply_to_id, user_id, role, content, tokens, status, "
    "usable, telegram_message_ids, model, created_at, updated_at) "
    "SELECT q.conversation_id, q.id, q.user_id, 'assistant', '', 0, 'failed', {false}, {ids}, "
    ":model, :now, :now FROM messages q WHERE q.id = :question AND q.role = 'user' "
    "AND NOT EXISTS (SELECT 1 FROM messages a WHERE a.reply_to_id = q.id)"
)
MARK_UNANSWERED = sql(
    _UNANSWERED.format(false="0", ids="'[]'"),
    postgres=_UNANSWERED.format(false="FALSE", ids="CAST('[]' AS JSON)"),
)
LAST_QUESTION = sql(
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = :conversation "
    "AND role = 'user' ORDER BY id DESC LIMIT 1"
)
CURRENT_ANSWER = sql(
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = :conversation "
    "AND reply_to_id = :question AND status <> 'superseded' ORDER BY id DESC LIMIT 1"
)
SUPERSEDE = sql(
    "UPDATE messages SET status = 'superseded', usable = FALSE, updated_at = :now "
    f"WHERE id = :message RETURNING {MESSAGE_COLUMNS}"
)


def stored_message(row: Row) -> StoredMessage:
    role: MessageRole = "assistant" if row["role"] == "assistant" else "user"
    return StoredMessage(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=role,
        content=row["content"],
        status=MessageStatus(row["status"]),
        usable=bool(row["usable"]),
        telegram_message_ids=id_list(row["telegram_message_ids"]),
        reply_to_id=row["reply_to_id"],
        user_id=row["user_id"],
        model=row["model"],
        sid=row["sid"],
        error_code=row["error_code"],
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
    )


def _new_message(
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


def prompt_history(rows: Sequence[Row]) -> PromptHistory:
    """The chat and history from the rows of :data:`PROMPT`: one per turn read, newest first,
    each with the chat's columns; one row without a turn when none is."""
    if not rows:
        return PromptHistory(None, [], 0)
    chat = chat_info(rows[0]) if rows[0]["id"] is not None else None
    turns = [
        HistoryTurn(
            question_id=row["question_id"],
            answer_id=row["answer_id"],
            question=row["question"],
            answer=row["answer"],
            question_tokens=row["question_tokens"],
            answer_tokens=row["answer_tokens"],
        )
        for row in rows
        if row["answer_id"] is not None
    ]
    return PromptHistory(chat, turns, int(rows[0]["total"] or 0))


@dataclass(frozen=True, slots=True)
class Finish:
    """An answer's final state, and what is written with it in the same unit of work: the
    ledger row (``ledger``) and the chat's calibration (``calibration``). ``usable``
    defaults to True for a complete answer and False otherwise (True for a partial answer
    worth keeping as history); ``telegram_message_ids``, when given, replace the row's list
    and are linked for replies. ``tokens`` is the text's token count."""

    status: MessageStatus
    text: str
    tokens: int
    sid: str | None = None
    error_code: int | None = None
    telegram_message_ids: Sequence[int] = ()
    usable: bool | None = None
    model: str | None = None
    ledger: LedgerEntry | None = None
    calibration: Calibration | None = None

    def link_ids(self) -> list[int]:
        """The Telegram message ids, each once, in order."""
        return list(dict.fromkeys(self.telegram_message_ids))

    def params(self, message_id: int, now: datetime) -> dict[str, Any]:
        """The statements' parameters; ``ValueError`` unless the status is a final one."""
        if self.status not in FINAL_STATUSES:
            raise ValueError(f"finish needs a final status, got {self.status!r}")
        ids = self.link_ids()
        ledger, calibration = self.ledger, self.calibration
        usage = (ledger.usage if ledger is not None else None) or TokenUsage()
        rules = calibration.rules if calibration is not None else None
        usable = self.status is MessageStatus.COMPLETE if self.usable is None else self.usable
        return {
            "message": message_id,
            "status": self.status.value,
            "content": self.text,
            "tokens": self.tokens,
            "sid": self.sid,
            "error_code": self.error_code,
            "usable": usable,
            "model": self.model,
            "replace_ids": bool(ids),
            "ids": json.dumps(ids),
            "link_ids": ids,
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


async def finish_answer(
    connection: Connection, message_id: int, finish: Finish, params: Params, *, alone: bool
) -> Row:
    """Give an answer its final status, with its links, ledger row and calibration: the one
    place an answer is finished. ``alone``: the unit runs nothing else (PostgreSQL: one
    statement in autocommit). ``params`` are ``finish.params(message_id, now)``, made by the
    caller before the unit runs. Returns the answer's row (:func:`stored_message` reads it);
    :class:`~storage.errors.AnswerNotStreaming`, nothing written, if the message is not
    stored or not ``streaming`` any more (the fence against writing an answer twice)."""
    statement = FINISH if alone else FINISH_IN_UNIT
    row = await connection.row(statement, params)
    if row is None:
        raise AnswerNotStreaming(message_id)
    if connection.backend == "sqlite":  # PostgreSQL did the rest in the same statement
        conversation_id = row["conversation_id"]
        ids = finish.link_ids()
        if ids:
            links = [
                {"telegram_id": i, "message": message_id, "conversation": conversation_id}
                for i in ids
            ]
            await connection.execute_many(LINK_OF_CONVERSATION, links)
        if finish.ledger is not None:
            await connection.execute(LEDGER_OF_ANSWER, {**params, "conversation": conversation_id})
        if finish.calibration is not None:
            await connection.execute(CALIBRATE, params)
    return row


def question_params(
    now: datetime,
    conversation: ConversationInfo,
    text: str,
    *,
    tokens: int,
    user_id: int | None,
    telegram_message_id: int | None,
) -> dict[str, object]:
    """The parameters of :func:`insert_question`."""
    ids = [telegram_message_id] if telegram_message_id is not None else []
    return {
        "conversation": conversation.id,
        "user": user_id,
        "content": text,
        "tokens": tokens,
        "ids": json.dumps(ids),
        "now": now,
        "chat": conversation.chat_id,
        "telegram_id": telegram_message_id,
    }


async def insert_question(connection: Connection, params: Params) -> int:
    """Store a question and its Telegram link; its id."""
    row = await connection.row(INSERT_QUESTION, params)
    assert row is not None  # RETURNING of an insert always has its row
    message_id: int = row["id"]
    if connection.backend == "sqlite" and params["telegram_id"] is not None:
        await connection.execute(LINK, {**params, "message": message_id})
    return message_id


def answer_params(
    now: datetime,
    conversation: ConversationInfo,
    *,
    question_id: int,
    model: str,
    user_id: int | None,
) -> dict[str, object]:
    """The parameters of :func:`insert_answer`."""
    return {
        "conversation": conversation.id,
        "question": question_id,
        "user": user_id,
        "content": "",
        "tokens": 0,
        "model": model,
        "now": now,
    }


async def insert_answer(connection: Connection, params: Params) -> int:
    """Store an answer row in status ``streaming``; its id."""
    row = await connection.row(INSERT_ANSWER, params)
    assert row is not None  # RETURNING of an insert always has its row
    message_id: int = row["id"]
    return message_id


class Messages(Repository):
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
        Telegram link (committed on return, before Spark is called)."""
        now = self.clock()
        params = question_params(
            now,
            conversation,
            text,
            tokens=tokens,
            user_id=user_id,
            telegram_message_id=telegram_message_id,
        )

        async def unit(connection: Connection) -> int:
            return await insert_question(connection, params)

        # Values are made here, not in the unit: on SQLite the unit runs in the writer
        # thread, and the less Python it runs there, the less it holds the GIL that the event
        # loop waits for (measured: benchmarks/RESULTS.md, "One way into the database").
        message_id = await self.backend.write(unit, one_statement=True)
        ids = () if telegram_message_id is None else (telegram_message_id,)
        return _new_message(
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
        """The answer row, in status ``streaming``, created before the first delta arrives."""
        now = self.clock()
        params = answer_params(
            now, conversation, question_id=question_id, model=model, user_id=user_id
        )

        async def unit(connection: Connection) -> int:
            return await insert_answer(connection, params)

        message_id = await self.backend.write(unit, one_statement=True)
        return _new_message(
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
        """Save the text streamed so far; False (and nothing written) once the answer is no
        longer streaming, so a late checkpoint cannot overwrite the final text."""
        params = {"message": message_id, "content": text, "now": self.clock()}

        async def unit(connection: Connection) -> bool:
            return await connection.row(CHECKPOINT, params) is not None

        return await self.backend.write(unit, one_statement=True)

    async def finish_answer(self, message_id: int, finish: Finish) -> StoredMessage:
        """Give the answer its final state (:class:`Finish`) in one unit of work."""
        params = finish.params(message_id, self.clock())  # a wrong status fails before any hop

        async def unit(connection: Connection) -> Row:
            return await finish_answer(connection, message_id, finish, params, alone=True)

        return stored_message(await self.backend.write(unit, one_statement=True))

    async def prompt_history(
        self, conversation_id: int, chat_id: int, *, room: int, turn_overhead: int
    ) -> PromptHistory:
        """The chat row and the turns that count as history, newest first, read in one
        statement: those whose running cost (their two token counts plus ``turn_overhead``
        each) stays within ``room``, and always the newest, with the count of all."""
        params = {
            "conversation": conversation_id,
            "chat": chat_id,
            "room": room,
            "overhead": turn_overhead,
        }

        async def unit(connection: Connection) -> list[Row]:
            return await connection.rows(PROMPT, params)

        return prompt_history(await self.backend.read(unit))  # read outside the worker thread

    async def supersede_last_answer(
        self, arrival: Arrival
    ) -> tuple[ConversationInfo, LastTurn | None]:
        """For /retry: in the asker's open conversation, mark the last answer ``superseded``
        and return the turn (the answer as it is now stored), so the question can be asked
        again. The turn is None when nothing was asked."""
        now = self.clock()

        async def unit(connection: Connection) -> tuple[ConversationInfo, LastTurn | None]:
            _chat, conversation = await store_arrival(connection, now, arrival)
            key = {"conversation": conversation.id}
            question = await connection.row(LAST_QUESTION, key)
            if question is None:
                return conversation, None
            answer = await connection.row(CURRENT_ANSWER, {**key, "question": question["id"]})
            if answer is not None:
                answer = await connection.row(SUPERSEDE, {"message": answer["id"], "now": now})
            stored = None if answer is None else stored_message(answer)
            return conversation, LastTurn(stored_message(question), stored)

        return await self.backend.write(unit)

    async def recover_interrupted(self, idle_for: timedelta = timedelta(0)) -> int:
        """Turn every answer still ``streaming`` (the process died mid-answer) whose text has
        not changed for ``idle_for`` into a ``partial``, not usable as history; how many."""
        now = self.clock()
        params = {"now": now, "before": now - idle_for}

        async def unit(connection: Connection) -> int:
            return await connection.execute(RECOVER, params)

        return await self.backend.write(unit)

    async def interrupt_answer(
        self, chat_id: int, thread_id: int, scope_user_id: int
    ) -> StoredMessage | None:
        """The answer still ``streaming`` in this conversation key (:func:`conversation_key`)
        becomes ``partial``, not usable as history (its process is gone); the answer as
        stored, or None when none was streaming (it was finished after all)."""
        params = {**conversation_key(chat_id, thread_id, scope_user_id), "now": self.clock()}

        async def unit(connection: Connection) -> Row | None:
            return await connection.row(INTERRUPT_ANSWER, params)

        row = await self.backend.write(unit, one_statement=True)
        return None if row is None else stored_message(row)

    async def mark_unanswered(self, question_id: int, model: str) -> bool:
        """Store the ``failed`` marker of a question that will not be answered (its process
        went before its turn); False when it has an answer already or is not stored."""
        params = {"question": question_id, "model": model, "now": self.clock()}

        async def unit(connection: Connection) -> int:
            return await connection.execute(MARK_UNANSWERED, params)

        return await self.backend.write(unit, one_statement=True) > 0

    async def store_completion(
        self,
        chat_id: int,
        title: str,
        question: str,
        *,
        question_tokens: int,
        model: str,
        finish: Finish,
    ) -> StoredMessage:
        """A stateless completion kept whole in one unit: its "chat" (type ``api``, stored or
        refreshed), the chat's open conversation, the question, and the answer finished with
        ``finish`` (its ledger row included). Returns the answer."""
        now = self.clock()

        async def unit(connection: Connection) -> Row:
            await upsert_chat(connection, now, chat_id, type="api", title=title)
            conversation = await current_conversation(connection, now, conversation_key(chat_id))
            asked = question_params(
                now,
                conversation,
                question,
                tokens=question_tokens,
                user_id=chat_id,
                telegram_message_id=None,
            )
            question_id = await insert_question(connection, asked)
            answer = answer_params(
                now, conversation, question_id=question_id, model=model, user_id=chat_id
            )
            answer_id = await insert_answer(connection, answer)
            params = finish.params(answer_id, now)
            return await finish_answer(connection, answer_id, finish, params, alone=False)

        return stored_message(await self.backend.write(unit))
