"""Finishing, in Telegram, a question whose process died (several processes, ``REDIS_URL``).

:class:`~bot.service.shared_lanes.SharedLanes` hands this the first question of a
conversation whose process is gone (killed, no chance to clean up) once that process's lease
lapsed. If its answer had started, the answer stored so far (the last checkpoint) is marked
partial and the asker gets it with the "interrupted" note: in a private chat the text went out
as drafts, which vanish, so it is sent again; in a group the reply edited in place already
shows it, so only the note follows. If it had not started, the question is marked unanswered
and the asker asked to send it again. Either way the conversation's next question is answered
right after, by whichever process took it.
"""

from __future__ import annotations

import logging

from telegram import Bot

from bot.service.conversation import ConversationService
from bot.service.events import Finished
from bot.service.i18n import text
from bot.telegram.asked_in import AskedIn
from bot.telegram.send_scheduler import SendScheduler
from bot.telegram.streaming import ChatTarget, DraftSupport, TelegramAnswer
from coordination.conversation_queue import Entry
from storage.dto import MessageStatus

log = logging.getLogger(__name__)


class OrphanedQuestions:
    """The ``takeover`` of the Telegram front end's shared lanes."""

    def __init__(self, bot: Bot, service: ConversationService, scheduler: SendScheduler) -> None:
        self._bot = bot
        self._service = service
        self._scheduler = scheduler
        self._drafts = DraftSupport()  # unused: the notes are messages, never drafts

    async def __call__(self, key: str, entry: Entry) -> None:
        asked = AskedIn.read(entry.fields)
        if asked is None:
            return
        language = asked.participant.language
        if entry.started:
            stored = await self._service.interrupt_taken_over(asked.participant, asked.place)
            if stored is None:
                return  # it was finished and stored after all: the asker has it
            shown = "" if asked.place.is_group else stored.content
            note = text(language, "footer_interrupted")
        else:
            if asked.question_id is not None:
                await self._service.mark_taken_over_unanswered(asked.question_id, asked.place)
            shown, note = "", text(language, "dropped_at_shutdown")
        delivery = await self._sink(asked).finish(Finished(shown, MessageStatus.PARTIAL, note))
        if not delivery.complete:
            log.warning("chat %s: the note of a taken-over question was not delivered", key)

    def _sink(self, asked: AskedIn) -> TelegramAnswer:
        is_group = asked.place.is_group
        return TelegramAnswer(
            self._bot,
            self._scheduler,
            ChatTarget(
                chat_id=asked.place.chat_id,
                is_group=is_group,
                thread_id=asked.place.thread_id,
                reply_to_message_id=asked.message_id,
            ),
            mode="edit",
            drafts=self._drafts,
            draft_id=0,
        )
