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

# Every text here is assembled from this module's constants only; values are always bound.
# ruff: noqa: S608
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from storage.backends import Connection
from storage.dto import UserInfo
from storage.repositories import Repository
from storage.repositories.users import USER_COLUMNS, user_info
from storage.sql import Params, Row, Statement, as_date, sql, utc

WINDOWS = (1, 7, 30)
DAYS = max(WINDOWS)
TOP = 5
NO_ID = 0  # how the rollups file a request without a user or chat
FIRST_TOKEN, DURATION = 0, 1

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


def _per_window(condition: str, value: str) -> str:
    """One column per window: ``value`` summed where ``condition`` holds for its start."""
    return ", ".join(
        f"sum(CASE WHEN {condition.format(start=f':start{index}')} THEN {value} ELSE 0 END) "
        f"AS window{index}"
        for index in range(len(WINDOWS))
    )


def _window_params(starts: Sequence[date]) -> dict[str, object]:
    return {f"start{index}": start for index, start in enumerate(starts)}


def _id_list(prefix: str, count: int) -> str:
    return ", ".join(f":{prefix}{index}" for index in range(count))


def _ids(prefix: str, ids: Sequence[int], count: int) -> dict[str, object]:
    """``count`` id parameters; a short list repeats its first id (harmless in IN)."""
    padded = [*ids, *[ids[0]] * (count - len(ids))]
    return {f"{prefix}{index}": value for index, value in enumerate(padded)}


_DAYS = "day >= :first AND day <= :today"
DAILY_TOTALS = sql(
    "SELECT day, requests, failed_requests, prompt_tokens, completion_tokens, total_tokens "
    f"FROM usage_daily WHERE {_DAYS}"
)
DAILY_ERRORS = sql(f"SELECT day, error_code, requests FROM usage_daily_errors WHERE {_DAYS}")
DAILY_LATENCY = sql(
    f"SELECT metric, bucket, {_per_window('day >= {start}', 'requests')} "
    f"FROM usage_daily_latency WHERE {_DAYS} GROUP BY metric, bucket ORDER BY metric, bucket"
)
# Users (or chats) whose last request was on or after each window's start.
ACTIVE = {
    kind: sql(
        f"SELECT {_per_window('last_day >= {start}', '1')} FROM usage_{kind}s_seen "
        f"WHERE last_day >= :first AND {kind}_id <> {NO_ID}"
    )
    for kind in ("user", "chat")
}
BOUND_PAGE = TOP * 4
# Whole calendar months give each subject an upper bound of its sum over the window.
BOUNDS = {
    kind: sql(
        f"SELECT {kind}_id AS subject, sum(total_tokens) AS bound FROM usage_monthly_{kind}s "
        f"WHERE month >= :first_month AND month <= :last_month AND {kind}_id <> {NO_ID} "
        f"GROUP BY {kind}_id ORDER BY bound DESC, {kind}_id LIMIT :limit OFFSET :offset"
    )
    for kind in ("user", "chat")
}
EXACT = {
    kind: sql(
        f"SELECT {kind}_id AS subject, sum(requests) AS requests, sum(total_tokens) AS tokens "
        f"FROM usage_daily_{kind}s WHERE {kind}_id IN ({_id_list('id', BOUND_PAGE)}) "
        f"AND {_DAYS} GROUP BY {kind}_id"
    )
    for kind in ("user", "chat")
}
_SUBJECT = (
    "SELECT {day} AS day, {other}_id AS other, prompt_tokens, completion_tokens, total_tokens, "
    "error_code, first_token_ms, duration_ms FROM usage_records "
    "WHERE {subject}_id = :subject AND created_at >= :since AND created_at < :until"
)
# One pass over one range of the subject's covering index (migration 0003), so no row of the
# ledger itself is read; the UTC day is computed by the database, so no timestamp is parsed.
SUBJECT_ROWS = {
    subject: sql(
        _SUBJECT.format(day="date(created_at)", other=other, subject=subject),
        postgres=_SUBJECT.format(
            day="CAST(timezone('UTC', created_at) AS DATE)", other=other, subject=subject
        ),
    )
    for subject, other in (("user", "chat"), ("chat", "user"))
}
USER_NAMES = sql(f"SELECT id, username, first_name FROM users WHERE id IN ({_id_list('id', TOP)})")
CHAT_NAMES = sql(f"SELECT id, title FROM chats WHERE id IN ({_id_list('id', TOP)})")
USER_BY_ID = sql(f"SELECT {USER_COLUMNS} FROM users WHERE id = :id")
USER_BY_NAME = sql(
    f"SELECT {USER_COLUMNS} FROM users WHERE lower(username) = :name ORDER BY id LIMIT 1"
)
CHAT_STORED = sql("SELECT id FROM chats WHERE id = :chat")
CHAT_IN_LEDGER = sql("SELECT id FROM usage_records WHERE chat_id = :chat LIMIT 1")
_EXPORT = (
    "SELECT r.id AS id, r.created_at AS created_at, r.user_id AS user_id, "
    "u.username AS username, r.chat_id AS chat_id, r.model AS model, "
    "r.prompt_tokens AS prompt_tokens, r.completion_tokens AS completion_tokens, "
    "r.total_tokens AS total_tokens, r.first_token_ms AS first_token_ms, "
    "r.duration_ms AS duration_ms, r.error_code AS error_code, r.sid AS sid "
    "FROM usage_records r LEFT JOIN users u ON u.id = r.user_id WHERE r.created_at >= :since "
    "{after}ORDER BY r.created_at, r.id LIMIT :limit"
)
EXPORT_FIRST = sql(_EXPORT.format(after=""))
EXPORT_AFTER = sql(
    _EXPORT.format(after="AND (r.created_at > :at OR (r.created_at = :at AND r.id > :last_id)) ")
)


