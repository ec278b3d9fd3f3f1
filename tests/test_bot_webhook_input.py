"""End to end: whatever reaches the webhook that is not a Telegram update.

The real bot runs in webhook mode; each test posts one bad body with the right secret, as a
broken proxy or a replayed request would. The bot answers 4xx with one WARNING line that
describes the body's shape only (it may carry user data), logs no ERROR, and still answers
the next real update.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import aiohttp
import pytest

from tests.support.bot_harness import BotFactory, RunningBot, free_port

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
JSON = {"Content-Type": "application/json"}
# Appears in bodies that carry text: the log line must not repeat it.
PRIVATE = "my-private-words"

NOT_UPDATES: dict[str, bytes] = {
    "null": b"null",
    "list": b"[1, 2]",
    "string": b'"x"',
    "number": b"42",
    "object without update_id": b'{"message": "' + PRIVATE.encode() + b'"}',
    "update_id a string": b'{"update_id": "x"}',
    "update_id a boolean": b'{"update_id": true}',
    "update_id a float": b'{"update_id": 1.5}',
    "update_id negative": b'{"update_id": -1}',
    "message a number": b'{"update_id": 1, "message": 5}',
    "message a string": b'{"update_id": 1, "message": "' + PRIVATE.encode() + b'"}',
    "message without date": b'{"update_id": 1, "message": {"message_id": 1, "text": "'
    + PRIVATE.encode()
    + b'"}}',
    "message with a bad chat": (
        b'{"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": "c"}}}'
    ),
    "invalid JSON": b'{"update_id": 1, "message": ',
    "not JSON at all": PRIVATE.encode(),
    "empty body": b"",
    "not UTF-8": b"\xff\xfe\xfd",
    "nested beyond reason": b"[" * 200_000 + b"]" * 200_000,
    "huge number": b'{"update_id": 1' + b"0" * 5000 + b"}",
}


async def _webhook_bot(make_bot: BotFactory) -> tuple[RunningBot, str, str]:
    port = free_port()
    bot = await make_bot(
        telegram={
            "webhook_url": f"https://127.0.0.1:{port}/tg",
            "host": "127.0.0.1",
            "port": port,
        }
    )
    (registered,) = bot.fake.calls_to("setWebhook")
    return bot, f"http://127.0.0.1:{port}/tg", str(registered.params["secret_token"])


async def _post(url: str, secret: str, **kwargs: Any) -> tuple[int, str]:
    """POST to the webhook with the right secret; the status and the text answered."""
    headers = {SECRET_HEADER: secret, **kwargs.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.text()


def _problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def _still_answers(bot: RunningBot, url: str, secret: str) -> None:
    """Real updates after the bad one are taken as usual: one of a kind the bot does not
    handle (Telegram adds kinds over time) quietly, and a question with its answer."""
    future = {"update_id": bot.fake.state.next_update_id(), "some_future_kind": {"x": 1}}
    assert await _post(url, secret, json=future) == (200, "ok")
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    update = bot.update_json(await bot.driver.send_text(chat, user, "[[answer:Still here.]] hi"))
    assert await _post(url, secret, json=update) == (200, "ok")
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id) == ["Still here."])


def _assert_one_warning(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    problems = _problems(caplog)
    assert [r.levelname for r in problems] == ["WARNING"], [r.getMessage() for r in problems]
    (warning,) = problems
    message = warning.getMessage()
    assert "\n" not in message
    assert warning.exc_info is None
    assert PRIVATE not in message
    assert "webhook" in message
    return warning


@pytest.mark.parametrize("body", NOT_UPDATES.values(), ids=NOT_UPDATES.keys())
async def test_a_body_that_is_not_an_update_is_refused_with_400(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    bot, url, secret = await _webhook_bot(make_bot)
    caplog.clear()
    assert await _post(url, secret, data=body, headers=JSON) == (400, "not an update")
    _assert_one_warning(caplog)

    await _still_answers(bot, url, secret)
    assert len(_problems(caplog)) == 1  # nothing more was logged
    assert bot.questions() == ["[[answer:Still here.]] hi"]


async def test_a_form_post_is_refused_with_400(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot, url, secret = await _webhook_bot(make_bot)
    caplog.clear()
    form = {"update_id": "1", "text": PRIVATE}
    assert await _post(url, secret, data=form) == (400, "not an update")
    _assert_one_warning(caplog)
    await _still_answers(bot, url, secret)
    assert len(_problems(caplog)) == 1  # nothing more was logged


async def test_a_body_too_large_is_refused_with_413(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot, url, secret = await _webhook_bot(make_bot)
    caplog.clear()
    text = PRIVATE * (2 * 1024 * 1024 // len(PRIVATE))
    body = b'{"update_id": 1, "message": {"text": "' + text.encode() + b'"}}'
    assert await _post(url, secret, data=io.BytesIO(body), headers=JSON) == (413, "too large")
    warning = _assert_one_warning(caplog)
    assert "too large" in warning.getMessage()
    await _still_answers(bot, url, secret)
    assert len(_problems(caplog)) == 1  # nothing more was logged
