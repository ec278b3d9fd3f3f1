"""The aiohttp transport under python-telegram-bot, against the Bot API fake over real HTTP:
parameters as one JSON body, files as multipart, as Telegram reads them."""

from __future__ import annotations

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile

from bot.telegram.bot_api_request import AiohttpRequest
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_driver import TelegramDriver


def _bot(fake: FakeTelegram) -> Bot:
    return Bot(
        token=fake.token,
        base_url=fake.base_url,
        base_file_url=fake.base_file_url,
        request=AiohttpRequest(),
        get_updates_request=AiohttpRequest(),
    )


async def test_parameters_reach_telegram_with_their_types_text_and_markup(
    fake_telegram: FakeTelegram, telegram_driver: TelegramDriver
) -> None:
    chat = telegram_driver.private_chat(telegram_driver.user())
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Stop", callback_data="stop:7")]])
    async with _bot(fake_telegram) as bot:
        sent = await bot.send_message(chat.id, "你好 <b>&</b> “quotes”", reply_markup=markup)
        await bot.send_chat_action(chat.id, "typing")

    (call,) = fake_telegram.calls_to("sendMessage")
    assert call.params["chat_id"] == chat.id
    assert call.params["text"] == "你好 <b>&</b> “quotes”"
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "Stop", "callback_data": "stop:7"}]]
    }
    assert sent.text == "你好 <b>&</b> “quotes”"
    assert fake_telegram.calls_to("sendChatAction", chat_id=chat.id, action="typing")


async def test_a_file_goes_as_multipart_with_the_fields_beside_it(
    fake_telegram: FakeTelegram, telegram_driver: TelegramDriver
) -> None:
    chat = telegram_driver.private_chat(telegram_driver.user())
    async with _bot(fake_telegram) as bot:
        await bot.send_document(
            chat.id, InputFile(b"a,b\n1,2\n", filename="usage.csv"), caption="Usage 用量"
        )

    (call,) = fake_telegram.calls_to("sendDocument")
    assert call.params["chat_id"] == chat.id
    assert call.params["caption"] == "Usage 用量"
    assert call.params["document"].file_name == "usage.csv"
    assert call.params["document"].data == b"a,b\n1,2\n"
