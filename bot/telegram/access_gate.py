"""The one access check in front of every handler.

:class:`AccessGate` is registered as a ``TypeHandler`` in a handler group that runs before all
others, so every update (questions, commands of every kind, admin commands, media, edits,
button presses, the bot being added to a group) meets
:class:`~bot.telegram.access.AccessPolicy` once, before any handler sees it. A refused update
goes no further (``ApplicationHandlerStop``): a refused group is left or ignored, as
UNAUTHORIZED_GROUP_ACTION says; a refused user who spoke to the bot is told once. Handlers
therefore never check access themselves.
"""

from __future__ import annotations

import logging

from telegram import CallbackQuery, Chat, Update, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop, TypeHandler

from bot.service.i18n import language_of, text
from bot.telegram.access import AccessPolicy, Verdict
from bot.telegram.addressing import BotIdentity, speaks_to_bot
from bot.telegram.budgeted_reply import reply_budgeted
from bot.telegram.ptb_types import AnyApplication, AnyContext
from bot.telegram.send_scheduler import SendScheduler

log = logging.getLogger(__name__)

# Before every other handler group (the re-delivery check is -1, the handlers 0 and up): a
# refused update costs no database write.
ACCESS_GROUP = -100
_GONE = (ChatMemberStatus.LEFT, ChatMemberStatus.BANNED)


class AccessGate:
    """Applies the access policy to every update; refused ones stop here."""

    def __init__(
        self, policy: AccessPolicy, identity: BotIdentity, scheduler: SendScheduler
    ) -> None:
        self._policy = policy
        self._identity = identity
        self._scheduler = scheduler

    def register(self, application: AnyApplication) -> None:
        application.add_handler(TypeHandler(Update, self.check), group=ACCESS_GROUP)

    async def check(self, update: Update, context: AnyContext) -> None:
        chat, user = update.effective_chat, update.effective_user
        if chat is None and user is None:
            return  # e.g. a draft's stop button: it only ever stops the bot's own answers
        if _bot_removed(update):
            return  # the bot is out of that chat already: nothing to leave or answer
        person = user if user is not None and not user.is_bot else None
        if chat is None:
            assert user is not None
            # Inline queries and the like: the user alone is judged, as in a private chat.
            verdict = self._policy.check(user.id, user.id, ChatType.PRIVATE, addressed=False)
        else:
            verdict = self._policy.check(
                person.id if person is not None else None,
                chat.id,
                chat.type,
                addressed=person is not None and self._addressed(update),
            )
        if verdict.allowed:
            return
        # One line when the bot does something about it; plain ignoring stays quiet, since a
        # refused group with privacy mode off sends every message it has.
        log.log(
            logging.INFO if verdict.leave_chat or verdict.notify else logging.DEBUG,
            "update refused by the access policy: chat %s user %s%s",
            chat.id if chat is not None else None,
            user.id if user is not None else None,
            " (leaving the chat)" if verdict.leave_chat else "",
        )
        if chat is not None:
            await self._refuse(update, chat, person, verdict, context)
        raise ApplicationHandlerStop

    def _addressed(self, update: Update) -> bool:
        """A new message meant for the bot, or a press of one of its buttons: worth telling
        the refused user why nothing happens. Edits and chatter are not."""
        if update.callback_query is not None:
            return True
        return update.message is not None and speaks_to_bot(update.message, self._identity)

    async def _refuse(
        self,
        update: Update,
        chat: Chat,
        person: User | None,
        verdict: Verdict,
        context: AnyContext,
    ) -> None:
        if verdict.leave_chat and chat.type != ChatType.PRIVATE:
            try:
                await context.bot.leave_chat(chat.id)
            except TelegramError as exc:
                log.warning("could not leave chat %s: %s", chat.id, exc)
            return
        if not verdict.notify or person is None:
            return
        body = text(language_of(person.language_code), "not_allowed")
        if update.callback_query is not None:
            await _answer_press(update.callback_query, body)
        elif update.message is not None:
            await reply_budgeted(self._scheduler, update.message, body)


async def _answer_press(query: CallbackQuery, body: str) -> None:
    try:
        await query.answer(body, show_alert=True)
    except TelegramError as exc:
        log.warning("could not answer a refused button press: %s", exc)


def _bot_removed(update: Update) -> bool:
    change = update.my_chat_member
    return change is not None and change.new_chat_member.status in _GONE