def _export_row(row: Row) -> ExportRow:
    return ExportRow(
        id=row["id"],
        created_at=utc(row["created_at"]),
        user_id=row["user_id"],
        username=row["username"],
        chat_id=row["chat_id"],
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        total_tokens=row["total_tokens"],
        first_token_ms=row["first_token_ms"],
        duration_ms=row["duration_ms"],
        error_code=row["error_code"],
        sid=row["sid"],
    )


def _windows(row: Row) -> tuple[int, ...]:
    return tuple(int(row[f"window{index}"] or 0) for index in range(len(WINDOWS)))


class Stats(Repository):
    """Read-only statistics; each method one unit of work."""

    async def overview(self, today: date) -> UsageReport:
        """The whole bot over the last :data:`DAYS` days, from the rollups."""

        async def unit(connection: Connection) -> UsageReport:
            return await _overview(connection, today)

        return await self.backend.read(unit)

    async def for_user(self, user_id: int, today: date) -> UsageReport:
        """One user over the last :data:`DAYS` days, from their ledger rows."""

        async def unit(connection: Connection) -> UsageReport:
            data = await _subject(connection, "user", user_id, today)
            return await _report(connection, "user", user_id, today, data)

        return await self.backend.read(unit)

    async def for_chat(self, chat_id: int, today: date) -> ChatReport:
        """One chat over the last :data:`DAYS` days, from its ledger rows, with the stored
        chat's title; ``report`` None when the chat was never seen (stored, or named in the
        ledger)."""

        async def unit(connection: Connection) -> ChatReport:
            stored = await connection.row(CHAT_STORED, {"chat": chat_id})
            if stored is None and await connection.row(CHAT_IN_LEDGER, {"chat": chat_id}) is None:
                return ChatReport(None, None)
            data = await _subject(connection, "chat", chat_id, today)
            report = await _report(connection, "chat", chat_id, today, data)
            title = (await _names(connection, "chat", [chat_id])).get(chat_id)
            return ChatReport(report, title)

        return await self.backend.read(unit)

    async def find_user(self, reference: int | str) -> UserInfo | None:
        """A known user by numeric id or ``@username`` (case-insensitive).

        Only ASCII digits within signed 64 bits make an id: anything else ("²", a 25-digit
        number) is simply nobody, never a database error.
        """
        if isinstance(reference, str):
            reference = reference.strip()
            if _ID.fullmatch(reference):
                reference = int(reference)
        params: Params
        if isinstance(reference, int):
            if not -(2**63) <= reference < 2**63:
                return None
            statement, params = USER_BY_ID, {"id": reference}
        elif reference.startswith("@") and len(reference) > 1:
            statement, params = USER_BY_NAME, {"name": reference[1:].lower()}
        else:
            return None

        async def unit(connection: Connection) -> UserInfo | None:
            row = await connection.row(statement, params)
            return None if row is None else user_info(row)

        return await self.backend.read(unit)

    async def export_page(
        self, since: datetime, after: tuple[datetime, int] | None, limit: int
    ) -> list[ExportRow]:
        """Ledger rows from ``since`` in (created_at, id) order, after the keyset ``after``
        (the last row's created_at and id).

        Paged so that an export of a million rows never holds one unit of work (or, on
        SQLite, one read snapshot) for its whole length.
        """
        params: dict[str, object] = {"since": since, "limit": limit}
        statement = EXPORT_FIRST
        if after is not None:
            statement = EXPORT_AFTER
            params["at"], params["last_id"] = after

        async def unit(connection: Connection) -> list[ExportRow]:
            return [_export_row(row) for row in await connection.rows(statement, params)]

        return await self.backend.read(unit)


@dataclass(frozen=True, slots=True)
class ChatReport:
    """A chat's report (None: the chat was never seen) and its stored title."""

    report: UsageReport | None
    title: str | None


