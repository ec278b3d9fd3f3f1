"""A question's arrival: the chat and its open conversation, written only when needed.

Every question needs the chat row (model, system prompt, token ratio) and the open
conversation, and Telegram sends the asker's profile and the chat's title each time. Writing
them on every question (user upsert, chat upsert, conversation lookup: one write unit through
the Core repositories) costs more than the turn's own writes. So the hot path reads all of it in
one statement (:meth:`~storage.repositories.turns.TurnRepository.arrival`), and only a new or
changed user, chat, topic or conversation goes through the Core repositories.
"""

from __future__ import annotations

from storage.database import Database
from storage.dto import ChatInfo, ConversationInfo
from storage.repositories.turns import Arrival


async def arrive(database: Database, arrival: Arrival) -> tuple[ChatInfo, ConversationInfo]:
    found = await database.turns.arrival(arrival)
    if found is not None:
        return found
    async with database.repositories() as repos:
        await repos.users.upsert(
            arrival.user_id,
            username=arrival.username,
            first_name=arrival.first_name,
            language_code=arrival.language_code,
        )
        chat = await repos.chats.upsert(
            arrival.chat_id, type=arrival.chat_type, title=arrival.title
        )
        conversation = await repos.conversations.current(
            arrival.chat_id,
            thread_id=arrival.thread_id or None,
            user_id=arrival.scope_user_id or arrival.user_id,
            scope="user" if arrival.scope_user_id else "chat",
        )
    return chat, conversation
