"""The Bot API fake, exercised through python-telegram-bot's real Bot over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import warnings

import aiohttp
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
)
from telegram.ext import Application, ContextTypes, MessageHandler, filters
from telegram.warnings import PTBDeprecationWarning

from tests.support.fake_telegram import (
    BotApiError,
    FakeTelegram,
    FloodLimits,
    ManualClock,
)
from tests.support.telegram_driver import TelegramDriver, TgChat, TgUser
from tests.support.telegram_fixtures import FakeFactory, bot_for


def retry_after_seconds(error: RetryAfter) -> float:
    # ptb 22 warns on the int form unless PTB_TIMEDELTA is set; accept both forms.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


@pytest.fixture
def alice(telegram_driver: TelegramDriver) -> TgUser:
    return telegram_driver.user(first_name="Alice", username="alice")


@pytest.fixture
def alice_chat(telegram_driver: TelegramDriver, alice: TgUser) -> TgChat:
    return telegram_driver.private_chat(alice)


async def test_get_me_answers_the_bot_user(ptb_bot: Bot, fake_telegram: FakeTelegram) -> None:
    me = await ptb_bot.get_me()
    assert me.username == "spark_test_bot"
    assert me.id == 123456
    assert me.is_bot
    assert len(fake_telegram.calls_to("getMe")) == 2  # initialize() + the explicit call


async def test_wrong_token_is_unauthorized_and_unknown_method_not_found(
    fake_telegram: FakeTelegram, ptb_bot: Bot
) -> None:
    stranger = Bot("654321:WRONG-token", base_url=fake_telegram.base_url)
    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with stranger:
            pass
    assert (fake_telegram.calls[-1].status, fake_telegram.calls[-1].error) == (401, "Unauthorized")
    with pytest.raises(EndPointNotFound):
        await ptb_bot.do_api_request("noSuchMethod")
    assert fake_telegram.calls[-1].status == 404


async def test_send_and_edit_show_the_latest_text(make_fake_telegram: FakeFactory) -> None:
    fake_telegram = await make_fake_telegram(limits=FloodLimits.unlimited())
    driver = TelegramDriver(fake_telegram)
    alice_chat = driver.private_chat(driver.user())
    async with bot_for(fake_telegram) as ptb_bot:
        await _send_edit_send(ptb_bot, fake_telegram, alice_chat)


async def _send_edit_send(ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat) -> None:
    sent = await ptb_bot.send_message(alice_chat.id, "Thinking")
    await ptb_bot.edit_message_text("Thinking about 春天 😀", alice_chat.id, sent.message_id)
    second = await ptb_bot.send_message(
        alice_chat.id, "second", reply_to_message_id=sent.message_id
    )

    visible = fake_telegram.visible_messages(alice_chat.id)
    assert [m.text for m in visible] == ["Thinking about 春天 😀", "second"]
    assert visible[0].edit_count == 1
    assert visible[0].versions == ["Thinking", "Thinking about 春天 😀"]
    assert second.reply_to_message is not None
    assert second.reply_to_message.message_id == sent.message_id
    edits = fake_telegram.calls_to("editMessageText", chat_id=alice_chat.id)
    assert [c.params["message_id"] for c in edits] == [sent.message_id]


async def test_identical_edit_is_rejected_as_not_modified(
    ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    sent = await ptb_bot.send_message(alice_chat.id, "same")
    with pytest.raises(BadRequest, match=r"(?i)not modified"):
        await ptb_bot.edit_message_text("same", alice_chat.id, sent.message_id)
    # Surrounding whitespace is trimmed by Telegram, so this is the same text too.
    with pytest.raises(BadRequest, match=r"(?i)not modified"):
        await ptb_bot.edit_message_text("  same\n", alice_chat.id, sent.message_id)
    assert fake_telegram.visible_messages(alice_chat.id)[0].edit_count == 0


async def test_text_limit_counts_utf16_units(ptb_bot: Bot, alice_chat: TgChat) -> None:
    await ptb_bot.send_message(alice_chat.id, "😀" * 2048)  # 4096 UTF-16 units
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await ptb_bot.send_message(alice_chat.id, "😀" * 2049)  # 2049 characters only
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await ptb_bot.send_message(alice_chat.id, " \n ")


async def test_explicit_entities_are_checked_in_utf16_units(
    ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    text = "😀 bold"  # the emoji is 2 units, so "bold" starts at 3
    await ptb_bot.send_message(
        alice_chat.id, text, entities=[MessageEntity(MessageEntity.BOLD, 3, 4)]
    )
    assert fake_telegram.visible_messages(alice_chat.id)[0].entities == [
        {"type": "bold", "offset": 3, "length": 4}
    ]
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await ptb_bot.send_message(
            alice_chat.id, text, entities=[MessageEntity(MessageEntity.BOLD, 2, 6)]
        )
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await ptb_bot.send_message(
            alice_chat.id, text, entities=[MessageEntity(MessageEntity.TEXT_LINK, 0, 2)]
        )
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await ptb_bot.send_message(alice_chat.id, text, entities=[MessageEntity("glow", 0, 2)])
    assert len(fake_telegram.visible_messages(alice_chat.id)) == 1


async def test_html_is_parsed_into_entities_and_bad_html_rejected(
    ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    html = (
        '<b>Hi</b> &lt;3 <a href="https://example.com">link</a>\n'
        '<pre><code class="language-python">print(1)</code></pre>'
    )
    message = await ptb_bot.send_message(alice_chat.id, html, parse_mode=ParseMode.HTML)
    assert message.text == "Hi <3 link\nprint(1)"
    stored = fake_telegram.visible_messages(alice_chat.id)[0]
    assert stored.entities == [
        {"type": "bold", "offset": 0, "length": 2},
        {"type": "text_link", "offset": 6, "length": 4, "url": "https://example.com"},
        {"type": "pre", "offset": 11, "length": 8, "language": "python"},
    ]
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities.*end tag"):
        await ptb_bot.send_message(alice_chat.id, "<b>open", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r'(?i)Unsupported start tag "br"'):
        await ptb_bot.send_message(alice_chat.id, "a<br>b", parse_mode=ParseMode.HTML)


async def test_markdown_v2_parses_and_rejects_unescaped_reserved_characters(
    ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    message = await ptb_bot.send_message(
        alice_chat.id, r"*bold* and `x\`y` done\.", parse_mode=ParseMode.MARKDOWN_V2
    )
    assert message.text == "bold and x`y done."
    assert fake_telegram.visible_messages(alice_chat.id)[0].entities == [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "code", "offset": 9, "length": 3},
    ]
    with pytest.raises(BadRequest, match=r"(?i)Character '\.' is reserved"):
        await ptb_bot.send_message(alice_chat.id, "Done.", parse_mode=ParseMode.MARKDOWN_V2)
    with pytest.raises(BadRequest, match=r"(?i)Can't find end of Bold entity"):
        await ptb_bot.send_message(alice_chat.id, "*half", parse_mode=ParseMode.MARKDOWN_V2)


async def test_drafts_in_private_chats_only(
    ptb_bot: Bot,
    fake_telegram: FakeTelegram,
    telegram_driver: TelegramDriver,
    alice_chat: TgChat,
) -> None:
    assert await ptb_bot.send_message_draft(alice_chat.id, 7, "")
    assert await ptb_bot.send_message_draft(alice_chat.id, 7, "Hel")
    assert await ptb_bot.send_message_draft(alice_chat.id, 7, "Hello")
    assert fake_telegram.draft_history(alice_chat.id) == ["", "Hel", "Hello"]
    assert fake_telegram.current_draft(alice_chat.id) == "Hello"
    await ptb_bot.send_message(alice_chat.id, "Hello")
    assert fake_telegram.current_draft(alice_chat.id) is None

    group = telegram_driver.group("Team")
    with pytest.raises(BadRequest, match=r"(?i)TEXTDRAFT_PEER_INVALID"):
        await ptb_bot.send_message_draft(group.id, 7, "Hel")
    with pytest.raises(BadRequest, match=r"(?i)non-zero"):
        await ptb_bot.send_message_draft(alice_chat.id, 0, "x")


async def test_burst_in_one_chat_gets_retry_after_and_ignoring_it_is_a_violation(
    make_fake_telegram: FakeFactory,
) -> None:
    clock = ManualClock()
    fake = await make_fake_telegram(clock=clock)
    chat = TelegramDriver(fake).private_chat(TelegramDriver(fake).user())
    async with bot_for(fake) as bot:
        await bot.send_message(chat.id, "one")
        await bot.send_message(chat.id, "two")
        with pytest.raises(RetryAfter) as first:
            await bot.send_message(chat.id, "three")
        assert retry_after_seconds(first.value) > 0
        assert fake.violations == []

        with pytest.raises(RetryAfter):
            await bot.send_message(chat.id, "too soon")
        assert [(v.method, v.chat_id) for v in fake.violations] == [("sendMessage", chat.id)]

        clock.advance(retry_after_seconds(first.value))
        await bot.send_message(chat.id, "three")
    assert fake.visible_texts(chat.id) == ["one", "two", "three"]
    assert len(fake.violations) == 1


async def test_group_gets_twenty_messages_a_minute(make_fake_telegram: FakeFactory) -> None:
    clock = ManualClock()
    fake = await make_fake_telegram(clock=clock)
    group = TelegramDriver(fake).group("Team")
    async with bot_for(fake) as bot:
        for n in range(20):
            await bot.send_message(group.id, f"message {n}")
            clock.advance(1.0)  # within the one-message-per-second chat budget
        with pytest.raises(RetryAfter) as error:
            await bot.send_message(group.id, "twenty-first")
        # the oldest message leaves the 60 s window 40 s from now
        assert retry_after_seconds(error.value) == 40
        clock.advance(40)
        await bot.send_message(group.id, "twenty-first")
    assert len(fake.visible_messages(group.id)) == 21
    assert fake.violations == []


async def test_whole_bot_budget_spans_chats(make_fake_telegram: FakeFactory) -> None:
    limits = FloodLimits(global_per_second=2.0, global_burst=2)
    fake = await make_fake_telegram(clock=ManualClock(), limits=limits)
    driver = TelegramDriver(fake)
    chats = [driver.private_chat(driver.user()) for _ in range(3)]
    async with bot_for(fake) as bot:
        await bot.send_message(chats[0].id, "a")
        await bot.send_message(chats[1].id, "b")
        with pytest.raises(RetryAfter):
            await bot.send_message(chats[2].id, "c")


async def test_scripted_faults(
    ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    sent = await ptb_bot.send_message(alice_chat.id, "draft")
    fake_telegram.fail_next("editMessageText", BotApiError.cant_parse_entities(), times=2)
    for _ in range(2):
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await ptb_bot.edit_message_text("x", alice_chat.id, sent.message_id)
    fake_telegram.fail_next("editMessageText", BotApiError.message_not_found())
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await ptb_bot.edit_message_text("x", alice_chat.id, sent.message_id)
    await ptb_bot.edit_message_text("x", alice_chat.id, sent.message_id)

    fake_telegram.fail_next("sendMessage", BotApiError.too_many_requests(5), chat_id=alice_chat.id)
    with pytest.raises(RetryAfter) as error:
        await ptb_bot.send_message(alice_chat.id, "y")
    assert retry_after_seconds(error.value) == 5
    with pytest.raises(RetryAfter):
        await ptb_bot.send_message(alice_chat.id, "y")  # a scripted 429 is honoured too
    assert len(fake_telegram.violations) == 1
    assert fake_telegram.visible_texts(alice_chat.id) == ["x"]


async def test_blocked_user_and_deleted_message(
    ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    sent = await ptb_bot.send_message(alice_chat.id, "hello")
    fake_telegram.delete_message(alice_chat.id, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await ptb_bot.edit_message_text("edited", alice_chat.id, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await ptb_bot.send_message(alice_chat.id, "re", reply_to_message_id=sent.message_id)
    await ptb_bot.send_message(
        alice_chat.id,
        "re",
        reply_parameters=ReplyParameters(sent.message_id, allow_sending_without_reply=True),
    )
    fake_telegram.block_user(alice_chat.id)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await ptb_bot.send_message(alice_chat.id, "still there?")
    assert fake_telegram.visible_texts(alice_chat.id) == ["re"]


async def test_long_polling_delivers_driver_updates_to_an_application(
    fake_telegram: FakeTelegram,
    telegram_driver: TelegramDriver,
    alice: TgUser,
    alice_chat: TgChat,
) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        assert message.text is not None
        await message.reply_text(f"echo: {message.text}")

    app = (
        Application.builder()
        .token(fake_telegram.token)
        .base_url(fake_telegram.base_url)
        .base_file_url(fake_telegram.base_file_url)
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        await telegram_driver.send_text(alice_chat, alice, "ping 你好 😀")
        await fake_telegram.wait_for(lambda: fake_telegram.visible_texts(alice_chat.id))
        await app.updater.stop()
        await app.stop()

    assert fake_telegram.visible_texts(alice_chat.id) == ["echo: ping 你好 😀"]
    # reply_text quotes only in groups by default, so the echo is a plain message
    assert fake_telegram.visible_messages(alice_chat.id)[0].reply_to_message_id is None
    assert fake_telegram.calls_to("deleteWebhook")
    assert fake_telegram.state.updates == []  # confirmed by the final getUpdates offset


async def test_set_my_commands_per_scope_and_language(
    ptb_bot: Bot, fake_telegram: FakeTelegram
) -> None:
    await ptb_bot.set_my_commands([BotCommand("ask", "Ask Spark")])
    await ptb_bot.set_my_commands(
        [BotCommand("ask", "问星火")], scope=BotCommandScopeAllGroupChats(), language_code="zh"
    )
    assert fake_telegram.commands() == [{"command": "ask", "description": "Ask Spark"}]
    assert fake_telegram.commands({"type": "all_group_chats"}, "zh") == [
        {"command": "ask", "description": "问星火"}
    ]
    fetched = await ptb_bot.get_my_commands(
        scope=BotCommandScopeAllGroupChats(), language_code="zh"
    )
    assert [c.description for c in fetched] == ["问星火"]
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await ptb_bot.set_my_commands([BotCommand("Ask", "capital letters")])


async def test_send_document_stores_the_file(
    ptb_bot: Bot, fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    data = "第一行\nsecond line\n".encode()
    message = await ptb_bot.send_document(
        alice_chat.id, data, filename="answer.md", caption="Full answer"
    )
    [document] = fake_telegram.documents(alice_chat.id)
    assert (document.file_name, document.data, document.caption) == (
        "answer.md",
        data,
        "Full answer",
    )
    assert message.document is not None
    file = await ptb_bot.get_file(message.document.file_id)
    assert await file.download_as_bytearray() == bytearray(data)


async def test_group_privacy_mode_withholds_plain_messages(
    fake_telegram: FakeTelegram,
    telegram_driver: TelegramDriver,
    alice: TgUser,
    ptb_bot: Bot,
) -> None:
    group = telegram_driver.group("Team", supergroup=True)
    await telegram_driver.send_text(group, alice, "just chatting")
    await telegram_driver.send_mention(group, alice, "@spark_test_bot hi")
    command = await telegram_driver.send_command(group, alice, "/ask@spark_test_bot 春天 😀?")
    answer = await ptb_bot.send_message(group.id, "answer")
    reply = await telegram_driver.send_text(group, alice, "more", reply_to=answer.message_id)

    delivered = await ptb_bot.get_updates(timeout=0)
    assert [u.effective_message.text for u in delivered if u.effective_message] == [
        "/ask@spark_test_bot 春天 😀?",
        "more",
    ]
    assert len(fake_telegram.withheld_updates) == 2
    assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 19}]
    assert reply["reply_to_message"]["from"]["id"] == fake_telegram.bot_id


async def test_an_update_is_delivered_again_whatever_the_offset(
    fake_telegram: FakeTelegram,
    telegram_driver: TelegramDriver,
    alice_chat: TgChat,
    alice: TgUser,
    ptb_bot: Bot,
) -> None:
    await telegram_driver.send_text(alice_chat, alice, "first")
    await telegram_driver.send_text(alice_chat, alice, "second")
    (first, second) = await ptb_bot.get_updates(timeout=0)
    assert await ptb_bot.get_updates(offset=second.update_id + 1, timeout=0) == ()

    fake_telegram.redeliver(first.update_id)
    await telegram_driver.send_text(alice_chat, alice, "third")
    again = await ptb_bot.get_updates(offset=second.update_id + 1, timeout=0)
    assert [(u.update_id, u.effective_message.text) for u in again if u.effective_message] == [
        (first.update_id, "first"),
        (second.update_id + 1, "third"),
    ]
    # Delivered once more, not for good.
    assert await ptb_bot.get_updates(offset=second.update_id + 2, timeout=0) == ()
    with pytest.raises(KeyError):
        fake_telegram.redeliver(999)


async def test_driver_entities_use_utf16_offsets(
    fake_telegram: FakeTelegram, telegram_driver: TelegramDriver, alice: TgUser, ptb_bot: Bot
) -> None:
    fake_telegram.privacy_mode = False
    group = telegram_driver.group("Team")
    text = "😀春 @spark_test_bot hello"
    await telegram_driver.send_mention(group, alice, text)
    await telegram_driver.send_text_mention(group, alice, "你好 Spark!", 3, 5)
    updates = await ptb_bot.get_updates(timeout=0)
    mention = updates[0].effective_message
    assert mention is not None
    assert mention.entities[0].type == MessageEntity.MENTION
    assert mention.entities[0].offset == 4  # 😀 is 2 units, 春 and the space 1 each
    assert mention.parse_entity(mention.entities[0]) == "@spark_test_bot"
    text_mention = updates[1].effective_message
    assert text_mention is not None
    entity = text_mention.entities[0]
    assert entity.user is not None
    assert entity.user.id == fake_telegram.bot_id
    assert text_mention.parse_entity(entity) == "Spark"


async def test_forum_topics_shape_messages_like_telegram(
    fake_telegram: FakeTelegram, telegram_driver: TelegramDriver, alice: TgUser, ptb_bot: Bot
) -> None:
    forum = telegram_driver.group("Forum", forum=True)
    fake_telegram.set_bot_admin(forum.id)
    thread = await telegram_driver.create_topic(forum, alice, "Spark")
    asked = await telegram_driver.send_text(forum, alice, "question", thread_id=thread)
    assert asked["is_topic_message"] is True
    assert asked["message_thread_id"] == thread
    assert asked["reply_to_message"]["message_id"] == thread  # the topic's first message

    await ptb_bot.send_message(forum.id, "answer", message_thread_id=thread)
    assert fake_telegram.visible_texts(forum.id, thread_id=thread) == ["answer"]
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await ptb_bot.send_message(forum.id, "lost", message_thread_id=999)
    updates = await ptb_bot.get_updates(timeout=0)
    assert [u.effective_message.message_thread_id for u in updates if u.effective_message] == [
        thread,
        thread,
    ]


async def test_json_bodies_and_query_strings_are_accepted(
    fake_telegram: FakeTelegram, alice_chat: TgChat
) -> None:
    url = f"{fake_telegram.base_url}{fake_telegram.token}"
    async with aiohttp.ClientSession() as session:
        body = {"chat_id": alice_chat.id, "text": "<b>hi</b>", "parse_mode": "HTML"}
        async with session.post(f"{url}/sendMessage", json=body) as response:
            assert (await response.json())["result"]["entities"] == [
                {"type": "bold", "offset": 0, "length": 2}
            ]
        async with session.get(
            f"{url}/SENDMESSAGE", params={"chat_id": alice_chat.id, "text": "123"}
        ) as response:
            assert (await response.json())["result"]["text"] == "123"
    assert fake_telegram.visible_texts(alice_chat.id) == ["hi", "123"]


async def test_a_second_long_poll_terminates_the_first(fake_telegram: FakeTelegram) -> None:
    url = f"{fake_telegram.base_url}{fake_telegram.token}/getUpdates"
    async with aiohttp.ClientSession() as session:

        async def poll(wait: int) -> tuple[int, object]:
            async with session.post(url, data={"timeout": str(wait)}) as response:
                return response.status, await response.json()

        first = asyncio.create_task(poll(5))
        await fake_telegram.wait_for(lambda: fake_telegram.polls_waiting == 1)
        assert await poll(0) == (200, {"ok": True, "result": []})
        status, body = await first
    assert status == 409
    assert "terminated by other getUpdates request" in str(body)


async def test_get_updates_conflicts_with_a_webhook(ptb_bot: Bot) -> None:
    await ptb_bot.set_webhook("https://example.com/hook")
    with pytest.raises(Conflict, match=r"(?i)webhook is active"):
        await ptb_bot.get_updates(timeout=0)
    await ptb_bot.delete_webhook()
    assert await ptb_bot.get_updates(timeout=0) == ()


@pytest.mark.parametrize(
    ("url", "secret", "description"),
    [
        (
            "http://example.com/hook",
            None,
            "bad webhook: An HTTPS URL must be provided for webhook",
        ),
        ("https://example.com/hook", "with space", "secret token contains unallowed characters"),
        ("https://example.com/hook", "123:ABC", "secret token contains unallowed characters"),
        ("https://example.com/hook", "x" * 257, "secret token is too long"),
    ],
)
async def test_set_webhook_refuses_what_telegram_refuses(
    ptb_bot: Bot, fake_telegram: FakeTelegram, url: str, secret: str | None, description: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        await ptb_bot.set_webhook(url, secret_token=secret)
    # ptb drops the "Bad Request: " prefix and capitalizes the rest.
    assert caught.value.message == description.capitalize()
    assert fake_telegram.calls[-1].error == f"Bad Request: {description}"
    assert (await ptb_bot.get_webhook_info()).url == ""


async def test_set_webhook_takes_a_secret_of_telegrams_alphabet(ptb_bot: Bot) -> None:
    assert await ptb_bot.set_webhook("https://example.com/hook", secret_token="A-z_09" * 42)
    assert (await ptb_bot.get_webhook_info()).url == "https://example.com/hook"


async def test_a_webhook_takes_forty_connections_unless_told(ptb_bot: Bot) -> None:
    await ptb_bot.set_webhook("https://example.com/hook")
    assert (await ptb_bot.get_webhook_info()).max_connections == 40
    await ptb_bot.set_webhook("https://example.com/hook", max_connections=100)
    assert (await ptb_bot.get_webhook_info()).max_connections == 100


async def test_chat_queries_actions_and_leaving(
    ptb_bot: Bot, fake_telegram: FakeTelegram, telegram_driver: TelegramDriver, alice: TgUser
) -> None:
    group = telegram_driver.group("Team", supergroup=True)
    telegram_driver.join(group, alice, "creator")
    fake_telegram.set_bot_admin(group.id)
    assert await ptb_bot.send_chat_action(group.id, "typing")
    assert fake_telegram.chat_actions(group.id) == ["typing"]
    chat = await ptb_bot.get_chat(group.id)
    assert (chat.title, chat.type) == ("Team", "supergroup")
    me = await ptb_bot.get_chat_member(group.id, fake_telegram.bot_id)
    owner = await ptb_bot.get_chat_member(group.id, alice.id)
    assert (me.status, owner.status) == ("administrator", "creator")
    assert await ptb_bot.leave_chat(group.id)
    with pytest.raises(Forbidden, match=r"(?i)not a member of the supergroup chat"):
        await ptb_bot.send_message(group.id, "still here?")
    call = await fake_telegram.wait_for_call("sendMessage", chat_id=group.id)
    assert call.status == 403


async def test_media_edits_and_button_presses_reach_ptb(
    ptb_bot: Bot,
    fake_telegram: FakeTelegram,
    telegram_driver: TelegramDriver,
    alice: TgUser,
    alice_chat: TgChat,
) -> None:
    asked = await telegram_driver.send_text(alice_chat, alice, "first")
    await telegram_driver.edit_text(asked, "first, edited")
    await telegram_driver.send_sticker(alice_chat, alice, "👍")
    await telegram_driver.send_photo(alice_chat, alice, caption="see #this")
    await telegram_driver.send_voice(alice_chat, alice, duration=2, data=b"OggS-voice")
    answer = await ptb_bot.send_message(
        alice_chat.id,
        "pick",
        reply_markup=InlineKeyboardMarkup.from_button(
            InlineKeyboardButton("Stop", callback_data="stop")
        ),
    )
    query_id = await telegram_driver.click(answer.to_dict(), alice, "stop")

    updates = await ptb_bot.get_updates(timeout=0)
    assert updates[1].edited_message is not None
    assert updates[1].edited_message.text == "first, edited"
    assert updates[2].message is not None
    assert updates[2].message.sticker is not None
    photo = updates[3].message
    assert photo is not None
    assert photo.caption == "see #this"
    assert photo.parse_caption_entities() == {photo.caption_entities[0]: "#this"}
    voice = updates[4].message
    assert voice is not None
    assert voice.voice is not None
    voice_file = await ptb_bot.get_file(voice.voice.file_id)
    assert await voice_file.download_as_bytearray() == bytearray(b"OggS-voice")
    query = updates[5].callback_query
    assert query is not None
    assert query.data == "stop"
    assert await query.answer("Stopped")
    assert fake_telegram.callback_answer(query_id) == {"text": "Stopped"}
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await query.answer("again")
    assert await ptb_bot.delete_message(alice_chat.id, answer.message_id)
    assert fake_telegram.visible_messages(alice_chat.id) == []
