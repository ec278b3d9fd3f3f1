"""Group addressing: mentions, replies and /ask, with UTF-16 entity offsets."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Message

from bot.telegram.addressing import BotIdentity, addressed_question, utf16_slice
from bot.telegram.textsplit import utf16_len

BOT = BotIdentity(user_id=4242, username="spark_test_bot")
USER = {"id": 7, "is_bot": False, "first_name": "Ann"}
GROUP = {"id": -100123, "type": "supergroup", "title": "Team"}
PRIVATE = {"id": 7, "type": "private", "first_name": "Ann"}


def message(text: str, *, chat: dict[str, Any] = GROUP, **extra: Any) -> Message:
    data: dict[str, Any] = {
        "message_id": 10,
        "date": 1_700_000_000,
        "chat": chat,
        "from": USER,
        "text": text,
        **extra,
    }
    return Message.de_json(data, None)


def entity(kind: str, text: str, part: str, **extra: Any) -> dict[str, Any]:
    start = text.index(part)
    return {
        "type": kind,
        "offset": utf16_len(text[:start]),
        "length": utf16_len(part),
        **extra,
    }


def test_private_text_is_always_a_question() -> None:
    found = addressed_question(message("  what is 2+2? ", chat=PRIVATE), BOT)
    assert found is not None
    assert (found.question, found.trigger) == ("what is 2+2?", "private")


def test_plain_group_message_is_ignored() -> None:
    assert addressed_question(message("hello everyone"), BOT) is None


def test_mention_after_emoji_and_cjk_is_stripped_by_utf16_offsets() -> None:
    text = "😀你好 @spark_test_bot 黑洞是什么？"
    found = addressed_question(
        message(text, entities=[entity("mention", text, "@spark_test_bot")]), BOT
    )
    assert found is not None
    assert found.trigger == "mention"
    assert found.question == "😀你好 黑洞是什么？"


def test_mention_of_another_bot_is_ignored() -> None:
    text = "@other_bot hi"
    assert (
        addressed_question(message(text, entities=[entity("mention", text, "@other_bot")]), BOT)
        is None
    )


def test_name_in_text_without_entity_is_not_a_mention() -> None:
    assert addressed_question(message("@spark_test_bot hi"), BOT) is None


def test_text_mention_of_the_bot() -> None:
    text = "Spark, explain tides"
    bot_user = {"id": BOT.user_id, "is_bot": True, "first_name": "Spark"}
    found = addressed_question(
        message(text, entities=[entity("text_mention", text, "Spark", user=bot_user)]), BOT
    )
    assert found is not None
    assert found.question == ", explain tides".strip()


def test_reply_to_the_bot_is_a_question() -> None:
    bot_message = {
        "message_id": 9,
        "date": 1_700_000_000,
        "chat": GROUP,
        "from": {"id": BOT.user_id, "is_bot": True, "first_name": "Spark"},
        "text": "an answer",
    }
    found = addressed_question(message("and why?", reply_to_message=bot_message), BOT)
    assert found is not None
    assert (found.question, found.trigger) == ("and why?", "reply")


def test_reply_to_someone_else_is_ignored() -> None:
    other = {"message_id": 9, "date": 1_700_000_000, "chat": GROUP, "from": USER, "text": "x"}
    assert addressed_question(message("and why?", reply_to_message=other), BOT) is None


def test_topic_root_reply_is_not_a_reply_to_the_bot() -> None:
    root = {
        "message_id": 5,
        "date": 1_700_000_000,
        "chat": GROUP,
        "from": {"id": BOT.user_id, "is_bot": True, "first_name": "Spark"},
        "forum_topic_created": {"name": "t", "icon_color": 0},
    }
    msg = message(
        "chatting in a topic", reply_to_message=root, message_thread_id=5, is_topic_message=True
    )
    assert addressed_question(msg, BOT) is None


@pytest.mark.parametrize("command", ["/ask", "/ask@spark_test_bot", "/ASK@Spark_Test_Bot"])
def test_ask_command(command: str) -> None:
    text = f"{command} 月亮有多远？"
    found = addressed_question(message(text, entities=[entity("bot_command", text, command)]), BOT)
    assert found is not None
    assert (found.question, found.trigger) == ("月亮有多远？", "command")


def test_ask_for_another_bot_is_ignored() -> None:
    text = "/ask@other_bot hi"
    assert (
        addressed_question(
            message(text, entities=[entity("bot_command", text, "/ask@other_bot")]), BOT
        )
        is None
    )


def test_caption_is_a_question() -> None:
    data = {
        "message_id": 11,
        "date": 1_700_000_000,
        "chat": PRIVATE,
        "from": USER,
        "caption": "what is in this picture?",
        "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
    }
    found = addressed_question(Message.de_json(data, None), BOT)
    assert found is not None
    assert found.question == "what is in this picture?"


def test_utf16_slice_handles_surrogate_pairs() -> None:
    assert utf16_slice("a😀b", 1, 2) == ("a", "😀", "b")


def test_mention_before_punctuation_leaves_no_stray_space() -> None:
    text = "Hey @spark_test_bot, how are tides made?"
    found = addressed_question(
        message(text, entities=[entity("mention", text, "@spark_test_bot")]), BOT
    )
    assert found is not None
    assert found.question == "Hey, how are tides made?"
