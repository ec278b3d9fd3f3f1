"""Repositories, one per aggregate, all bound to one connection in one transaction.

Obtain them from :meth:`storage.database.Database.repositories`; they return frozen DTOs from
:mod:`storage.dto`, never ORM objects.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.dto import Clock
from storage.repositories.api_keys import ApiKeyRepository
from storage.repositories.chats import ChatRepository
from storage.repositories.conversations import ConversationRepository
from storage.repositories.messages import MessageRepository
from storage.repositories.usage import UsageRepository
from storage.repositories.users import UserRepository


class Repositories:
    """Every repository over one connection (one unit of work)."""

    def __init__(self, connection: AsyncConnection, clock: Clock) -> None:
        self.connection = connection
        self.users = UserRepository(connection, clock)
        self.chats = ChatRepository(connection, clock)
        self.conversations = ConversationRepository(connection, clock)
        self.messages = MessageRepository(connection, clock)
        self.usage = UsageRepository(connection, clock)
        self.api_keys = ApiKeyRepository(connection, clock)


__all__ = [
    "ApiKeyRepository",
    "ChatRepository",
    "ConversationRepository",
    "MessageRepository",
    "Repositories",
    "UsageRepository",
    "UserRepository",
]
