"""web conversations: the web front end's conversations, one table, numbers never reused

A web conversation is a chat of type ``web`` whose history, model, system prompt, calibration
and Spark uid are kept like a Telegram chat's. This table gives each one its number (the id
clients use) and its owning API key. Numbers come from AUTOINCREMENT on SQLite and a sequence
on PostgreSQL, so a deleted conversation's number is never handed out again, and its chat id
(``2**62 + id``, above any Telegram chat id) never reappears in the ledger either.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "web_conversations",
        sa.Column("id", Id, nullable=False),
        sa.Column("key_id", Id, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_web_conversations_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_conversations")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_web_conversations_key_id_id"), "web_conversations", ["key_id", "id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_web_conversations_key_id_id"), table_name="web_conversations")
    op.drop_table("web_conversations")
