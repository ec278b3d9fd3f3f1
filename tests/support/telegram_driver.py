"""The user side of the Bot API fake: people, chats, and the updates their actions produce.

`TelegramDriver` builds updates in Telegram's exact shapes (entities in UTF-16 units, full
reply_to_message objects, forum topic fields, media with file ids) and queues them in a
`FakeTelegram`, where the bot's long polling picks them up. Like Telegram's servers, it marks
commands, mentions, hashtags and links in user texts as entities.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_entities import index_to_utf16, utf16_len
from tests.support.fake_telegram_errors import JsonDict
from tests.support.fake_telegram_state import ChatState, StoredMessage, now_unix

_AUTO_ENTITIES = re.compile(
    r"(?P<bot_command>(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w/]))"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{4,32}(?!\w))"
    r"|(?P<hashtag>(?<![\w#])#\w*[^\W\d_]\w*)"
    r"|(?P<url>https?://[^\s<>\"]+[^\s<>\".,;:!?)\]'])"
)


def detect_entities(text: str) -> list[JsonDict]:
    """Entities Telegram adds to a user's text: commands, mentions, hashtags, links."""
    entities = []
    for match in _AUTO_ENTITIES.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        offset = index_to_utf16(text, match.start())
        entities.append({"type": kind, "offset": offset, "length": utf16_len(match.group(0))})
    return entities


@dataclass(frozen=True, slots=True)
class TgUser:
    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = "en"

    def to_json(self) -> JsonDict:
        body: JsonDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        return body


@dataclass(frozen=True, slots=True)
class TgChat:
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    is_forum: bool = False

    def to_json(self) -> JsonDict:
        body: JsonDict = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.is_forum:
            body["is_forum"] = True
        return body


