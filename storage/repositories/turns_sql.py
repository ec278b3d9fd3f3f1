"""The SQL of the turn hot path (:mod:`storage.repositories.turns`), one text per backend.

Written out rather than built with SQLAlchemy Core because these statements run on the
driver's own connection: on PostgreSQL a whole write is one statement (data-modifying CTEs),
which SQLite cannot express, so the two backends differ in shape anyway. Placeholders are
``:name``; :func:`numbered` turns a text into asyncpg's ``$n`` form once, at import.

Column lists follow :mod:`storage.models`; the tests of the turn repository run every
statement on both backends against the same data the Core repositories read back.
"""

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608

from __future__ import annotations

import re
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_]+)")


@dataclass(frozen=True, slots=True)
class Numbered:
    """A statement in asyncpg's form: its text and the parameter names in ``$n`` order."""

    text: str
    names: tuple[str, ...]

    def args(self, params: dict[str, object]) -> list[object]:
        return [params[name] for name in self.names]


def numbered(text: str) -> Numbered:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Numbered(_PLACEHOLDER.sub(number, text), tuple(names))


MESSAGE_COLUMNS = (
    "id, conversation_id, role, content, status, usable, telegram_message_ids, reply_to_id, "
    "user_id, model, sid, error_code, created_at, updated_at"
)
CHAT_COLUMNS = "id, type, title, model, system_prompt, token_ratio, spark_uid, created_at"

# Everything a question's arrival needs, read in one statement: the chat, the asker's stored
# profile, the open conversation and the topic's uid. When all is there and unchanged, the
# arrival writes nothing (see TurnRepository.arrival).
ARRIVAL = f"""
SELECT {", ".join("c." + column for column in CHAT_COLUMNS.split(", "))},
       u.id, u.username, u.first_name, u.language_code,
       v.id, v.created_at, t.spark_uid
FROM chats c
LEFT JOIN users u ON u.id = :user
LEFT JOIN conversations v ON v.chat_id = c.id AND v.thread_id = :thread
     AND v.scope_user_id = :scope AND v.closed_at IS NULL
LEFT JOIN chat_topics t ON t.chat_id = c.id AND t.thread_id = :thread
WHERE c.id = :chat
"""

# The chat row and the turns that count as history, newest first, with the running total of
# their raw cost; only those within :room leave the database, plus always the newest (so the
# count of all turns, which the prompt reports as dropped, arrives even when none fits). One
# row per turn, each with the chat's columns; a single row without a turn when there is none.
PROMPT = f"""
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
SELECT {", ".join("c." + column for column in CHAT_COLUMNS.split(", "))},
       h.answer_id, h.question_id, h.answer_tokens, h.question_tokens, h.total,
       h.answer, h.question
FROM (SELECT 1 AS one) o
LEFT JOIN chats c ON c.id = :chat
LEFT JOIN taken h ON 1 = 1
ORDER BY h.answer_id DESC
"""

_INSERT_MESSAGE = """
INSERT INTO messages (conversation_id, reply_to_id, user_id, role, content, tokens, status,
                      usable, telegram_message_ids, model, created_at, updated_at)
VALUES (:conversation, {reply_to}, :user, {role}, :content, :tokens, {status}, {usable},
        {ids}, {model}, :now, :now)
RETURNING id
"""
_LINK_CONFLICT = (
    "ON CONFLICT (chat_id, telegram_message_id) DO UPDATE SET message_id = excluded.message_id"
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


_FINISH_SET = """
    status = :status, content = :content, tokens = :tokens, sid = :sid,
    error_code = :error_code, usable = :usable, updated_at = :now,
    model = COALESCE({model}, model),
    telegram_message_ids = CASE WHEN :replace_ids THEN {ids} ELSE telegram_message_ids END
"""
_LEDGER_COLUMNS = (
    "created_at, user_id, chat_id, conversation_id, message_id, model, prompt_tokens, "
    "completion_tokens, total_tokens, first_token_ms, duration_ms, sid, error_code"
)


def _ledger_values(conversation: str, message: str, *, cast: bool) -> str:
    def typed(name: str, sql_type: str) -> str:
        # asyncpg prepares the statement, so PostgreSQL must learn each parameter's type.
        return f"CAST(:{name} AS {sql_type})" if cast else f":{name}"

    return ", ".join(
        (
            ":now",
            typed("l_user", "BIGINT"),
            typed("l_chat", "BIGINT"),
            conversation,
            message,
            typed("l_model", "VARCHAR"),
            typed("l_prompt", "INTEGER"),
            typed("l_completion", "INTEGER"),
            typed("l_total", "INTEGER"),
            typed("l_first_token", "INTEGER"),
            typed("l_duration", "INTEGER"),
            ":sid",
            typed("l_error", "INTEGER"),
        )
    )


# An update's first arrival records it; a re-delivery conflicts and records nothing.
_CLAIM = (
    "INSERT INTO processed_updates (bot_id, update_id, received_at) "
    "VALUES (:bot, :update, :now) ON CONFLICT (bot_id, update_id) DO NOTHING"
)
_FORGET = "DELETE FROM processed_updates WHERE received_at < :before"


class Sqlite:
    """Statements for :mod:`sqlite3` (named parameters, run in the writer thread)."""

    INSERT_QUESTION = _INSERT_MESSAGE.format(
        reply_to="NULL", role="'user'", status="'complete'", usable="1", ids=":ids", model="NULL"
    )
    INSERT_ANSWER = _INSERT_MESSAGE.format(
        reply_to=":question", role="'assistant'", status="'streaming'", usable="0", ids="'[]'",
        model=":model",
    )  # fmt: skip
    LINK = (
        "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
        f"VALUES (:chat, :telegram_id, :message) {_LINK_CONFLICT}"
    )
    LINK_OF_CONVERSATION = (
        "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
        "SELECT chat_id, :telegram_id, :message FROM conversations WHERE id = :conversation "
        f"{_LINK_CONFLICT}"
    )
    CHECKPOINT = (
        "UPDATE messages SET content = :content, updated_at = :now "
        "WHERE id = :message AND status = 'streaming'"
    )
    FINISH = (
        f"UPDATE messages SET {_FINISH_SET.format(model=':model', ids=':ids')} "
        f"WHERE id = :message RETURNING {MESSAGE_COLUMNS}"
    )
    LEDGER = (
        f"INSERT INTO usage_records ({_LEDGER_COLUMNS}) "
        f"VALUES ({_ledger_values(':conversation', ':message', cast=False)})"
    )
    CALIBRATE = (
        f"UPDATE chats SET token_ratio = {ratio_update('min', 'max')} "
        "WHERE id = :c_chat AND :raw > 0 AND :reported > 0"
    )
    PROMPT = PROMPT
    ARRIVAL = ARRIVAL
    CLAIM = _CLAIM
    FORGET = _FORGET


# Commit without waiting for the WAL flush, for this statement's transaction only: the promise
# SQLite's synchronous=NORMAL makes (a crash of the bot loses nothing; a crash of the server or
# machine may lose the last fraction of a second of turns, never half a turn). Waiting for the
# flush while the ledger trigger holds its day's rollup rows locked serialises every turn.
ASYNC_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true))"


