"""Which messages are questions for the bot, and the question text without the mention.

In a private chat every text is a question. In a group the bot answers only when addressed:
a ``mention`` entity equal to @bot_username, a ``text_mention`` of the bot's id, a reply to one
of the bot's messages, or the ``/ask`` command (also ``/ask@bot_username``). Entities are located
by their UTF-16 offsets, as Telegram counts them, never by searching the string: a name can
appear in the text without being a mention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from telegram import Message, MessageEntity

Trigger = Literal["private", "mention", "reply", "command"]

_CLOSING_PUNCTUATION = frozenset(",.;:!?，。；：！？、)")


@dataclass(frozen=True, slots=True)
class Addressed:
    """A message the bot should answer."""

    question: str
    trigger: Trigger


@dataclass(frozen=True, slots=True)
class BotIdentity:
    user_id: int
    username: str  # without the @


def utf16_slice(text: str, offset: int, length: int) -> tuple[str, str, str]:
    """Split ``text`` around a UTF-16 range: (before, inside, after)."""
    encoded = text.encode("utf-16-le")
    start, end = offset * 2, (offset + length) * 2
    return (
        encoded[:start].decode("utf-16-le"),
        encoded[start:end].decode("utf-16-le"),
        encoded[end:].decode("utf-16-le"),
    )


def _remove_ranges(text: str, ranges: Sequence[tuple[int, int]]) -> str:
    """Remove UTF-16 (offset, length) ranges from ``text``, last first so offsets hold."""
    for offset, length in sorted(ranges, reverse=True):
        before, _, after = utf16_slice(text, offset, length)
        after = after.lstrip(" ")
        # "Hey @bot, how…" reads "Hey, how…": no space before punctuation that followed it.
        joiner = " " if before.strip() and after and after[0] not in _CLOSING_PUNCTUATION else ""
        text = before.rstrip(" ") + joiner + after
    return text.strip()


def _mentions_bot(entity: MessageEntity, text: str, bot: BotIdentity) -> bool:
    if entity.type == MessageEntity.TEXT_MENTION:
        return entity.user is not None and entity.user.id == bot.user_id
    if entity.type == MessageEntity.MENTION:
        _, inside, _ = utf16_slice(text, entity.offset, entity.length)
        return inside.lstrip("@").lower() == bot.username.lower()
    return False


def parse_command(text: str, entities: Sequence[MessageEntity]) -> tuple[str, str | None, str]:
    """For a message starting with a bot_command: (command, @target or None, argument text)."""
    first = entities[0]
    _, inside, after = utf16_slice(text, first.offset, first.length)
    name, _, target = inside.lstrip("/").partition("@")
    return name.lower(), (target or None), after.strip()


def is_command_for_other_bot(
    text: str, entities: Sequence[MessageEntity], bot: BotIdentity
) -> bool:
    if not entities or entities[0].type != MessageEntity.BOT_COMMAND or entities[0].offset:
        return False
    _, target, _ = parse_command(text, entities)
    return target is not None and target.lower() != bot.username.lower()


def addressed_question(message: Message, bot: BotIdentity) -> Addressed | None:
    """The question in ``message`` if the bot should answer it, else None.

    Captions count as text. Commands other than /ask are not questions (they have handlers).
    """
    text = message.text if message.text is not None else message.caption
    if text is None:
        return None
    entities = tuple(message.entities or message.caption_entities or ())
    if entities and entities[0].type == MessageEntity.BOT_COMMAND and entities[0].offset == 0:
        name, target, argument = parse_command(text, entities)
        if target is not None and target.lower() != bot.username.lower():
            return None
        return Addressed(argument, "command") if name == "ask" else None
    if message.chat.type == "private":
        return Addressed(text.strip(), "private")
    mentions = [e for e in entities if _mentions_bot(e, text, bot)]
    if mentions:
        question = _remove_ranges(text, [(e.offset, e.length) for e in mentions])
        return Addressed(question, "mention")
    replied = message.reply_to_message
    if (
        replied is not None
        and replied.from_user is not None
        and replied.from_user.id == bot.user_id
        and not _is_topic_root_reply(message)
    ):
        return Addressed(text.strip(), "reply")
    return None


def _is_topic_root_reply(message: Message) -> bool:
    # In forum topics every message "replies" to the topic's creation message; that is not a
    # reply to the bot even when the bot created the topic.
    replied = message.reply_to_message
    return bool(
        message.is_topic_message
        and replied is not None
        and replied.message_id == message.message_thread_id
    )


def speaks_to_bot(message: Message, bot: BotIdentity) -> bool:
    """Whether ``message`` is meant for the bot at all: anything in a private chat; in a group
    a command not aimed at another bot, a mention of the bot, or a reply to one of its
    messages (media included). What a refused user may be told "not allowed" about."""
    if message.chat.type == "private":
        return True
    text = message.text if message.text is not None else message.caption
    entities = tuple(message.entities or message.caption_entities or ())
    if text is not None and entities:
        first = entities[0]
        if first.type == MessageEntity.BOT_COMMAND and first.offset == 0:
            return not is_command_for_other_bot(text, entities, bot)
        if any(_mentions_bot(e, text, bot) for e in entities):
            return True
    replied = message.reply_to_message
    return (
        replied is not None
        and replied.from_user is not None
        and replied.from_user.id == bot.user_id
        and not _is_topic_root_reply(message)
    )


def command_argument(message: Message) -> str:
    """What follows the command (``/system@bot`` included) in ``message``, line breaks kept:
    the text after the command's own entity, not after the first space."""
    text = message.text if message.text is not None else message.caption
    entities = tuple(message.entities or message.caption_entities or ())
    if text is None:
        return ""
    if not entities or entities[0].type != MessageEntity.BOT_COMMAND or entities[0].offset:
        return text.strip()
    return parse_command(text, entities)[2]
