"""Admin usage statistics: the queries behind /stats, as frozen reports.

Whole-bot figures come from the per-day rollups (``usage_daily*``, kept exact by a trigger on
every ledger insert), so a report reads a few thousand rows however long the ledger grows; one
user's or one chat's figures come from their own ledger rows, read from the ledger's covering
``(user_id | chat_id, created_at, …)`` indexes. Both paths end in the same aggregates, so a
report looks the same and means the same whichever path built it.

Days are UTC. A window of N days is today and the N - 1 days before it. Percentiles are
nearest-rank over successful requests, with values rounded down to the buckets of the stored
histograms (:func:`latency_bucket`: exact below 100 ms, within 5 % above).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Date, and_, case, cast, func, or_, select, type_coerce

from storage.dto import UserInfo
from storage.repositories.base import Repository, table

WINDOWS = (1, 7, 30)
DAYS = max(WINDOWS)
TOP = 5
NO_ID = 0  # how the rollups file a request without a user or chat
FIRST_TOKEN, DURATION = 0, 1

USAGE = table("usage_records")
DAILY = table("usage_daily")
DAILY_USERS = table("usage_daily_users")
DAILY_CHATS = table("usage_daily_chats")
DAILY_ERRORS = table("usage_daily_errors")
MONTHLY_USERS = table("usage_monthly_users")
MONTHLY_CHATS = table("usage_monthly_chats")
USERS_SEEN = table("usage_users_seen")
CHATS_SEEN = table("usage_chats_seen")
DAILY_LATENCY = table("usage_daily_latency")
USERS = table("users")
CHATS = table("chats")
_ID = re.compile(r"-?[0-9]{1,19}", re.ASCII)

EXPORT_COLUMNS = (
    "id",
    "created_at",
    "user_id",
    "username",
    "chat_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "first_token_ms",
    "duration_ms",
    "error_code",
    "sid",
)

Scope = Literal["all", "user", "chat"]


def latency_bucket(ms: int) -> int:
    """``ms`` rounded down to its histogram bucket: exact below 100 ms, then steps of half a
    unit of the second significant digit (5 ms from 100 ms, 50 ms from 1 s, 500 ms from
    10 s...), at most 5 % and typically about 1 % low.

    The rollup trigger in the 0002 revision computes the same buckets in SQL.
    """
    if ms < 100:
        return ms
    step, limit = 5, 1000
    while ms >= limit and step < 50_000:
        step, limit = step * 10, limit * 10
    return ms // step * step


def day_start(day: date) -> datetime:
    """UTC midnight at the start of ``day``."""
    return datetime.combine(day, time(), tzinfo=UTC)


def window_start(today: date, days: int) -> date:
    return today - timedelta(days=days - 1)


def nearest_rank(histogram: Iterable[tuple[int, int]], percent: int) -> int | None:
    """The nearest-rank ``percent`` percentile of ``(value, count)`` pairs in value order."""
    pairs = [(value, count) for value, count in histogram if count > 0]
    total = sum(count for _, count in pairs)
    if total == 0:
        return None
    rank = max(1, -(-percent * total // 100))
    seen = 0
    for value, count in pairs:
        seen += count
        if seen >= rank:
            return value
    return pairs[-1][0]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One window of ``days`` days ending today."""

    days: int
    requests: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    users: int
    chats: int
    # (Spark error code, requests), most frequent first; -1: no Spark code (timeout, network).
    errors: tuple[tuple[int, int], ...]
    first_token_p50_ms: int | None
    first_token_p95_ms: int | None
    duration_p50_ms: int | None
    duration_p95_ms: int | None


@dataclass(frozen=True, slots=True)
class Ranked:
    """A user or chat in a top list; ``name`` is @username, first name or chat title."""

    id: int
    name: str | None
    requests: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    scope: Scope
    subject_id: int | None
    today: date
    windows: tuple[WindowStats, ...]  # one per WINDOWS entry, shortest first
    daily_tokens: tuple[int, ...]  # DAYS values, oldest first; the last is today
    top_users: tuple[Ranked, ...]
    top_chats: tuple[Ranked, ...]

    @property
    def empty(self) -> bool:
        return self.windows[-1].requests == 0


