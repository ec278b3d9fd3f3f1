"""Repositories, one per aggregate, all bound to one session (one unit of work).

Obtain them from :meth:`storage.database.Database.repositories`; they return frozen DTOs from
:mod:`storage.dto`, never ORM objects.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.dto import Clock
from storage.repositories.chats import ChatRepository
from storage.repositories.conversations import ConversationRepository
from storage.repositories.messages import MessageRepository
from storage.repositories.usage import UsageRepository
from storage.repositories.users import UserRepository


class Repositories:
    """Every repository over one session."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.users = UserRepository(session, clock)
        self.chats = ChatRepository(session, clock)
        self.conversations = ConversationRepository(session, clock)
        self.messages = MessageRepository(session, clock)
        self.usage = UsageRepository(session, clock)


__all__ = [
    "ChatRepository",
    "ConversationRepository",
    "MessageRepository",
    "Repositories",
    "UsageRepository",
    "UserRepository",
]
