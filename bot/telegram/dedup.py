"""Re-delivered updates: every Telegram update id is handled once, across restarts too.

Telegram sends an update again when the webhook answered with an error or too late, or when a
poll never confirmed it (the bot died between receiving it and the next ``getUpdates``).
Handled twice, a question would cost two Spark requests and be stored and answered twice.

:class:`UpdateDeduplicator` is a handler in a group of its own that runs before every other
(:data:`DEDUP_GROUP`; webhook and polling both feed ``Application.process_update``). It claims
the update's id in the database, which is atomic, so a copy arriving while the first is still
being handled loses too; a copy that loses stops the update there with one INFO line.

The claim comes before the work: an update whose handling the bot did not finish (a crash
mid-answer) is not handled again; the interrupted answer is marked at the next start instead.
If the claim itself fails (the database is away), the update is handled anyway with a
WARNING: a rare second answer is better than a question silently dropped, and the handlers
then meet the same fault and apologise to the user.

Claims older than :data:`RETENTION` are forgotten, at most once per :data:`PRUNE_EVERY`, by the
update that finds the time has come: Telegram keeps an undelivered update 24 hours at most.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes, TypeHandler

from bot.telegram.ptb_types import AnyApplication
from storage.database import Database

log = logging.getLogger(__name__)

# Before the handlers (group 0); -100 stays free for an access gate that runs first.
DEDUP_GROUP = -1
RETENTION = timedelta(hours=24)
PRUNE_EVERY = timedelta(minutes=1)


class UpdateDeduplicator:
    """Claims each update's id for ``bot_id`` and stops the updates claimed before."""

    def __init__(
        self,
        database: Database,
        bot_id: int,
        *,
        retention: timedelta = RETENTION,
        prune_every: timedelta = PRUNE_EVERY,
    ) -> None:
        self._database = database
        self._bot_id = bot_id
        self._retention = retention
        self._prune_every = prune_every
        self._next_prune: datetime | None = None  # the first update prunes

    def register(self, application: AnyApplication) -> None:
        application.add_handler(TypeHandler(Update, self._check), group=DEDUP_GROUP)

    async def _check(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self.first_time(update.update_id):
            log.info("update %d already handled, skipped", update.update_id)
            raise ApplicationHandlerStop

    async def first_time(self, update_id: int) -> bool:
        """Whether ``update_id`` is new to this bot (claimed now), else a re-delivery."""
        try:
            claimed = await self._database.updates.claim(self._bot_id, update_id)
        except Exception as exc:  # the database is away: handle it rather than drop it
            log.warning(
                "update %d: could not record it as handled (%s: %s); handling it anyway, "
                "a re-delivery of it would be answered again",
                update_id,
                type(exc).__name__,
                exc,
            )
            return True
        await self._prune_if_due()
        return claimed

    async def _prune_if_due(self) -> None:
        now = self._database.clock()
        if self._next_prune is not None and now < self._next_prune:
            return
        # Set before the await: updates arriving meanwhile do not prune as well.
        self._next_prune = now + self._prune_every
        try:
            forgotten = await self._database.updates.forget(now - self._retention)
        except Exception as exc:  # tried again at the next due time; claims still work
            log.warning(
                "could not forget handled update ids older than %s (%s: %s)",
                self._retention,
                type(exc).__name__,
                exc,
            )
            return
        if forgotten:
            log.debug("forgot %d handled update ids older than %s", forgotten, self._retention)
