"""answers that never reached the user: status ``undelivered``

An answer Spark wrote in full whose final message Telegram never accepted (the Bot API failing
for good, the bot blocked just before delivery) was stored ``complete``. It gets a status of its
own, so statistics and ``/retry`` can tell it from an answer the user saw.

The CHECK constraint on ``messages.status`` gains the new value. PostgreSQL alters it in place.
SQLite cannot alter a constraint; rebuilding ``messages`` would fire its foreign keys' cascades
(``telegram_messages`` rows would go with the old table), so the stored table definition is
rewritten instead, which SQLite documents as safe for a CHECK constraint that every existing row
still satisfies (ALTER TABLE, "making other kinds of table schema changes").

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "status"  # named ck_messages_status by the naming convention
BEFORE = "status IN ('streaming', 'complete', 'partial', 'failed', 'cancelled', 'superseded')"
AFTER = (
    "status IN ('streaming', 'complete', 'partial', 'failed', 'cancelled', 'superseded', "
    "'undelivered')"
)


def _rewrite_sqlite_check(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
    ).scalar_one()
    if old not in sql:
        raise RuntimeError(f"messages table definition has no {old!r}: {sql}")
    (version,) = bind.execute(sa.text("PRAGMA schema_version")).one()
    bind.execute(sa.text("PRAGMA writable_schema = ON"))
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'messages'"),
        {"sql": sql.replace(old, new)},
    )
    # A new schema version makes every connection re-read the definition.
    bind.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    bind.execute(sa.text("PRAGMA writable_schema = OFF"))


def _replace(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite_check(old, new)
    else:
        op.drop_constraint(CONSTRAINT, "messages", type_="check")
        op.create_check_constraint(CONSTRAINT, "messages", new)


def upgrade() -> None:
    _replace(BEFORE, AFTER)


def downgrade() -> None:
    # The older schema knows no such status: such answers were stored as complete.
    op.execute("UPDATE messages SET status = 'complete' WHERE status = 'undelivered'")
    _replace(AFTER, BEFORE)
