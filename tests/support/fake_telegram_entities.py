"""Message entities as Telegram checks them: UTF-16 offsets, known types, required fields.

Telegram counts offsets, lengths and the 4096 text limit in UTF-16 code units, and trims
surrounding whitespace from a message text; the helpers here do the same so that a bot that
counts in Python characters fails against the fake exactly as it would against Telegram.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.fake_telegram_errors import BotApiError, JsonDict

ENTITY_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
        "date_time",
    }
)

# tdlib treats these invisible characters like spaces when it trims a text.
_EMPTY_CHARACTERS = frozenset("\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u3164")

UserLookup = Callable[[int], JsonDict | None]


def utf16_len(text: str) -> int:
    # Written apart from the bot's own on purpose: the fake checks the bot, so it must not
    # share the bot's arithmetic (a shared bug would pass unseen).
    return len(text.encode("utf-16-le")) // 2


def utf16_to_index(text: str, offset: int) -> int:
    """Python index of the character that starts at UTF-16 `offset` (len(text) at the end)."""
    units = 0
    for index, char in enumerate(text):
        if units >= offset:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(text)


def index_to_utf16(text: str, index: int) -> int:
    return utf16_len(text[:index])


def utf16_slice(text: str, offset: int, length: int) -> str:
    start = utf16_to_index(text, offset)
    end = utf16_to_index(text, offset + length)
    return text[start:end]


def entity_text(text: str, entity: JsonDict) -> str:
    return utf16_slice(text, int(entity["offset"]), int(entity["length"]))


def normalized(entities: list[JsonDict]) -> list[JsonDict]:
    """Entities in Telegram's order (by offset, outer first), so equal markup compares equal."""
    return sorted(
        (dict(entity) for entity in entities),
        key=lambda e: (e["offset"], -e["length"], e["type"]),
    )


def _is_empty_char(char: str) -> bool:
    return char.isspace() or char in _EMPTY_CHARACTERS


def trim(text: str, entities: list[JsonDict]) -> tuple[str, list[JsonDict]]:
    """Strip leading and trailing whitespace like Telegram, moving and clipping entities."""
    start = 0
    while start < len(text) and _is_empty_char(text[start]):
        start += 1
    end = len(text)
    while end > start and _is_empty_char(text[end - 1]):
        end -= 1
    if start == 0 and end == len(text):
        return text, entities
    shift = index_to_utf16(text, start)
    new_len = utf16_len(text[start:end])
    kept: list[JsonDict] = []
    for entity in entities:
        begin = max(int(entity["offset"]) - shift, 0)
        finish = min(int(entity["offset"]) + int(entity["length"]) - shift, new_len)
        if finish > begin:
            kept.append({**entity, "offset": begin, "length": finish - begin})
    return text[start:end], kept


def _fail(index: int, entity: object, why: str) -> BotApiError:
    return BotApiError.cant_parse_entities(f"entity {index} {entity!r}: {why}")


def validate_entities(text: str, raw: Any, users: UserLookup) -> list[JsonDict]:
    """Check explicit entities against `text`; return them as clean dicts or raise 400."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BotApiError.cant_parse_entities("entities must be an array of MessageEntity")
    total = utf16_len(text)
    result: list[JsonDict] = []
    for index, entity in enumerate(raw):
        if not isinstance(entity, dict):
            raise _fail(index, entity, "must be an object")
        kind = entity.get("type")
        offset = entity.get("offset")
        length = entity.get("length")
        if kind not in ENTITY_TYPES:
            raise _fail(index, entity, f"unsupported entity type {kind!r}")
        if not isinstance(offset, int) or not isinstance(length, int):
            raise _fail(index, entity, "offset and length must be integers")
        if offset < 0 or length <= 0 or offset + length > total:
            raise _fail(
                index,
                entity,
                f"range {offset}..{offset + length} is outside the text of {total} UTF-16 "
                "code units",
            )
        clean: JsonDict = {"type": kind, "offset": offset, "length": length}
        if kind == "pre" and entity.get("language") is not None:
            if not isinstance(entity["language"], str):
                raise _fail(index, entity, "language must be a string")
            clean["language"] = entity["language"]
        elif kind == "text_link":
            url = entity.get("url")
            if not isinstance(url, str) or not url.strip():
                raise _fail(index, entity, "text_link needs a non-empty url")
            clean["url"] = url
        elif kind == "text_mention":
            user = entity.get("user")
            if not isinstance(user, dict) or not isinstance(user.get("id"), int):
                raise _fail(index, entity, "text_mention needs a user with an id")
            clean["user"] = users(user["id"]) or user
        elif kind == "custom_emoji":
            emoji_id = entity.get("custom_emoji_id")
            if not isinstance(emoji_id, str) or not emoji_id:
                raise _fail(index, entity, "custom_emoji needs custom_emoji_id")
            clean["custom_emoji_id"] = emoji_id
        elif kind == "date_time":
            if not isinstance(entity.get("unix_time"), int):
                raise _fail(index, entity, "date_time needs unix_time")
            clean["unix_time"] = entity["unix_time"]
            if entity.get("date_time_format") is not None:
                clean["date_time_format"] = entity["date_time_format"]
        result.append(clean)
    return result
