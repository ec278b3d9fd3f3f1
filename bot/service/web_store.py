"""What the web conversations need from storage, as a port: a key's own conversations.

A web conversation is a chat of its own (type ``web``) in the key's block of chat ids
(:func:`web_chat_id`), so history, the model, the system prompt, the token calibration and
Spark's uid work exactly as for a Telegram chat, through the same
:class:`~bot.service.conversation.ConversationService`. The block keeps keys apart: a key
addresses conversations by their number within its own block, and never reaches another's.
Ids from ``2**62`` up are far beyond any Telegram chat id (at most 52 bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.service.conversation import Participant
from storage.dto import StoredMessage

WEB_CHAT_TYPE = "web"
WEB_CHAT_BASE = 1 << 62
NUMBER_BITS = 31  # conversations per key: 2**31 - 1
MAX_KEY_ID = (1 << 30) - 1


def web_chat_id(key_id: int, number: int) -> int:
    """The chat id of conversation ``number`` (1 ..) of key ``key_id``."""
    if not 0 <= key_id <= MAX_KEY_ID or not 0 < number < (1 << NUMBER_BITS):
        raise ValueError(f"no web conversation {number} of key {key_id}")
    return WEB_CHAT_BASE + (key_id << NUMBER_BITS) + number


def key_block(key_id: int) -> tuple[int, int]:
    """The first and last chat id of the key's block."""
    first = web_chat_id(key_id, 1)
    return first, first + (1 << NUMBER_BITS) - 2


@dataclass(frozen=True, slots=True)
class WebConversationInfo:
    number: int  # the id the API shows: 1, 2, … per key
    chat_id: int
    title: str | None
    model: str | None
    system_prompt: str | None
    created_at: datetime


class WebConversationStore(Protocol):
    """A key's conversations: created, listed newest first, read, deleted."""

    async def create(self, key_id: int) -> WebConversationInfo:
        """A new conversation with the next free number of the key's block."""
        ...

    async def page(
        self, key_id: int, *, before: int | None, limit: int
    ) -> list[WebConversationInfo]:
        """Up to ``limit`` conversations numbered below ``before`` (all when None), newest
        first."""
        ...

    async def get(self, key_id: int, number: int) -> WebConversationInfo | None: ...

    async def delete(self, key_id: int, number: int) -> bool:
        """Remove the conversation and its messages (the ledger keeps its rows)."""
        ...

    async def messages(self, chat_id: int) -> list[StoredMessage]:
        """The messages of the chat's open conversation, oldest first."""
        ...

    async def answer_to(self, chat_id: int, question_id: int) -> StoredMessage | None:
        """The newest answer to question ``question_id`` of this chat, if stored."""
        ...

    async def participant(self, user_id: int) -> Participant:
        """The key's user as stored, so that asking leaves its profile as it is."""
        ...
