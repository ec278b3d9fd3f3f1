"""Claims on Telegram update ids: a re-delivered update is recognised and skipped.

Every update is claimed before any handler runs (one insert that ignores a conflict, so of two
concurrent claims of one id exactly one wins); claims older than a day are forgotten, since
Telegram gives up on an update after 24 hours.
"""

from __future__ import annotations

from datetime import datetime

from storage.backends import Connection
from storage.repositories import Repository
from storage.sql import ASYNC_COMMIT, sql

_CLAIM = (
    "INSERT INTO processed_updates (bot_id, update_id, received_at) "
    "VALUES (:bot, :update, :now) ON CONFLICT (bot_id, update_id) DO NOTHING RETURNING update_id"
)
# An update's first arrival records it; a re-delivery conflicts and returns no row.
CLAIM = sql(_CLAIM, postgres=f"{_CLAIM}, {ASYNC_COMMIT}")
FORGET = sql("DELETE FROM processed_updates WHERE received_at < :before")


class Updates(Repository):
    async def claim(self, bot_id: int, update_id: int) -> bool:
        """Record that ``bot_id`` takes on Telegram update ``update_id`` (committed on return):
        True the first time, False when it was claimed before (a re-delivery)."""
        params = {"bot": bot_id, "update": update_id, "now": self.clock()}

        async def unit(connection: Connection) -> bool:
            return await connection.row(CLAIM, params) is not None

        return await self.backend.write(unit, one_statement=True)

    async def forget(self, before: datetime) -> int:
        """Forget the claims received before ``before`` (pruning); returns how many."""
        params = {"before": before}

        async def unit(connection: Connection) -> int:
            return await connection.execute(FORGET, params)

        return await self.backend.write(unit, one_statement=True)
