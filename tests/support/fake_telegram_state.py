"""What the Bot API fake remembers: chats, messages as users see them, drafts, files, updates.

These records are the fake's ground truth; tests read them through `FakeTelegram`'s queries.
Message ids are per chat and shared by the users' and the bot's messages, as in Telegram.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_telegram_entities import entity_text
from tests.support.fake_telegram_errors import BotApiError, JsonDict

_SERVICE_KEYS = frozenset(
    {"new_chat_members", "left_chat_member", "forum_topic_created", "pinned_message"}
)
# Update types Telegram leaves out when allowed_updates is not given.
DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file part of a multipart request."""

    file_name: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class RecordedCall:
    """One request the bot made: decoded parameters, arrival time, and the answer given."""

    method: str
    params: JsonDict
    at: float
    status: int = 200
    error: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass(slots=True)
class FileRecord:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    mime_type: str
    file_name: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass(slots=True)
class StoredMessage:
    """A message in a chat, as its members see it now (edits applied, deletion flagged)."""

    chat_id: int
    message_id: int
    sender: JsonDict
    date: int
    from_bot: bool
    text: str | None = None
    entities: list[JsonDict] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[JsonDict] = field(default_factory=list)
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    is_topic_message: bool = False
    reply_markup: JsonDict | None = None
    extra: JsonDict = field(default_factory=dict)
    edit_count: int = 0
    edit_date: int | None = None
    deleted: bool = False
    versions: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    chat_id: int
    message_id: int
    file_id: str
    file_name: str | None
    mime_type: str
    data: bytes
    caption: str | None


@dataclass(frozen=True, slots=True)
class DraftFrame:
    """One sendMessageDraft the user saw (empty text shows Telegram's "Thinking…")."""

    chat_id: int
    draft_id: int
    text: str
    entities: tuple[JsonDict, ...]
    message_thread_id: int | None
    at: float
    can_stop: bool = False  # the user sees a stop button (Bot API 10.3)
    keep_on_stop: bool = False


@dataclass(slots=True)
class ChatState:
    info: JsonDict
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    last_message_id: int = 0
    topics: dict[int, str] = field(default_factory=dict)
    members: dict[int, str] = field(default_factory=dict)
    blocked: bool = False
    bot_left: bool = False
    bot_admin: bool = False
    drafts: list[DraftFrame] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    documents: list[StoredDocument] = field(default_factory=list)
    last_bot_send_at: float | None = None

    @property
    def id(self) -> int:
        return int(self.info["id"])

    @property
    def type(self) -> str:
        return str(self.info["type"])

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    @property
    def is_forum(self) -> bool:
        return bool(self.info.get("is_forum"))

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id

    def live_message(self, message_id: object) -> StoredMessage | None:
        message = self.messages.get(message_id) if isinstance(message_id, int) else None
        return None if message is None or message.deleted else message

    def message_json(self, message: StoredMessage, *, with_reply: bool = True) -> JsonDict:
        """The message object exactly as the Bot API returns or delivers it."""
        body: JsonDict = {
            "message_id": message.message_id,
            "from": dict(message.sender),
            "chat": dict(self.info),
            "date": message.date,
        }
        if message.message_thread_id is not None:
            body["message_thread_id"] = message.message_thread_id
        if message.is_topic_message:
            body["is_topic_message"] = True
        reply = self.messages.get(message.reply_to_message_id or 0)
        if with_reply and reply is not None:
            body["reply_to_message"] = self.message_json(reply, with_reply=False)
        if message.edit_date is not None:
            body["edit_date"] = message.edit_date
        if message.text is not None:
            body["text"] = message.text
            if message.entities:
                body["entities"] = [dict(e) for e in message.entities]
        if message.caption is not None:
            body["caption"] = message.caption
            if message.caption_entities:
                body["caption_entities"] = [dict(e) for e in message.caption_entities]
        body.update(message.extra)
        if message.reply_markup is not None:
            body["reply_markup"] = message.reply_markup
        return body


def update_type(update: JsonDict) -> str:
    return next(key for key in update if key != "update_id")


def now_unix() -> int:
    return int(time.time())


