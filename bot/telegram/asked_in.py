"""Where a question was asked, as text fields another process can read back.

With several processes serving the bot (``REDIS_URL``), each question taken goes into its
conversation's shared queue with these fields (:mod:`bot.service.shared_lanes`). If the process
that took it dies, another one reads them to tell the asker what happened: the chat and topic to
write to, the message to reply to, the asker's language and the stored question.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bot.service.conversation import Participant, Place

log = logging.getLogger(__name__)

DRAFT_FIELD = "draft"


@dataclass(frozen=True, slots=True)
class AskedIn:
    """A question's chat, asker and Telegram message."""

    place: Place
    participant: Participant
    message_id: int  # the asker's message, which a note replies to
    question_id: int | None  # the stored question; None for /retry (found at its turn)
    draft_id: int = 0  # the draft its answer streams into (private chats), for the stop button

    def fields(self) -> dict[str, str]:
        return {
            "chat": str(self.place.chat_id),
            "chat_type": self.place.chat_type,
            "thread": str(self.place.thread_id or 0),
            "user": str(self.participant.user_id),
            "language": self.participant.language_code or "",
            "message": str(self.message_id),
            "question": "" if self.question_id is None else str(self.question_id),
            DRAFT_FIELD: str(self.draft_id),
        }

    @classmethod
    def read(cls, fields: Mapping[str, str]) -> AskedIn | None:
        """The fields :meth:`fields` wrote, or None (logged) when they are not that."""
        try:
            thread = int(fields["thread"])
            question = fields["question"]
            return cls(
                place=Place(
                    chat_id=int(fields["chat"]),
                    chat_type=fields["chat_type"],
                    thread_id=thread or None,
                ),
                participant=Participant(
                    user_id=int(fields["user"]), language_code=fields["language"] or None
                ),
                message_id=int(fields["message"]),
                question_id=int(question) if question else None,
                draft_id=int(fields.get(DRAFT_FIELD, "0")),
            )
        except (KeyError, ValueError) as exc:
            log.warning("a queued question's fields are unreadable (%r): %s", exc, sorted(fields))
            return None
