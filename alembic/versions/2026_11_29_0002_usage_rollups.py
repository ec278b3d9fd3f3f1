"""usage rollups: per-day totals, users, chats, error codes and latency histograms

Nine small tables that a trigger on ``usage_records`` keeps up to date on every insert, so
admin statistics over a ledger of millions of rows read a few thousand rollup rows. A trigger
(rather than application code) keeps them exact whoever writes the ledger: the conversation
service, a bulk import, or a test seeding rows. Existing ledger rows are rolled up here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 05:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER = "usage_records_rollup"

# Keep in step with storage.stats.latency_bucket: exact below 100 ms, then steps of half a unit
# of the second significant digit (at most 5 % low, about 1 % typically), so a day holds a few
# hundred buckets per metric.
_BUCKET = """CASE
    WHEN {v} < 100 THEN {v}
    WHEN {v} < 1000 THEN {v} / 5 * 5
    WHEN {v} < 10000 THEN {v} / 50 * 50
    WHEN {v} < 100000 THEN {v} / 500 * 500
    WHEN {v} < 1000000 THEN {v} / 5000 * 5000
    ELSE {v} / 50000 * 50000
END"""

# Tokens per user and per chat, by day and by calendar month: (table, id column, period column,
# primary key). Daily rows are keyed by id first (one subject's days are one index range);
# monthly rows by month first (one month's subjects are one range), as the top-N query
# reads them: upper bounds from whole months, then exact sums for the few best candidates.
_SUBJECTS = (
    ("usage_daily_users", "user_id", "day", ("user_id", "day")),
    ("usage_daily_chats", "chat_id", "day", ("chat_id", "day")),
    ("usage_monthly_users", "user_id", "month", ("month", "user_id")),
    ("usage_monthly_chats", "chat_id", "month", ("month", "chat_id")),
)

# Who was active when: one row per user or chat with the last UTC day it made a request, so
# "active in the last N days" is an index range count however many days and users there are.
_SEEN = (("usage_users_seen", "user_id"), ("usage_chats_seen", "chat_id"))


def _rollup_statements(day: str, month: str, row: str) -> list[str]:
    """The upserts one ledger row ``row`` (NEW in a trigger) makes, dated ``day`` (and
    ``month``, the first day of its month)."""
    failed = f"CASE WHEN {row}.error_code IS NULL THEN 0 ELSE 1 END"
    statements = [
        f"""INSERT INTO usage_daily
            (day, requests, failed_requests, prompt_tokens, completion_tokens, total_tokens)
        VALUES ({day}, 1, {failed}, {row}.prompt_tokens, {row}.completion_tokens,
                {row}.total_tokens)
        ON CONFLICT (day) DO UPDATE SET
            requests = usage_daily.requests + 1,
            failed_requests = usage_daily.failed_requests + excluded.failed_requests,
            prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
            total_tokens = usage_daily.total_tokens + excluded.total_tokens""",
    ]
    for table, column, period, key in _SUBJECTS:
        when = day if period == "day" else month
        statements.append(
            f"""INSERT INTO {table} ({period}, {column}, requests, total_tokens)
            VALUES ({when}, COALESCE({row}.{column}, 0), 1, {row}.total_tokens)
            ON CONFLICT ({", ".join(key)}) DO UPDATE SET
                requests = {table}.requests + 1,
                total_tokens = {table}.total_tokens + excluded.total_tokens"""
        )
    for table, column in _SEEN:
        statements.append(
            f"""INSERT INTO {table} ({column}, last_day)
            VALUES (COALESCE({row}.{column}, 0), {day})
            ON CONFLICT ({column}) DO UPDATE SET last_day = excluded.last_day
            WHERE excluded.last_day > {table}.last_day"""
        )
    statements.append(
        f"""INSERT INTO usage_daily_errors (day, error_code, requests)
        SELECT {day}, {row}.error_code, 1 WHERE {row}.error_code IS NOT NULL
        ON CONFLICT (day, error_code) DO UPDATE
        SET requests = usage_daily_errors.requests + 1"""
    )
    for metric, column in ((0, "first_token_ms"), (1, "duration_ms")):
        value = f"{row}.{column}"
        statements.append(
            f"""INSERT INTO usage_daily_latency (day, metric, bucket, requests)
            SELECT {day}, {metric}, {_BUCKET.format(v=value)}, 1
            WHERE {row}.error_code IS NULL AND {value} IS NOT NULL
            ON CONFLICT (day, metric, bucket) DO UPDATE
            SET requests = usage_daily_latency.requests + 1"""
        )
    return statements


def _create_tables() -> None:
    zero = sa.text("0")
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("requests", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("failed_requests", sa.Integer(), server_default=zero, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), server_default=zero, nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_usage_daily")),
    )
    for table, column, period, key in _SUBJECTS:
        op.create_table(
            table,
            sa.Column(column, sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column(period, sa.Date(), nullable=False),
            sa.Column("requests", sa.Integer(), server_default=zero, nullable=False),
            sa.Column("total_tokens", sa.BigInteger(), server_default=zero, nullable=False),
            sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{table}")),
        )
    for table, column in _SEEN:
        op.create_table(
            table,
            sa.Column(column, sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("last_day", sa.Date(), nullable=False),
            sa.PrimaryKeyConstraint(column, name=op.f(f"pk_{table}")),
        )
        op.create_index(op.f(f"ix_{table}_last_day"), table, ["last_day"])
    op.create_table(
        "usage_daily_errors",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("error_code", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("requests", sa.Integer(), server_default=zero, nullable=False),
        sa.PrimaryKeyConstraint("day", "error_code", name=op.f("pk_usage_daily_errors")),
    )
    op.create_table(
        "usage_daily_latency",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("requests", sa.Integer(), server_default=zero, nullable=False),
        sa.PrimaryKeyConstraint("day", "metric", "bucket", name=op.f("pk_usage_daily_latency")),
    )


def _backfill(day_of: str, month_of: str) -> None:
    """Roll up the rows already in the ledger, with the same arithmetic as the trigger."""
    day = day_of.format(column="created_at")
    month = month_of.format(column="created_at")
    failed = "CASE WHEN error_code IS NULL THEN 0 ELSE 1 END"
    op.execute(
        f"""INSERT INTO usage_daily
            (day, requests, failed_requests, prompt_tokens, completion_tokens, total_tokens)
        SELECT {day}, COUNT(*), SUM({failed}), SUM(prompt_tokens), SUM(completion_tokens),
               SUM(total_tokens)
        FROM usage_records GROUP BY {day}"""
    )
    for table, column, period, _key in _SUBJECTS:
        when = day if period == "day" else month
        op.execute(
            f"""INSERT INTO {table} ({period}, {column}, requests, total_tokens)
            SELECT {when}, COALESCE({column}, 0), COUNT(*), SUM(total_tokens)
            FROM usage_records GROUP BY {when}, COALESCE({column}, 0)"""
        )
    for table, column in _SEEN:
        op.execute(
            f"""INSERT INTO {table} ({column}, last_day)
            SELECT COALESCE({column}, 0), MAX({day}) FROM usage_records
            GROUP BY COALESCE({column}, 0)"""
        )
    op.execute(
        f"""INSERT INTO usage_daily_errors (day, error_code, requests)
        SELECT {day}, error_code, COUNT(*) FROM usage_records
        WHERE error_code IS NOT NULL GROUP BY {day}, error_code"""
    )
    for metric, column in ((0, "first_token_ms"), (1, "duration_ms")):
        bucket = _BUCKET.format(v=column)
        op.execute(
            f"""INSERT INTO usage_daily_latency (day, metric, bucket, requests)
            SELECT {day}, {metric}, {bucket}, COUNT(*) FROM usage_records
            WHERE error_code IS NULL AND {column} IS NOT NULL
            GROUP BY {day}, {bucket}"""
        )


def upgrade() -> None:
    _create_tables()
    if op.get_bind().dialect.name == "postgresql":
        day_of = "(({column}) AT TIME ZONE 'UTC')::date"
        month_of = "date_trunc('month', ({column}) AT TIME ZONE 'UTC')::date"
        _backfill(day_of, month_of)
        body = ";\n    ".join(_rollup_statements("day_", "month_", "NEW"))
        op.execute(
            f"""CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    day_ date := (NEW.created_at AT TIME ZONE 'UTC')::date;
    month_ date := date_trunc('month', NEW.created_at AT TIME ZONE 'UTC')::date;
BEGIN
    {body};
    RETURN NULL;
END
$$"""
        )
        op.execute(
            f"""CREATE TRIGGER {TRIGGER} AFTER INSERT ON usage_records
            FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"""
        )
    else:
        # SQLite keeps created_at as "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC.
        day_of = "date({column})"
        month_of = "date({column}, 'start of month')"
        _backfill(day_of, month_of)
        body = ";\n    ".join(
            _rollup_statements(
                "date(NEW.created_at)", "date(NEW.created_at, 'start of month')", "NEW"
            )
        )
        op.execute(
            f"""CREATE TRIGGER {TRIGGER} AFTER INSERT ON usage_records
BEGIN
    {body};
END"""
        )


def downgrade() -> None:
    op.execute(
        f"DROP TRIGGER IF EXISTS {TRIGGER}"
        + (" ON usage_records" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {TRIGGER}()")
    for table in (
        "usage_daily_latency",
        "usage_daily_errors",
        "usage_chats_seen",
        "usage_users_seen",
        "usage_monthly_chats",
        "usage_monthly_users",
        "usage_daily_chats",
        "usage_daily_users",
        "usage_daily",
    ):
        op.drop_table(table)
