"""End to end: bad input and access, as users and admins meet them.

Every update meets the access policy before any handler (groups not allowed are left, refused
users told once); every command argument is parsed strictly and a bad one gets the command's
usage line, never a traceback; a system prompt is bounded by the model's budget when it is set
or when the chat switches model, shown shortened when long, and named when it is what makes a
question too long.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from tests.support.bot_harness import BotFactory, RunningBot
from tests.support.telegram_driver import TgChat, TgUser

ADMIN = 77
BOT = "spark_test_bot"
NOT_ALLOWED = "Sorry, this bot is private and not available to you."


async def _reply(bot: RunningBot, chat: TgChat, count: int) -> str:
    """The ``count``-th text the bot showed in ``chat`` (1-based), once it is there."""
    await bot.fake.wait_for(lambda: len(bot.fake.visible_texts(chat.id)) >= count)
    return bot.fake.visible_texts(chat.id)[count - 1]


def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


# -- access: one check in front of every handler ------------------------------------------------

Act = Callable[[RunningBot, TgChat, TgUser], Awaitable[object]]


def _command(body: str) -> Act:
    async def act(bot: RunningBot, group: TgChat, user: TgUser) -> object:
        return await bot.driver.send_command(group, user, body)

    return act


async def _mention(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_mention(group, user, f"@{BOT} what is a tide?")


async def _chatter(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_text(group, user, "hello everyone")


async def _sticker(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_sticker(group, user)


async def _caption(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    return await bot.driver.send_photo(group, user, caption=f"@{BOT} what is this?")


async def _edit(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    message = await bot.driver.send_text(group, user, "hello everyone")
    return await bot.driver.edit_text(message, f"@{BOT} hello")


async def _press(bot: RunningBot, group: TgChat, user: TgUser) -> object:
    message = await bot.driver.send_text(group, user, "hello everyone")
    return await bot.driver.click(message, user, "anything")


LEAVE_TRIGGERS: dict[str, Act] = {
    "stats": _command(f"/stats@{BOT}"),
    "quota": _command(f"/quota@{BOT} 10001 off"),
    "usage": _command("/usage"),
    "usage@bot": _command(f"/usage@{BOT}"),
    "model": _command(f"/model@{BOT} pro"),
    "system": _command(f"/system@{BOT} be brief"),
    "start": _command(f"/start@{BOT}"),
    "help": _command(f"/help@{BOT}"),
    "new": _command(f"/new@{BOT}"),
    "retry": _command(f"/retry@{BOT}"),
    "stop": _command(f"/stop@{BOT}"),
    "ask": _command(f"/ask@{BOT} free answers?"),
    "mention": _mention,
    "chatter": _chatter,
    "sticker": _sticker,
    "caption": _caption,
    "edit": _edit,
    "button": _press,
}


async def test_a_group_not_allowed_is_left_whatever_reaches_the_bot(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(
        telegram={
            "allowed_chat_ids": [-999],
            "unauthorized_group_action": "leave",
            "admin_user_ids": [ADMIN],
        }
    )
    bot.fake.privacy_mode = False  # the bot sees everything said in the group
    user = bot.driver.user(first_name="Uninvited")
    groups = {name: bot.driver.group(f"Group {name}") for name in LEAVE_TRIGGERS}
    for name, act in LEAVE_TRIGGERS.items():
        await act(bot, groups[name], user)
    for name, group in groups.items():
        try:
            await bot.fake.wait_for_call("leaveChat", chat_id=group.id)
        except TimeoutError:
            pytest.fail(f"{name}: the bot stayed in a group that is not allowed")

    for name, group in groups.items():
        # Updates of a chat are handled in order: once a second one made the bot leave again,
        # the first was handled in full, and said nothing.
        await bot.driver.send_mention(group, user, f"@{BOT} still there?")
        await bot.fake.wait_for_call("leaveChat", chat_id=group.id, count=2)
        assert bot.fake.chat(group.id).bot_left, name
        assert bot.fake.visible_texts(group.id) == [], name
        assert not bot.fake.calls_to("answerCallbackQuery"), name
    assert bot.spark.requests == []
    assert await bot.ledger() == []
    for group in groups.values():
        assert await bot.stored(group.id) == []
    _no_errors_logged(caplog)


async def test_a_group_not_allowed_stays_silent_when_told_to(make_bot: BotFactory) -> None:
    bot = await make_bot(
        telegram={
            "allowed_chat_ids": [-999],
            "unauthorized_group_action": "silent",
            "admin_user_ids": [ADMIN],
        }
    )
    group = bot.driver.group("Quiet")
    user = bot.driver.user(first_name="Uninvited")
    admin = bot.driver.user(id=ADMIN, first_name="Operator")
    for body in (f"/stats@{BOT}", f"/quota@{BOT} 10001 off", "/usage", f"/model@{BOT} pro"):
        await bot.driver.send_command(group, user, body)
    await bot.driver.send_mention(group, user, f"@{BOT} anyone?")
    # The operator is allowed everywhere: their answer comes after everything above.
    await bot.driver.send_command(group, admin, f"/ask@{BOT} [[answer:Here.]] ping")
    await bot.wait_stored(group.id, 1)
    await bot.fake.wait_for(lambda: "Here." in bot.fake.visible_texts(group.id))

    assert bot.fake.visible_texts(group.id) == ["Here."]
    assert not bot.fake.calls_to("leaveChat")
    assert bot.questions() == ["[[answer:Here.]] ping"]


async def test_a_refused_user_is_told_once_whichever_command_they_use(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot(telegram={"allowed_user_ids": [42], "admin_user_ids": [ADMIN]})
    bot.fake.privacy_mode = False
    group = bot.driver.group("Mixed")
    stranger = bot.driver.user(first_name="Stranger")
    admin = bot.driver.user(id=ADMIN, first_name="Operator")
    await bot.driver.send_text(group, stranger, "just chatting, not to the bot")
    for body in (
        f"/stats@{BOT}",
        f"/quota@{BOT} 10001 off",
        f"/usage@{BOT}",
        f"/model@{BOT} pro",
        f"/system@{BOT} be brief",
        f"/new@{BOT}",
    ):
        await bot.driver.send_command(group, stranger, body)
    await bot.driver.send_mention(group, stranger, f"@{BOT} hello")
    await bot.driver.send_command(group, admin, f"/ask@{BOT} [[answer:Sure.]] ping")
    await bot.wait_stored(group.id, 1)
    await bot.fake.wait_for(lambda: "Sure." in bot.fake.visible_texts(group.id))

    assert bot.fake.visible_texts(group.id) == [NOT_ALLOWED, "Sure."]
    assert bot.questions() == ["[[answer:Sure.]] ping"]
    async with bot.database.repositories(readonly=True) as repos:
        chat = await repos.chats.get(group.id)
    assert chat is not None
    assert (chat.model, chat.system_prompt) == (None, None)  # nothing the stranger set
    _no_errors_logged(caplog)


async def test_a_refused_user_asking_for_admin_commands_in_private_is_told_not_allowed(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(telegram={"allowed_user_ids": [42], "admin_user_ids": [ADMIN]})
    stranger = bot.driver.user(first_name="Stranger")
    chat = bot.driver.private_chat(stranger)
    await bot.driver.send_command(chat, stranger, "/stats")
    assert await _reply(bot, chat, 1) == NOT_ALLOWED
