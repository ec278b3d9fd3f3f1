"""The usage ledger: one row per Spark request, and the queries quotas and admin stats need.

Every query is a time range (``created_at >= since``), alone or per user or chat, so each is
served by one of the ledger's three indexes however large it grows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select

from bot.spark.types import Usage
from storage.dto import LatencyStats, TopUser, UsageTotals
from storage.models import UsageRecord
from storage.repositories.base import Repository


class UsageRepository(Repository):
    async def record(
        self,
        *,
        model: str,
        usage: Usage | None,
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
        usage = usage or Usage()
        record_id = await self.session.scalar(
            self.insert(UsageRecord)
            .values(
                created_at=self.clock(),
                user_id=user_id,
                chat_id=chat_id,
                conversation_id=conversation_id,
                message_id=message_id,
                model=model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                first_token_ms=first_token_ms,
                duration_ms=duration_ms,
                sid=sid,
                error_code=error_code,
            )
            .returning(UsageRecord.id)
        )
        if record_id is None:
            raise LookupError("the ledger row was not stored")
        return int(record_id)

    async def tokens_used(self, user_id: int, since: datetime) -> int:
        """Total tokens billed to ``user_id`` since ``since`` (the daily quota check)."""
        total = await self.session.scalar(
            select(func.coalesce(func.sum(UsageRecord.total_tokens), 0)).where(
                UsageRecord.user_id == user_id, UsageRecord.created_at >= since
            )
        )
        return int(total or 0)

    async def totals(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        user_id: int | None = None,
        chat_id: int | None = None,
    ) -> UsageTotals:
        def total(column: Any) -> ColumnElement[Any]:
            return func.coalesce(func.sum(column), 0)

        query = select(
            func.count(),
            func.count(UsageRecord.error_code),
            total(UsageRecord.prompt_tokens),
            total(UsageRecord.completion_tokens),
            total(UsageRecord.total_tokens),
        ).where(*self._range(since, until, user_id=user_id, chat_id=chat_id))
        requests, failed, prompt, completion, all_tokens = (
            await self.session.execute(query)
        ).one()
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
        tokens = func.coalesce(func.sum(UsageRecord.total_tokens), 0).label("tokens")
        rows = await self.session.execute(
            select(UsageRecord.user_id, func.count(), tokens)
            .where(UsageRecord.user_id.is_not(None), *self._range(since, until))
            .group_by(UsageRecord.user_id)
            .order_by(tokens.desc(), UsageRecord.user_id)
            .limit(limit)
        )
        return [TopUser(int(uid or 0), int(count), int(total)) for uid, count, total in rows]

    async def latency(
        self, since: datetime, until: datetime | None = None, *, chat_id: int | None = None
    ) -> LatencyStats:
        """p50 / p95 of time to first token and of duration, over successful requests."""
        where = [UsageRecord.error_code.is_(None), *self._range(since, until, chat_id=chat_id)]
        samples = int(await self.session.scalar(select(func.count()).where(*where)) or 0)
        figures: list[int | None] = []
        for column in (UsageRecord.first_token_ms, UsageRecord.duration_ms):
            values = [
                v
                for v in await self.session.scalars(
                    select(column).where(*where, column.is_not(None)).order_by(column)
                )
                if v is not None
            ]
            figures += [_nearest_rank(values, 50), _nearest_rank(values, 95)]
        return LatencyStats(samples, *figures)

    @staticmethod
    def _range(
        since: datetime,
        until: datetime | None,
        *,
        user_id: int | None = None,
        chat_id: int | None = None,
    ) -> list[ColumnElement[bool]]:
        where = [UsageRecord.created_at >= since]
        if until is not None:
            where.append(UsageRecord.created_at < until)
        if user_id is not None:
            where.append(UsageRecord.user_id == user_id)
        if chat_id is not None:
            where.append(UsageRecord.chat_id == chat_id)
        return where


def _nearest_rank(sorted_values: list[int], percent: int) -> int | None:
    if not sorted_values:
        return None
    rank = max(1, -(-percent * len(sorted_values) // 100))
    return sorted_values[rank - 1]
