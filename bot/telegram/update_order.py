"""Updates in arrival order within a chat, concurrently across chats.

:class:`PerChatUpdateProcessor` plugs into python-telegram-bot. Handlers are quick: they store
the question and hand the answer to a lane (:mod:`bot.service.lanes`), so holding a chat's
updates in order costs little while an answer streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor


def update_chat_key(update: object) -> Hashable | None:
    """The chat an update belongs to, or None for chat-less updates."""
    if isinstance(update, Update):
        chat = update.effective_chat
        if chat is not None:
            return chat.id
        user = update.effective_user
        if user is not None:
            return ("user", user.id)
    return None


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Concurrent across chats, ordered within a chat."""

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._waiting: dict[Hashable, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = update_chat_key(update)
        if key is None:
            await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                # Nobody else holds or waits for it: forget the lock so idle chats cost nothing.
                del self._waiting[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to allocate."""

    async def shutdown(self) -> None:
        """Nothing to free."""
