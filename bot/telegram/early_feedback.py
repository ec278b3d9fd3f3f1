""" "typing…" the moment a question arrives, before anything is written to the database.

Every question is claimed and stored before its answer starts (:mod:`bot.telegram.dedup`,
:mod:`bot.service.conversation`); when many arrive at once those writes queue, and the asker
would see nothing meanwhile. So a handler that runs after the access gate and before the claim
sends one typing action, at the send scheduler's first priority, for every message the bot is
going to answer (:func:`~bot.telegram.addressing.addressed_question`). The answer's own typing
loop (:class:`~bot.telegram.streaming.TelegramAnswer`) then starts from that moment instead of
sending a second one at once; in a private chat its "Thinking…" draft waits until that
"typing…" fades, and is not sent at all when the first text comes sooner. A copy of an update
that the claim will skip may show "typing…" for a few seconds too: harmless, and cheaper than a
database read first.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatAction, ChatType
from telegram.error import RetryAfter, TelegramError
from telegram.ext import TypeHandler

from bot.telegram.addressing import BotIdentity, addressed_question
from bot.telegram.ptb_types import AnyApplication, AnyContext
from bot.telegram.send_scheduler import Priority, SendScheduler

log = logging.getLogger(__name__)

# After the access gate (-100), before the claim of the update (-1).
EARLY_FEEDBACK_GROUP = -50
MAX_REMEMBERED = 10_000


class EarlyFeedback:
    """Sends the first typing action of a question; remembers when, per chat."""

    def __init__(self, identity: BotIdentity, scheduler: SendScheduler) -> None:
        self._identity = identity
        self._scheduler = scheduler
        self._typed: dict[int, float] = {}

    def register(self, application: AnyApplication) -> None:
        application.add_handler(TypeHandler(Update, self._feedback), group=EARLY_FEEDBACK_GROUP)

    def typed_at(self, chat_id: int) -> float | None:
        """When "typing…" was last sent to the chat by this handler (forgotten once asked)."""
        return self._typed.pop(chat_id, None)

    async def _feedback(self, update: Update, context: AnyContext) -> None:
        message = update.message  # edited messages are not answered again
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        addressed = addressed_question(message, self._identity)
        if addressed is None or not addressed.question:
            return
        chat_id = message.chat.id
        thread_id = message.message_thread_id if message.is_topic_message else None
        await self._scheduler.slot(
            chat_id,
            is_group=message.chat.type != ChatType.PRIVATE,
            kind="action",
            priority=Priority.FIRST,
        )
        try:
            try:
                await context.bot.send_chat_action(
                    chat_id, ChatAction.TYPING, message_thread_id=thread_id
                )
            finally:
                self._scheduler.release()
        except RetryAfter as exc:
            self._scheduler.retry_after(chat_id, "action", exc.retry_after)
            return
        except TelegramError as exc:  # the answer's own typing loop tries again
            log.info("chat %s: first typing action failed: %s", chat_id, exc)
            return
        if len(self._typed) >= MAX_REMEMBERED:
            self._typed.clear()  # answers that never started (refused, say) leave entries
        self._typed[chat_id] = self._scheduler.now()