class TelegramDriver:
    """Acts as Telegram users: every send/edit becomes an update the bot can poll."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self._user_ids = itertools.count(10_001)
        self._group_ids = itertools.count(1)

    # -- people and chats ------------------------------------------------------------------

    def user(
        self,
        id: int | None = None,  # Telegram's field name
        first_name: str = "Alice",
        username: str | None = None,
        language_code: str | None = "en",
        last_name: str | None = None,
    ) -> TgUser:
        user = TgUser(
            id if id is not None else next(self._user_ids),
            first_name,
            username,
            last_name,
            language_code,
        )
        self.fake.state.users[user.id] = user.to_json()
        return user

    def private_chat(self, user: TgUser) -> TgChat:
        chat = TgChat(user.id, "private", username=user.username, first_name=user.first_name)
        self.fake.state.add_chat(chat.to_json()).members[user.id] = "member"
        return chat

    def group(
        self,
        title: str,
        id: int | None = None,  # Telegram's field name
        forum: bool = False,
        *,
        supergroup: bool | None = None,
        username: str | None = None,
    ) -> TgChat:
        """A group chat (ids are negative; supergroups and forums -100…)."""
        is_super = forum if supergroup is None else supergroup or forum
        number = next(self._group_ids)
        chat_id = id if id is not None else (-1_000_000_000_000 - number if is_super else -number)
        chat = TgChat(
            chat_id,
            "supergroup" if is_super else "group",
            title=title,
            username=username,
            is_forum=forum,
        )
        self.fake.state.add_chat(chat.to_json())
        return chat

    def join(self, chat: TgChat, user: TgUser, status: str = "member") -> None:
        """Make `user` a member of `chat` with a status (member, administrator, creator)."""
        self._chat(chat).members[user.id] = status

    # -- messages ----------------------------------------------------------------------------

    def _chat(self, chat: TgChat) -> ChatState:
        return self.fake.chat(chat.id)

    def _new_message(
        self,
        chat: TgChat,
        user: TgUser,
        *,
        reply_to: int | None,
        thread_id: int | None,
        **fields: Any,
    ) -> JsonDict:
        state = self._chat(chat)
        state.members.setdefault(user.id, "member")
        if reply_to is not None and reply_to not in state.messages:
            raise ValueError(f"message {reply_to} does not exist in chat {chat.id}")
        topic = state.is_forum and thread_id is not None
        if topic and thread_id not in state.topics:
            raise ValueError(f"no topic {thread_id} in chat {chat.id}; create_topic first")
        if thread_id is None and reply_to is not None:
            thread_id = state.messages[reply_to].message_thread_id
            topic = state.is_forum and thread_id is not None
        message = StoredMessage(
            chat_id=chat.id,
            message_id=state.next_message_id(),
            sender=user.to_json(),
            date=now_unix(),
            from_bot=False,
            # Messages in a forum topic reply to the topic's first message unless told else.
            reply_to_message_id=reply_to if reply_to is not None or not topic else thread_id,
            message_thread_id=thread_id,
            is_topic_message=topic,
            **fields,
        )
        if message.text is not None:
            message.versions.append(message.text)
        state.messages[message.message_id] = message
        payload = state.message_json(message)
        self.fake.push_update("message", payload)
        return payload

    async def send_text(
        self,
        chat: TgChat,
        user: TgUser,
        text: str,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
        entities: list[JsonDict] | None = None,
    ) -> JsonDict:
        """A text message; entities default to what Telegram detects in the text."""
        return self._new_message(
            chat,
            user,
            reply_to=reply_to,
            thread_id=thread_id,
            text=text,
            entities=detect_entities(text) if entities is None else entities,
        )

    async def send_command(
        self,
        chat: TgChat,
        user: TgUser,
        text: str,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> JsonDict:
        """A command such as "/ask@spark_test_bot what is…" (a bot_command entity at 0)."""
        if not text.startswith("/"):
            raise ValueError(f"a command starts with '/': {text!r}")
        return await self.send_text(chat, user, text, reply_to=reply_to, thread_id=thread_id)

    async def stop_generation(self, chat: TgChat) -> JsonDict:
        """The user presses the stop button on the draft on screen (Bot API 10.3)."""
        drafts = self.fake.drafts(chat.id)
        if not drafts:
            raise ValueError(f"no draft on screen in chat {chat.id}")
        draft = drafts[-1]
        if not draft.can_stop:
            raise ValueError(f"draft {draft.draft_id} was sent without can_stop: no stop button")
        payload: JsonDict = {"chat": chat.to_json(), "draft_id": draft.draft_id}
        if draft.message_thread_id is not None:
            payload["message_thread_id"] = draft.message_thread_id
        return self.fake.push_update("stopped_message_generation", payload)

    async def send_mention(
        self,
        chat: TgChat,
        user: TgUser,
        text: str,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> JsonDict:
        """A text that @mentions the bot (a mention entity, UTF-16 offsets)."""
        if f"@{self.fake.bot_username}".lower() not in text.lower():
            raise ValueError(f"text does not mention @{self.fake.bot_username}: {text!r}")
        return await self.send_text(chat, user, text, reply_to=reply_to, thread_id=thread_id)

    async def send_text_mention(
        self,
        chat: TgChat,
        user: TgUser,
        text: str,
        bot_offset: int,
        bot_length: int,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> JsonDict:
        """A text_mention of the bot at text[bot_offset:bot_offset + bot_length] (Python
        indices; converted to UTF-16 units like a real client does)."""
        entity = {
            "type": "text_mention",
            "offset": index_to_utf16(text, bot_offset),
            "length": utf16_len(text[bot_offset : bot_offset + bot_length]),
            "user": dict(self.fake.state.bot_user),
        }
        entities = sorted([*detect_entities(text), entity], key=lambda e: e["offset"])
        return await self.send_text(
            chat, user, text, reply_to=reply_to, thread_id=thread_id, entities=entities
        )

    async def send_sticker(
        self, chat: TgChat, user: TgUser, emoji: str = "🙂", *, thread_id: int | None = None
    ) -> JsonDict:
        record = self.fake.state.store_file(b"RIFFsticker", kind="sticker", mime_type="image/webp")
        sticker = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": len(record.data),
        }
        return self._new_message(
            chat, user, reply_to=None, thread_id=thread_id, extra={"sticker": sticker}
        )

    async def send_photo(
        self,
        chat: TgChat,
        user: TgUser,
        caption: str | None = None,
        *,
        data: bytes = b"\xff\xd8\xff\xe0fake-jpeg",
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> JsonDict:
        record = self.fake.state.store_file(data, kind="photo", mime_type="image/jpeg")
        sizes = [
            {
                "file_id": f"{record.file_id}-{side}",
                "file_unique_id": f"{record.file_unique_id}{side}",
                "width": side,
                "height": side,
                "file_size": len(data),
            }
            for side in (90, 320, 800)
        ]
        sizes[-1]["file_id"] = record.file_id
        return self._new_message(
            chat,
            user,
            reply_to=reply_to,
            thread_id=thread_id,
            caption=caption,
            caption_entities=detect_entities(caption) if caption else [],
            extra={"photo": sizes},
        )

    async def send_voice(
        self,
        chat: TgChat,
        user: TgUser,
        duration: int = 3,
        *,
        data: bytes = b"OggSfake-voice",
        thread_id: int | None = None,
    ) -> JsonDict:
        record = self.fake.state.store_file(data, kind="voice", mime_type="audio/ogg")
        voice = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return self._new_message(
            chat, user, reply_to=None, thread_id=thread_id, extra={"voice": voice}
        )

    async def edit_text(
        self, message: JsonDict, new_text: str, *, entities: list[JsonDict] | None = None
    ) -> JsonDict:
        """The user edits their message: the bot gets an edited_message update."""
        state = self.fake.chat(int(message["chat"]["id"]))
        stored = state.messages[int(message["message_id"])]
        if stored.from_bot:
            raise ValueError("users cannot edit the bot's messages")
        stored.text = new_text
        stored.entities = detect_entities(new_text) if entities is None else entities
        stored.edit_count += 1
        stored.edit_date = now_unix()
        stored.versions.append(new_text)
        payload = state.message_json(stored)
        self.fake.push_update("edited_message", payload)
        return payload

    async def create_topic(self, chat: TgChat, user: TgUser, name: str) -> int:
        """A forum topic; returns its message_thread_id (the id of its first message)."""
        state = self._chat(chat)
        if not state.is_forum:
            raise ValueError(f"chat {chat.id} is not a forum")
        message_id = state.next_message_id()
        state.topics[message_id] = name
        message = StoredMessage(
            chat_id=chat.id,
            message_id=message_id,
            sender=user.to_json(),
            date=now_unix(),
            from_bot=False,
            message_thread_id=message_id,
            is_topic_message=True,
            extra={"forum_topic_created": {"name": name, "icon_color": 7322096}},
        )
        state.messages[message_id] = message
        self.fake.push_update("message", state.message_json(message))
        return message_id

    async def click(self, message: JsonDict, user: TgUser, data: str) -> str:
        """The user presses an inline button carrying `data`; returns the callback query id."""
        query_id = self.fake.state.next_callback_id()
        chat_id = int(message["chat"]["id"])
        query = {
            "id": query_id,
            "from": user.to_json(),
            "message": self.fake.chat(chat_id).message_json(
                self.fake.message(chat_id, int(message["message_id"]))
            ),
            "chat_instance": str(chat_id),
            "data": data,
        }
        self.fake.state.callback_queries[query_id] = query
        self.fake.push_update("callback_query", query)
        return query_id
