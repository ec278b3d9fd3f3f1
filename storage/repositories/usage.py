"""The usage ledger: one row per Spark request, and what quotas read from it.

A ledger query is a time range (``created_at >= since``) of one user, served by the ledger's
``(user_id, created_at, ...)`` index; it reads every row in the range, so the quota check,
made before every question, reads the user's rollup row for the day instead (kept by the
ledger's trigger, migration 0002): one row however many requests the user made today.
Admin statistics read the rollups too (:mod:`storage.stats`).
"""

from __future__ import annotations

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608
from dataclasses import dataclass
from datetime import date, datetime

from storage.backends import Connection
from storage.dto import TokenUsage
from storage.repositories import Repository
from storage.sql import sql

LEDGER_COLUMNS = (
    "created_at, user_id, chat_id, conversation_id, message_id, model, prompt_tokens, "
    "completion_tokens, total_tokens, first_token_ms, duration_ms, sid, error_code"
)
# A ledger row's values from params :now, :l_user, :l_chat, :l_model, :l_prompt,
# :l_completion, :l_total, :l_first_token, :l_duration, :sid, :l_error; the conversation and
# message are filled in by the statement that uses it. Typed, because asyncpg prepares the
# statement and PostgreSQL must learn each parameter's type (SQLite takes the casts as is).
LEDGER_VALUES = (
    ":now, CAST(:l_user AS BIGINT), CAST(:l_chat AS BIGINT), {conversation}, {message}, "
    "CAST(:l_model AS VARCHAR), CAST(:l_prompt AS INTEGER), CAST(:l_completion AS INTEGER), "
    "CAST(:l_total AS INTEGER), CAST(:l_first_token AS INTEGER), "
    "CAST(:l_duration AS INTEGER), :sid, CAST(:l_error AS INTEGER)"
)
RECORD = sql(
    f"INSERT INTO usage_records ({LEDGER_COLUMNS}) VALUES "
    f"({LEDGER_VALUES.format(conversation=':conversation', message=':message')}) RETURNING id"
)
TOKENS_USED = sql(
    "SELECT COALESCE(SUM(total_tokens), 0) AS used FROM usage_records "
    "WHERE user_id = :user AND created_at >= :since"
)
DAILY_USE = sql(
    "SELECT u.daily_token_quota AS quota, "
    "(SELECT d.total_tokens FROM usage_daily_users d "
    " WHERE d.user_id = :user AND d.day = :day) AS used "
    "FROM (SELECT 1 AS one) o LEFT JOIN users u ON u.id = :user"
)


@dataclass(frozen=True, slots=True)
class DailyUse:
    """A user's own quota override (None: the default applies, or no such user) and the
    tokens billed to them on the day (UTC)."""

    quota: int | None
    used: int


class Usage(Repository):
    async def record(
        self,
        *,
        model: str,
        usage: TokenUsage | None,
        user_id: int | None,
        chat_id: int | None,
        conversation_id: int | None = None,
        message_id: int | None = None,
        first_token_ms: int | None = None,
        duration_ms: int | None = None,
        sid: str | None = None,
        error_code: int | None = None,
    ) -> int:
        """Append one request to the ledger (``usage`` None when Spark reported none); a
        finished answer's row is written with it instead (``Messages.finish_answer``)."""
        usage = usage or TokenUsage()
        params = {
            "now": self.clock(),
            "l_user": user_id,
            "l_chat": chat_id,
            "conversation": conversation_id,
            "message": message_id,
            "l_model": model,
            "l_prompt": usage.prompt_tokens,
            "l_completion": usage.completion_tokens,
            "l_total": usage.total_tokens,
            "l_first_token": first_token_ms,
            "l_duration": duration_ms,
            "sid": sid,
            "l_error": error_code,
        }

        async def unit(connection: Connection) -> int:
            row = await connection.row(RECORD, params)
            assert row is not None  # RETURNING of an insert always has its row
            return int(row["id"])

        # One statement (its trigger's rollup upserts included): autocommit on PostgreSQL, so
        # the rollups' hot rows (today's totals, every request's) are locked for the
        # statement alone, not for two more round trips of BEGIN and COMMIT.
        return await self.backend.write(unit, one_statement=True)

    async def tokens_used(self, user_id: int, since: datetime) -> int:
        """Total tokens billed to ``user_id`` since ``since``."""
        params = {"user": user_id, "since": since}

        async def unit(connection: Connection) -> int:
            row = await connection.row(TOKENS_USED, params)
            return int(row["used"] or 0) if row is not None else 0

        return await self.backend.read(unit)

    async def daily_use(self, user_id: int, day: date) -> DailyUse:
        """The quota check's figures for the UTC ``day``, read in one statement (see
        :class:`DailyUse`)."""
        params = {"user": user_id, "day": day}

        async def unit(connection: Connection) -> DailyUse:
            row = await connection.row(DAILY_USE, params)
            assert row is not None  # the statement always returns its one row
            return DailyUse(row["quota"], int(row["used"] or 0))

        return await self.backend.lookup(unit)