class FakeState:
    """The fake's world: the bot, users, chats, files, updates and bot-level settings."""

    def __init__(self, bot_user: JsonDict) -> None:
        self.bot_user = bot_user
        self.users: dict[int, JsonDict] = {}
        self.chats: dict[int, ChatState] = {}
        self.files: dict[str, FileRecord] = {}
        self.updates: list[JsonDict] = []
        self.withheld_updates: list[JsonDict] = []
        # Every update ever queued, by id, and those to deliver again (see FakeTelegram.redeliver).
        self.sent_updates: dict[int, JsonDict] = {}
        self.redeliveries: list[JsonDict] = []
        self.delivered_at: dict[int, float] = {}  # update_id: when getUpdates first handed it out
        self.callback_queries: dict[str, JsonDict] = {}
        self.callback_answers: dict[str, JsonDict] = {}
        self.commands: dict[tuple[str, str], list[JsonDict]] = {}
        self.webhook: JsonDict = {"url": ""}
        self.allowed_updates: list[str] | None = None
        self._update_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)

    @property
    def bot_id(self) -> int:
        return int(self.bot_user["id"])

    def user(self, user_id: int) -> JsonDict | None:
        if user_id == self.bot_id:
            return dict(self.bot_user)
        found = self.users.get(user_id)
        return dict(found) if found is not None else None

    def add_chat(self, info: JsonDict) -> ChatState:
        key = int(info["id"])
        if key not in self.chats:
            self.chats[key] = ChatState(dict(info))
        return self.chats[key]

    def chat(self, chat_id: Any) -> ChatState:
        """Resolve a chat_id parameter (int, numeric string or @username) or answer 400."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self.chats.values():
                if chat.info.get("username", "").lower() == chat_id[1:].lower():
                    return chat
            raise BotApiError.chat_not_found()
        try:
            key = int(chat_id)
        except (TypeError, ValueError):
            raise BotApiError.bad_request("chat_id is empty") from None
        found = self.chats.get(key)
        if found is None:
            raise BotApiError.chat_not_found()
        return found

    def store_file(
        self, data: bytes, *, kind: str, mime_type: str, file_name: str | None = None
    ) -> FileRecord:
        number = next(self._file_ids)
        digest = hashlib.sha256(data).hexdigest()[:16]
        suffix = f"_{file_name}" if file_name else ""
        record = FileRecord(
            file_id=f"{kind}-{number}-{digest}",
            file_unique_id=f"u{digest}",
            data=data,
            file_path=f"{kind}s/file_{number}{suffix}",
            mime_type=mime_type,
            file_name=file_name,
        )
        self.files[record.file_id] = record
        return record

    def file_by_path(self, path: str) -> FileRecord | None:
        return next((f for f in self.files.values() if f.file_path == path), None)

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def next_callback_id(self) -> str:
        return f"cbq-{next(self._callback_ids)}"

    def updates_to_deliver(self, offset: int, limit: int) -> list[JsonDict]:
        """The next getUpdates answer: updates from `offset` on, and the re-deliveries (handed
        out once, whatever their id), in id order, since the client confirms up to the last
        id it got."""
        redelivered, self.redeliveries = self.redeliveries[:limit], self.redeliveries[limit:]
        return sorted(
            [*redelivered, *self._queued_updates(offset, limit - len(redelivered))],
            key=lambda update: int(update["update_id"]),
        )

    def _queued_updates(self, offset: int, limit: int) -> list[JsonDict]:
        allowed = self.allowed_updates
        result: list[JsonDict] = []
        if limit <= 0:
            return result
        for update in self.updates:
            if update["update_id"] < offset:
                continue
            kind = update_type(update)
            if allowed:
                if kind not in allowed:
                    continue
            elif kind in DEFAULT_EXCLUDED_UPDATES:
                continue
            result.append(update)
            if len(result) >= limit:
                break
        return result

    def delivered(self, message: JsonDict, *, privacy_mode: bool) -> bool:
        """Whether Telegram hands this group message to the bot (privacy mode rules)."""
        chat = self.chats.get(int(message["chat"]["id"]))
        if chat is None or not chat.is_group or not privacy_mode or chat.bot_admin:
            return True
        if _SERVICE_KEYS & message.keys():
            return True
        reply = message.get("reply_to_message") or {}
        if reply.get("from", {}).get("id") == self.bot_id:
            return True
        text = message.get("text") or message.get("caption") or ""
        username = str(self.bot_user["username"]).lower()
        for entity in message.get("entities") or message.get("caption_entities") or []:
            if entity["type"] != "bot_command":
                continue
            command = entity_text(text, entity)
            if "@" in command:
                if command.split("@", 1)[1].lower() == username:
                    return True
            elif entity["offset"] == 0 and chat.last_bot_send_at is not None:
                # A bare /command reaches the bot that wrote last in the group.
                return True
        return False

    def confirm_updates(self, offset: int) -> None:
        """Forget updates below `offset` (negative: keep only the last -offset updates)."""
        if offset < 0:
            self.updates = self.updates[offset:]
        elif offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
