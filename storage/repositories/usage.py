"""The usage ledger: one row per Spark request, and the queries quotas and admin stats need.

Every query is a time range (``created_at >= since``), alone or per user or chat, so each is
served by one of the ledger's three indexes however large it grows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select

from storage.dto import LatencyStats, TokenUsage, TopUser, UsageTotals
from storage.repositories.base import Repository, table

USAGE = table("usage_records")
_U = USAGE.c
_INSERT = USAGE.insert().returning(_U.id)


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


_TOKENS_USED = select(_sum(_U.total_tokens)).where(
    _U.user_id == bindparam("b_user"), _U.created_at >= bindparam("b_since")
)


class UsageRepository(Repository):
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
        """Append one request to the ledger (``usage`` None when Spark reported none)."""
        usage = usage or TokenUsage()
        result = await self.execute(
            _INSERT,
            {
                "created_at": self.clock(),
                "user_id": user_id,
                "chat_id": chat_id,
                "conversation_id": conversation_id,
                "message_id": message_id,
                "model": model,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "first_token_ms": first_token_ms,
                "duration_ms": duration_ms,
                "sid": sid,
                "error_code": error_code,
            },
        )
        return int(result.scalar_one())

    async def tokens_used(self, user_id: int, since: datetime) -> int:
        """Total tokens billed to ``user_id`` since ``since`` (the daily quota check)."""
        params = {"b_user": user_id, "b_since": since}
        return int((await self.execute(_TOKENS_USED, params)).scalar() or 0)

    async def totals(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        user_id: int | None = None,
        chat_id: int | None = None,
    ) -> UsageTotals:
        query = select(
            func.count(),
            func.count(_U.error_code),
            _sum(_U.prompt_tokens),
            _sum(_U.completion_tokens),
            _sum(_U.total_tokens),
        ).where(*self._range(since, until, user_id=user_id, chat_id=chat_id))
        requests, failed, prompt, completion, all_tokens = (await self.execute(query)).one()
        return UsageTotals(
            requests=int(requests),
            failed_requests=int(failed),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            total_tokens=int(all_tokens),
        )

    async def top_users(
        self, since: datetime, until: datetime | None = None, *, limit: int = 10
    ) -> list[TopUser]:
        tokens = _sum(_U.total_tokens).label("tokens")
        rows = await self.execute(
            select(_U.user_id, func.count(), tokens)
            .where(_U.user_id.is_not(None), *self._range(since, until))
            .group_by(_U.user_id)
            .order_by(tokens.desc(), _U.user_id)
            .limit(limit)
        )
        return [TopUser(int(row[0]), int(row[1]), int(row[2])) for row in rows]

    async def latency(
        self, since: datetime, until: datetime | None = None, *, chat_id: int | None = None
    ) -> LatencyStats:
        """Nearest-rank p50 / p95 of time to first token and of duration, over successful
        requests. Each percentile is one ``ORDER BY ... OFFSET`` on the time range, so only a
        single value per figure leaves the database."""
        where = [_U.error_code.is_(None), *self._range(since, until, chat_id=chat_id)]
        count = select(func.count()).select_from(USAGE)
        samples = int((await self.execute(count.where(*where))).scalar() or 0)
        figures: list[int | None] = []
        for column in (_U.first_token_ms, _U.duration_ms):
            present = [*where, column.is_not(None)]
            total = int((await self.execute(count.where(*present))).scalar() or 0)
            for percent in (50, 95):
                if total == 0:
                    figures.append(None)
                    continue
                rank = max(1, -(-percent * total // 100))
                value = await self.execute(
                    select(column).where(*present).order_by(column).offset(rank - 1).limit(1)
                )
                figures.append(value.scalar())
        return LatencyStats(samples, *figures)

    @staticmethod
    def _range(
        since: datetime,
        until: datetime | None,
        *,
        user_id: int | None = None,
        chat_id: int | None = None,
    ) -> list[ColumnElement[bool]]:
        where = [_U.created_at >= since]
        if until is not None:
            where.append(_U.created_at < until)
        if user_id is not None:
            where.append(_U.user_id == user_id)
        if chat_id is not None:
            where.append(_U.chat_id == chat_id)
        return where
