"""The stop button on a streaming draft (Bot API 10.3).

Drafts are sent with ``can_stop``: Telegram shows the user a stop button, and a press arrives
as a ``stopped_message_generation`` update naming the chat and the draft. python-telegram-bot
22.8 predates it, so the update's payload is read from ``Update.api_kwargs``, and the update
type must be asked for explicitly in ``allowed_updates``.

:class:`StoppableAnswers` remembers which draft belongs to which conversation's running
answer; a press cancels that answer exactly as ``/stop`` does. A press for a draft that is no
longer being written (the answer just finished) is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.ext import BaseHandler

log = logging.getLogger(__name__)

STOPPED_GENERATION = "stopped_message_generation"
# Sent with every draft: show the stop button, and keep the draft on screen when pressed
# until the final message (partial text and "Stopped") replaces it.
DRAFT_STOP_OPTIONS = {"can_stop": True, "keep_on_stop": True}


@dataclass(frozen=True, slots=True)
class GenerationStopped:
    chat_id: int
    draft_id: int
    thread_id: int | None = None


def generation_stopped(update: object) -> GenerationStopped | None:
    """The stop press an update carries, if it is one (and well-formed)."""
    if not isinstance(update, Update):
        return None
    payload = update.api_kwargs.get(STOPPED_GENERATION)
    if not isinstance(payload, dict):
        return None
    chat = payload.get("chat")
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    draft_id = payload.get("draft_id")
    if not isinstance(chat_id, int) or not isinstance(draft_id, int):
        return None
    thread_id = payload.get("message_thread_id")
    return GenerationStopped(chat_id, draft_id, thread_id if isinstance(thread_id, int) else None)


class StoppableAnswers:
    """Which conversation lane is writing which draft, while it writes it."""

    def __init__(self) -> None:
        self._lanes: dict[tuple[int, int], str] = {}

    def add(self, chat_id: int, draft_id: int, lane: str) -> None:
        self._lanes[(chat_id, draft_id)] = lane

    def discard(self, chat_id: int, draft_id: int) -> None:
        self._lanes.pop((chat_id, draft_id), None)

    def lane_of(self, stopped: GenerationStopped) -> str | None:
        return self._lanes.get((stopped.chat_id, stopped.draft_id))


Callback = Callable[[GenerationStopped], Awaitable[None]]


class GenerationStoppedHandler(BaseHandler[Update, Any, None]):
    """Handles ``stopped_message_generation`` updates, which ptb 22.8 has no handler for."""

    def __init__(self, callback: Callback) -> None:
        async def handle(update: Update, context: Any) -> None:
            stopped = generation_stopped(update)
            if stopped is not None:
                await callback(stopped)

        super().__init__(handle)

    def check_update(self, update: object) -> bool:
        return generation_stopped(update) is not None