async def _overview(connection: Connection, today: date) -> UsageReport:
    first = window_start(today, DAYS)
    starts = [window_start(today, days) for days in WINDOWS]
    span = {"first": first, "today": today}
    days: dict[date, _DayTotals] = {}
    for row in await connection.rows(DAILY_TOTALS, span):
        days[as_date(row["day"])] = _DayTotals(
            int(row["requests"]),
            int(row["failed_requests"]),
            int(row["prompt_tokens"]),
            int(row["completion_tokens"]),
            int(row["total_tokens"]),
        )
    active = {"first": min(starts), **_window_params(starts)}
    users = _windows(await _one(connection, ACTIVE["user"], active))
    chats = _windows(await _one(connection, ACTIVE["chat"], active))
    top_users = await _top(connection, "user", first, today)
    top_chats = await _top(connection, "chat", first, today)
    errors = [
        (as_date(row["day"]), int(row["error_code"]), int(row["requests"]))
        for row in await connection.rows(DAILY_ERRORS, span)
    ]
    latency: dict[int, list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
    for row in await connection.rows(DAILY_LATENCY, {**span, **_window_params(starts)}):
        latency[int(row["metric"])].append((int(row["bucket"]), _windows(row)))
    aggregates = _Aggregates(days, users, chats, top_users, top_chats, errors, latency)
    return await _report(connection, "all", None, today, aggregates)


async def _one(connection: Connection, statement: Statement, params: Params) -> Row:
    row = await connection.row(statement, params)
    assert row is not None  # an aggregate without GROUP BY always returns its row
    return row


async def _top(
    connection: Connection, kind: Literal["user", "chat"], first: date, today: date
) -> list[tuple[int, int, int]]:
    """The TOP subjects by tokens over [first, today], exactly, without summing every
    subject's days: whole calendar months give each subject an upper bound; exact sums are
    taken for the best bounds first, until no bound left can beat the TOP-th sum."""
    months = _months(first, today)
    exact: list[tuple[int, int, int]] = []
    offset = 0
    while True:
        # A page of bounds at a time: usually the first page settles it.
        bounds = {
            "first_month": months[0],
            "last_month": months[-1],
            "limit": BOUND_PAGE,
            "offset": offset,
        }
        page = [
            (int(row["subject"]), int(row["bound"]))
            for row in await connection.rows(BOUNDS[kind], bounds)
        ]
        offset += BOUND_PAGE
        if not page:
            break
        if len(exact) >= TOP and page[0][1] < _ranked(exact)[TOP - 1][2]:
            break
        ids = _ids("id", [subject for subject, _ in page], BOUND_PAGE)
        rows = await connection.rows(EXACT[kind], {**ids, "first": first, "today": today})
        exact += [(int(r["subject"]), int(r["requests"]), int(r["tokens"])) for r in rows]
        if len(page) < BOUND_PAGE:
            break
    return _ranked(exact)[:TOP]


async def _subject(
    connection: Connection, kind: Literal["user", "chat"], subject: int, today: date
) -> _Aggregates:
    """One subject's figures from one pass over its ledger rows (:data:`SUBJECT_ROWS`)."""
    params = {
        "subject": subject,
        "since": day_start(window_start(today, DAYS)),
        "until": day_start(today + timedelta(days=1)),
    }
    rows = await connection.rows(SUBJECT_ROWS[kind], params)
    totals: dict[tuple[date, Any], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    errors: Counter[tuple[date, int]] = Counter()
    latency: dict[int, Counter[tuple[date, int]]] = {
        FIRST_TOKEN: Counter(),
        DURATION: Counter(),
    }
    for row in rows:
        when = as_date(row["day"])
        group = totals[(when, row["other"])]
        group[0] += 1
        group[2] += row["prompt_tokens"]
        group[3] += row["completion_tokens"]
        group[4] += row["total_tokens"]
        error = row["error_code"]
        if error is not None:
            group[1] += 1
            errors[(when, error)] += 1
            continue
        first_ms, duration = row["first_token_ms"], row["duration_ms"]
        if first_ms is not None:
            latency[FIRST_TOKEN][(when, latency_bucket(first_ms))] += 1
        if duration is not None:
            latency[DURATION][(when, latency_bucket(duration))] += 1
    return _aggregate(
        [(when, other, *figures) for (when, other), figures in totals.items()],
        [(when, code, count) for (when, code), count in errors.items()],
        {
            metric: [(when, bucket, count) for (when, bucket), count in counter.items()]
            for metric, counter in latency.items()
        },
        today,
        kind,
    )


async def _names(
    connection: Connection, kind: Literal["user", "chat"], ids: list[int]
) -> dict[int, str]:
    names: dict[int, str] = {}
    for start in range(0, len(ids), TOP):
        chunk = _ids("id", ids[start : start + TOP], TOP)
        if kind == "user":
            for row in await connection.rows(USER_NAMES, chunk):
                name = f"@{row['username']}" if row["username"] else row["first_name"]
                if name:
                    names[int(row["id"])] = name
        else:
            for row in await connection.rows(CHAT_NAMES, chunk):
                if row["title"]:
                    names[int(row["id"])] = row["title"]
    return names


async def _report(
    connection: Connection, scope: Scope, subject_id: int | None, today: date, data: _Aggregates
) -> UsageReport:
    user_names = await _names(connection, "user", [entry[0] for entry in data.top_users])
    chat_names = await _names(connection, "chat", [entry[0] for entry in data.top_chats])
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