@dataclass(frozen=True, slots=True)
class ExportRow:
    id: int
    created_at: datetime
    user_id: int | None
    username: str | None
    chat_id: int | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    first_token_ms: int | None
    duration_ms: int | None
    error_code: int | None
    sid: str | None

    def values(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.created_at.isoformat(),
            self.user_id,
            self.username,
            self.chat_id,
            self.model,
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.first_token_ms,
            self.duration_ms,
            self.error_code,
            self.sid,
        )


@dataclass(slots=True)
class _DayTotals:
    requests: int = 0
    failed: int = 0
    prompt: int = 0
    completion: int = 0
    total: int = 0


@dataclass(slots=True)
class _Aggregates:
    """What both paths (rollups, raw ledger rows) produce before a report is built."""

    days: dict[date, _DayTotals]
    users: tuple[int, ...]  # distinct users per window
    chats: tuple[int, ...]
    top_users: list[tuple[int, int, int]]  # (id, requests, tokens)
    top_chats: list[tuple[int, int, int]]
    errors: list[tuple[date, int, int]]  # (day, code, requests)
    # metric -> [(bucket, requests per window...)] in bucket order
    latency: dict[int, list[tuple[int, tuple[int, ...]]]]


class StatsRepository(Repository):
    """Read-only statistics queries; use it in a ``readonly`` unit of work."""

    async def overview(self, today: date) -> UsageReport:
        """The whole bot over the last :data:`DAYS` days, from the rollups."""
        first = window_start(today, DAYS)
        starts = [window_start(today, days) for days in WINDOWS]
        days: dict[date, _DayTotals] = {}
        rows = await self.execute(
            select(
                DAILY.c.day,
                DAILY.c.requests,
                DAILY.c.failed_requests,
                DAILY.c.prompt_tokens,
                DAILY.c.completion_tokens,
                DAILY.c.total_tokens,
            ).where(DAILY.c.day >= first, DAILY.c.day <= today)
        )
        for day, *figures in rows:
            days[day] = _DayTotals(*(int(value) for value in figures))
        users = await self._active(USERS_SEEN, USERS_SEEN.c.user_id, starts)
        chats = await self._active(CHATS_SEEN, CHATS_SEEN.c.chat_id, starts)
        top_users = await self._top(DAILY_USERS, MONTHLY_USERS, "user_id", first, today)
        top_chats = await self._top(DAILY_CHATS, MONTHLY_CHATS, "chat_id", first, today)
        errors = [
            (day, int(code), int(count))
            for day, code, count in await self.execute(
                select(
                    DAILY_ERRORS.c.day, DAILY_ERRORS.c.error_code, DAILY_ERRORS.c.requests
                ).where(DAILY_ERRORS.c.day >= first, DAILY_ERRORS.c.day <= today)
            )
        ]
        per_window = [
            func.sum(case((DAILY_LATENCY.c.day >= start, DAILY_LATENCY.c.requests), else_=0))
            for start in starts
        ]
        latency: dict[int, list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
        for metric, bucket, *counts in await self.execute(
            select(DAILY_LATENCY.c.metric, DAILY_LATENCY.c.bucket, *per_window)
            .where(DAILY_LATENCY.c.day >= first, DAILY_LATENCY.c.day <= today)
            .group_by(DAILY_LATENCY.c.metric, DAILY_LATENCY.c.bucket)
            .order_by(DAILY_LATENCY.c.metric, DAILY_LATENCY.c.bucket)
        ):
            latency[int(metric)].append((int(bucket), tuple(int(c) for c in counts)))
        aggregates = _Aggregates(days, users, chats, top_users, top_chats, errors, latency)
        return await self._report("all", None, today, aggregates)

    async def for_user(self, user_id: int, today: date) -> UsageReport:
        """One user over the last :data:`DAYS` days, from their ledger rows."""
        data = await self._subject(USAGE.c.user_id == user_id, USAGE.c.chat_id, today, "user")
        return await self._report("user", user_id, today, data)

    async def for_chat(self, chat_id: int, today: date) -> UsageReport:
        """One chat over the last :data:`DAYS` days, from its ledger rows."""
        data = await self._subject(USAGE.c.chat_id == chat_id, USAGE.c.user_id, today, "chat")
        return await self._report("chat", chat_id, today, data)

    async def find_user(self, reference: int | str) -> UserInfo | None:
        """A known user by numeric id or ``@username`` (case-insensitive).

        Only ASCII digits within signed 64 bits make an id: anything else ("²", a 25-digit
        number) is simply nobody, never a database error.
        """
        where: ColumnElement[bool]
        if isinstance(reference, str):
            reference = reference.strip()
            if _ID.fullmatch(reference):
                reference = int(reference)
        if isinstance(reference, int):
            if not -(2**63) <= reference < 2**63:
                return None
            where = USERS.c.id == reference
        elif reference.startswith("@") and len(reference) > 1:
            where = func.lower(USERS.c.username) == reference[1:].lower()
        else:
            return None
        row = (await self.execute(select(USERS).where(where).order_by(USERS.c.id))).first()
        if row is None:
            return None
        return UserInfo(
            id=row.id,
            username=row.username,
            first_name=row.first_name,
            language_code=row.language_code,
            daily_token_quota=row.daily_token_quota,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def chat_known(self, chat_id: int) -> bool:
        """Whether the chat was ever seen (stored, or named in the ledger)."""
        stored = select(CHATS.c.id).where(CHATS.c.id == chat_id)
        if (await self.execute(stored)).first() is not None:
            return True
        ledger = select(USAGE.c.id).where(USAGE.c.chat_id == chat_id).limit(1)
        return (await self.execute(ledger)).first() is not None

    async def export_page(
        self, since: datetime, after: tuple[datetime, int] | None, limit: int
    ) -> list[ExportRow]:
        """Ledger rows from ``since`` in (created_at, id) order, after the keyset ``after``
        (the last row's created_at and id).

        Paged so that an export of a million rows never holds one unit of work (or, on
        SQLite, one read snapshot) for its whole length.
        """
        where: list[ColumnElement[bool]] = [USAGE.c.created_at >= since]
        if after is not None:
            at, last_id = after
            where.append(
                or_(
                    USAGE.c.created_at > at,
                    and_(USAGE.c.created_at == at, USAGE.c.id > last_id),
                )
            )
        query = (
            select(
                USAGE.c.id,
                USAGE.c.created_at,
                USAGE.c.user_id,
                USERS.c.username,
                USAGE.c.chat_id,
                USAGE.c.model,
                USAGE.c.prompt_tokens,
                USAGE.c.completion_tokens,
                USAGE.c.total_tokens,
                USAGE.c.first_token_ms,
                USAGE.c.duration_ms,
                USAGE.c.error_code,
                USAGE.c.sid,
            )
            .select_from(USAGE.outerjoin(USERS, USERS.c.id == USAGE.c.user_id))
            .where(*where)
            .order_by(USAGE.c.created_at, USAGE.c.id)
            .limit(limit)
        )
        rows = await self.execute(query)
        return [ExportRow(*row) for row in rows]

    # -- helpers ---------------------------------------------------------------------------

    async def _active(self, seen: Any, column: Any, starts: Sequence[date]) -> tuple[int, ...]:
        """Users (or chats) whose last request was on or after each start day."""
        counts = [func.sum(case((seen.c.last_day >= start, 1), else_=0)) for start in starts]
        row = (
            await self.execute(
                select(*counts).where(seen.c.last_day >= min(starts), column != NO_ID)
            )
        ).one()
        return tuple(int(value or 0) for value in row)

    async def _top(
        self, daily: Any, monthly: Any, column: str, first: date, today: date
    ) -> list[tuple[int, int, int]]:
        """The TOP subjects by tokens over [first, today], exactly, without summing every
        subject's days: whole calendar months give each subject an upper bound; exact sums
        are taken for the best bounds first, until no bound left can beat the TOP-th sum."""
        months = _months(first, today)
        bound = func.sum(monthly.c.total_tokens).label("bound")
        bounds = (
            select(monthly.c[column], bound)
            .where(monthly.c.month.in_(months), monthly.c[column] != NO_ID)
            .group_by(monthly.c[column])
            .order_by(bound.desc(), monthly.c[column])
        )
        exact: list[tuple[int, int, int]] = []
        step = TOP * 4
        offset = 0
        while True:
            # A page of bounds at a time: usually the first page settles it.
            page = [
                (int(subject), int(ceiling))
                for subject, ceiling in await self.execute(bounds.limit(step).offset(offset))
            ]
            offset += step
            if not page:
                break
            if len(exact) >= TOP and page[0][1] < _ranked(exact)[TOP - 1][2]:
                break
            rows = await self.execute(
                select(daily.c[column], func.sum(daily.c.requests), func.sum(daily.c.total_tokens))
                .where(
                    daily.c[column].in_([subject for subject, _ in page]),
                    daily.c.day >= first,
                    daily.c.day <= today,
                )
                .group_by(daily.c[column])
            )
            exact += [(int(a), int(b), int(c)) for a, b, c in rows]
            if len(page) < step:
                break
        return _ranked(exact)[:TOP]

    async def _subject(
        self, subject: ColumnElement[bool], counterpart: Any, today: date, scope: Scope
    ) -> _Aggregates:
        """One subject's figures from one pass over its ledger rows.

        One pass over one range of the subject's covering index (migration 0003), so no row
        of the ledger itself is read; the day is computed by the database, so no timestamp is
        parsed.
        """
        since = day_start(window_start(today, DAYS))
        until = day_start(today + timedelta(days=1))
        rows = await self.execute(
            select(
                self._day(USAGE.c.created_at),
                counterpart,
                USAGE.c.prompt_tokens,
                USAGE.c.completion_tokens,
                USAGE.c.total_tokens,
                USAGE.c.error_code,
                USAGE.c.first_token_ms,
                USAGE.c.duration_ms,
            ).where(subject, USAGE.c.created_at >= since, USAGE.c.created_at < until)
        )
        totals: dict[tuple[date, Any], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        errors: Counter[tuple[date, int]] = Counter()
        latency: dict[int, Counter[tuple[date, int]]] = {
            FIRST_TOKEN: Counter(),
            DURATION: Counter(),
        }
        for day, other, prompt, completion, total, error, first_ms, duration in rows:
            group = totals[(day, other)]
            group[0] += 1
            group[2] += prompt
            group[3] += completion
            group[4] += total
            if error is not None:
                group[1] += 1
                errors[(day, error)] += 1
                continue
            if first_ms is not None:
                latency[FIRST_TOKEN][(day, latency_bucket(first_ms))] += 1
            if duration is not None:
                latency[DURATION][(day, latency_bucket(duration))] += 1
        return _aggregate(
            [(day, other, *figures) for (day, other), figures in totals.items()],
            [(day, code, count) for (day, code), count in errors.items()],
            {
                metric: [(day, bucket, count) for (day, bucket), count in counter.items()]
                for metric, counter in latency.items()
            },
            today,
            scope,
        )

    def _day(self, column: Any) -> ColumnElement[date]:
        """The UTC day of a timestamp column, as the database computes it."""
        if self.dialect == "sqlite":
            return type_coerce(func.date(column), Date)
        return cast(func.timezone("UTC", column), Date)

    async def _names(self, kind: Literal["user", "chat"], ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        names: dict[int, str] = {}
        if kind == "user":
            query = select(USERS.c.id, USERS.c.username, USERS.c.first_name).where(
                USERS.c.id.in_(ids)
            )
            for user_id, username, first_name in await self.execute(query):
                name = f"@{username}" if username else first_name
                if name:
                    names[int(user_id)] = name
        else:
            chats = select(CHATS.c.id, CHATS.c.title).where(CHATS.c.id.in_(ids))
            for chat_id, title in await self.execute(chats):
                if title:
                    names[int(chat_id)] = title
        return names

    async def _report(
        self, scope: Scope, subject_id: int | None, today: date, data: _Aggregates
    ) -> UsageReport:
        user_names = await self._names("user", [row[0] for row in data.top_users])
        chat_names = await self._names("chat", [row[0] for row in data.top_chats])
        windows = tuple(
            _window(days, window_start(today, days), index, today, data)
            for index, days in enumerate(WINDOWS)
        )
        daily = tuple(
            data.days.get(window_start(today, DAYS) + timedelta(days=n), _DayTotals()).total
            for n in range(DAYS)
        )
        return UsageReport(
            scope=scope,
            subject_id=subject_id,
            today=today,
            windows=windows,
            daily_tokens=daily,
            top_users=tuple(
                Ranked(uid, user_names.get(uid), req, tok) for uid, req, tok in data.top_users
            ),
            top_chats=tuple(
                Ranked(cid, chat_names.get(cid), req, tok) for cid, req, tok in data.top_chats
            ),
        )


def _ranked(entries: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(id, requests, tokens) by tokens, most first; ties by id."""
    return sorted(entries, key=lambda entry: (-entry[2], entry[0]))


def _months(first: date, last: date) -> list[date]:
    """First days of the calendar months from ``first``'s to ``last``'s."""
    months = []
    month = first.replace(day=1)
    while month <= last:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return months


def _window(days: int, start: date, index: int, today: date, data: _Aggregates) -> WindowStats:
    totals = _DayTotals()
    for day, figures in data.days.items():
        if start <= day <= today:
            totals.requests += figures.requests
            totals.failed += figures.failed
            totals.prompt += figures.prompt
            totals.completion += figures.completion
            totals.total += figures.total
    errors: Counter[int] = Counter()
    for day, code, count in data.errors:
        if start <= day <= today:
            errors[code] += count
    percentiles: list[int | None] = []
    for metric in (FIRST_TOKEN, DURATION):
        histogram = [(bucket, counts[index]) for bucket, counts in data.latency.get(metric, [])]
        percentiles += [nearest_rank(histogram, 50), nearest_rank(histogram, 95)]
    return WindowStats(
        days=days,
        requests=totals.requests,
        failed_requests=totals.failed,
        prompt_tokens=totals.prompt,
        completion_tokens=totals.completion,
        total_tokens=totals.total,
        users=data.users[index],
        chats=data.chats[index],
        errors=tuple(sorted(errors.items(), key=lambda item: (-item[1], item[0]))),
        first_token_p50_ms=percentiles[0],
        first_token_p95_ms=percentiles[1],
        duration_p50_ms=percentiles[2],
        duration_p95_ms=percentiles[3],
    )


def _aggregate(
    totals: list[tuple[Any, ...]],
    errors: list[tuple[date, int, int]],
    latency: dict[int, list[tuple[date, int, int]]],
    today: date,
    scope: Scope,
) -> _Aggregates:
    """The rollups' figures from one subject's groups: ``totals`` rows are (day,
    counterpart, requests, failed, prompt, completion, total), the counterpart being the chat
    for a user and the user for a chat."""
    starts = [window_start(today, days) for days in WINDOWS]
    days: dict[date, _DayTotals] = defaultdict(_DayTotals)
    seen: list[set[int]] = [set() for _ in WINDOWS]
    ranked: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for day, counterpart, requests, failed, prompt, completion, total in totals:
        figures = days[day]
        figures.requests += int(requests)
        figures.failed += int(failed)
        figures.prompt += int(prompt)
        figures.completion += int(completion)
        figures.total += int(total)
        if counterpart is not None:
            for index, start in enumerate(starts):
                if day >= start:
                    seen[index].add(counterpart)
            ranked[counterpart][0] += int(requests)
            ranked[counterpart][1] += int(total)
    histograms: dict[int, Counter[tuple[int, int]]] = {}
    for metric, rows in latency.items():
        histograms[metric] = Counter()
        for day, bucket, count in rows:
            histograms[metric][(bucket, _window_index(day, starts))] += count
    top_list = _ranked([(key, value[0], value[1]) for key, value in ranked.items()])[:TOP]
    subject_count = tuple(1 if any(d >= s for d in days) else 0 for s in starts)
    counterpart_count = tuple(len(found) for found in seen)
    return _Aggregates(
        days=dict(days),
        users=subject_count if scope == "user" else counterpart_count,
        chats=counterpart_count if scope == "user" else subject_count,
        top_users=[] if scope == "user" else top_list,
        top_chats=top_list if scope == "user" else [],
        errors=errors,
        latency={metric: _cumulate(counter) for metric, counter in histograms.items()},
    )


def _window_index(day: date, starts: Sequence[date]) -> int:
    """The shortest window ``day`` falls in (starts go from the latest to the earliest)."""
    for index, start in enumerate(starts):
        if day >= start:
            return index
    return len(starts) - 1


def _cumulate(counter: Counter[tuple[int, int]]) -> list[tuple[int, tuple[int, ...]]]:
    """(bucket, shortest window) counts -> (bucket, count in each window), bucket order."""
    per_bucket: dict[int, list[int]] = defaultdict(lambda: [0] * len(WINDOWS))
    for (bucket, shortest), count in counter.items():
        for index in range(shortest, len(WINDOWS)):
            per_bucket[bucket][index] += count
    return [(bucket, tuple(per_bucket[bucket])) for bucket in sorted(per_bucket)]