class Postgres:
    """Statements for asyncpg: every write is a single statement, so it needs no BEGIN or
    COMMIT round trip (PostgreSQL runs one statement atomically), and commits asynchronously
    (:data:`ASYNC_COMMIT`, evaluated with the returned row)."""

    INSERT_QUESTION = numbered(
        "WITH question AS ("
        + _INSERT_MESSAGE.format(
            reply_to="NULL", role="'user'", status="'complete'", usable="TRUE",
            ids="CAST(:ids AS JSON)", model="NULL",
        )
        + "), link AS ("
        "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
        "SELECT CAST(:chat AS BIGINT), CAST(:telegram_id AS BIGINT), id FROM question "
        f"WHERE CAST(:telegram_id AS BIGINT) IS NOT NULL {_LINK_CONFLICT}"
        f") SELECT id, {ASYNC_COMMIT} FROM question"
    )  # fmt: skip
    INSERT_ANSWER = numbered(
        _INSERT_MESSAGE.format(
            reply_to=":question", role="'assistant'", status="'streaming'", usable="FALSE",
            ids="CAST('[]' AS JSON)", model="CAST(:model AS VARCHAR)",
        )
        + f", {ASYNC_COMMIT}"
    )  # fmt: skip
    CHECKPOINT = numbered(
        "UPDATE messages SET content = :content, updated_at = :now "
        f"WHERE id = :message AND status = 'streaming' RETURNING id, {ASYNC_COMMIT}"
    )
    FINISH = numbered(
        "WITH answer AS ("
        "UPDATE messages SET "
        + _FINISH_SET.format(model="CAST(:model AS VARCHAR)", ids="CAST(:ids AS JSON)")
        + f" WHERE id = :message RETURNING {MESSAGE_COLUMNS}"
        "), link AS ("
        "INSERT INTO telegram_messages (chat_id, telegram_message_id, message_id) "
        "SELECT c.chat_id, t.id, a.id FROM answer a "
        "JOIN conversations c ON c.id = a.conversation_id "
        "CROSS JOIN unnest(CAST(:link_ids AS BIGINT[])) AS t(id) "
        f"{_LINK_CONFLICT}"
        "), ledger AS ("
        f"INSERT INTO usage_records ({_LEDGER_COLUMNS}) "
        f"SELECT {_ledger_values('a.conversation_id', 'a.id', cast=True)} "
        "FROM answer a WHERE :with_ledger"
        "), ratio AS ("
        f"UPDATE chats SET token_ratio = {ratio_update('LEAST', 'GREATEST')} "
        "WHERE id = CAST(:c_chat AS BIGINT) AND CAST(:raw AS DOUBLE PRECISION) > 0 "
        "AND CAST(:reported AS DOUBLE PRECISION) > 0 AND EXISTS (SELECT 1 FROM answer)"
        f") SELECT {MESSAGE_COLUMNS}, {ASYNC_COMMIT} FROM answer"
    )
    PROMPT = numbered(PROMPT)
    ARRIVAL = numbered(ARRIVAL)
    CLAIM = numbered(f"{_CLAIM} RETURNING update_id, {ASYNC_COMMIT}")
    FORGET = numbered(f"WITH gone AS ({_FORGET} RETURNING 1) SELECT count(*) FROM gone")
