"""covering ledger indexes for one user's or one chat's statistics

``/stats user`` and ``/stats chat`` read a subject's ledger rows of the last 30 days. Through
the ``(user_id | chat_id, created_at)`` indexes each row cost one random read into the ledger;
with the figures the report needs in the index as well, the read is one range of the index
(an index-only scan). The indexes keep their names and gain columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIGURES = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "error_code",
    "first_token_ms",
    "duration_ms",
)
# (index, subject column, counterpart column)
SUBJECTS = (
    ("ix_usage_records_user_id_created_at", "user_id", "chat_id"),
    ("ix_usage_records_chat_id_created_at", "chat_id", "user_id"),
)


def upgrade() -> None:
    for name, subject, counterpart in SUBJECTS:
        op.drop_index(name, table_name="usage_records")
        op.create_index(
            name, "usage_records", [subject, "created_at", counterpart, *FIGURES]
        )


def downgrade() -> None:
    for name, subject, _ in SUBJECTS:
        op.drop_index(name, table_name="usage_records")
        op.create_index(name, "usage_records", [subject, "created_at"])
