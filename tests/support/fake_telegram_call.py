"""One Bot API request being served: typed parameter access and Telegram's shared checks.

Every method handler receives an `ApiCall`; the checks that many methods share (formatted text
with its limits, the chat, the replied-to message, the forum thread) live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.fake_telegram_entities import (
    UserLookup,
    normalized,
    trim,
    utf16_len,
    validate_entities,
)
from tests.support.fake_telegram_errors import BotApiError, JsonDict
from tests.support.fake_telegram_limits import FloodControl, FloodKind
from tests.support.fake_telegram_markdown import parse_markdown, parse_markdown_v2
from tests.support.fake_telegram_markup import parse_html
from tests.support.fake_telegram_state import ChatState, FakeState, StoredMessage, now_unix

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


@dataclass(slots=True)
class ApiCall:
    method: str
    params: JsonDict
    state: FakeState
    flood: FloodControl
    at: float

    def chat(self) -> ChatState:
        if self.params.get("chat_id") in (None, ""):
            raise BotApiError.bad_request("chat_id is empty")
        return self.state.chat(self.params["chat_id"])

    def int_param(self, name: str, *, required: bool = True) -> int | None:
        value = self.params.get(name)
        if value is None or value == "":
            if required:
                raise BotApiError.bad_request(f"Bad Request: {name} is empty")
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise BotApiError.bad_request(f"Bad Request: field {name!r} must be an integer")
        try:
            return int(value)
        except ValueError:
            raise BotApiError.bad_request(
                f"Bad Request: field {name!r} must be an integer"
            ) from None

    def flag(self, name: str) -> bool:
        return self.params.get(name) in (True, "true", "True", 1, "1")

    def charge(self, chat: ChatState, kind: FloodKind = "message") -> None:
        self.flood.charge(chat.id, kind, chat.is_group)

    def formatted(
        self,
        text_key: str = "text",
        entities_key: str = "entities",
        *,
        limit: int = TEXT_LIMIT,
        allow_empty: bool = False,
    ) -> tuple[str, list[JsonDict]]:
        """Text and entities after parse_mode/entities, trimmed and checked like Telegram."""
        raw = self.params.get(text_key)
        source = "" if raw is None else raw if isinstance(raw, str) else str(raw)
        explicit = self.params.get(entities_key)
        parse_mode = self.params.get("parse_mode")
        if explicit:
            entities = validate_entities(source, explicit, self.state.user)
            text = source
        elif isinstance(parse_mode, str) and parse_mode:
            text, entities = parse(source, parse_mode, self.state.user)
        else:
            text, entities = source, []
        text, entities = trim(text, entities)
        what = "message caption" if text_key == "caption" else "message"
        if not text and not allow_empty:
            raise BotApiError.bad_request("message text is empty")
        if utf16_len(text) > limit:
            raise BotApiError.bad_request(f"{what} is too long")
        return text, normalized(entities)

    def reply_target(self, chat: ChatState) -> StoredMessage | None:
        reply_id: Any = self.params.get("reply_to_message_id")
        allow = self.flag("allow_sending_without_reply")
        parameters = self.params.get("reply_parameters")
        if isinstance(parameters, dict):
            reply_id = parameters.get("message_id")
            allow = allow or parameters.get("allow_sending_without_reply") is True
        if reply_id is None:
            return None
        message = chat.live_message(reply_id)
        if message is None and not allow:
            raise BotApiError.bad_request("message to be replied not found")
        return message

    def thread(self, chat: ChatState, reply: StoredMessage | None) -> int | None:
        thread_id = self.int_param("message_thread_id", required=False)
        if thread_id is None and reply is not None:
            # A reply lands in the thread of the message it answers.
            thread_id = reply.message_thread_id
        if thread_id is not None and chat.is_forum and thread_id not in chat.topics:
            raise BotApiError.bad_request("message thread not found")
        return thread_id

    def bot_message(
        self,
        chat: ChatState,
        reply: StoredMessage | None,
        thread_id: int | None,
        **fields: Any,
    ) -> StoredMessage:
        """Store a new message from the bot in `chat` and return it."""
        topic = chat.is_forum and thread_id is not None
        reply_id = reply.message_id if reply is not None else None
        if topic and reply_id is None:
            # In forum topics Telegram points reply_to_message at the topic's first message.
            reply_id = thread_id
        message = StoredMessage(
            chat_id=chat.id,
            message_id=chat.next_message_id(),
            sender=dict(self.state.bot_user),
            date=now_unix(),
            from_bot=True,
            reply_to_message_id=reply_id,
            message_thread_id=thread_id,
            is_topic_message=topic,
            reply_markup=self.params.get("reply_markup") or None,
            **fields,
        )
        if message.text is not None:
            message.versions.append(message.text)
        chat.messages[message.message_id] = message
        chat.last_bot_send_at = self.at
        return message


def parse(text: str, parse_mode: str, users: UserLookup) -> tuple[str, list[JsonDict]]:
    """Text and entities for a parse_mode; Telegram accepts the mode names in any case."""
    mode = parse_mode.lower()
    if mode == "html":
        return parse_html(text, users)
    if mode == "markdownv2":
        return parse_markdown_v2(text, users)
    if mode == "markdown":
        return parse_markdown(text, users)
    raise BotApiError.bad_request(f"unsupported parse_mode {parse_mode!r}")


Handler = Callable[[ApiCall], Any]
