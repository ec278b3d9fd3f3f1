"""Two peer policies for ``benchmarks/load.py``: how popular Telegram LLM bots stream.

Both take updates from the same webhook as the bot (``WEBHOOK_URL``, ``WEBHOOK_SECRET``,
``HOST``/``PORT``), ask Spark with the project's client, and show the answer as one reply
message edited in place, in private chats and groups alike (no drafts):

- ``ptb-limiter``: python-telegram-bot's own ``AIORateLimiter`` (its defaults: 30 calls a
  second overall, 20 a minute per group; ``max_retries=3`` so a 429 is waited out and tried
  again) in front of a loop that edits the reply every 100 new characters, then once more
  with the whole answer.
- ``every-frame``: an edit on every Spark frame, one at a time; a 429 is honoured by sleeping
  ``retry_after`` and trying the same edit again.

Only what the benchmark needs: text questions, ``/ask`` in groups, no storage, no commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from telegram import Bot, Message, ReplyParameters
from telegram.error import RetryAfter, TelegramError
from telegram.ext import AIORateLimiter, ExtBot
from telegram.request import HTTPXRequest

from bot.config import Settings
from bot.spark.client import SparkClient
from bot.spark.types import ChatMessage, TextDelta
from bot.telegram.send_budgets import retry_after_seconds

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
EDIT_EVERY = 100


async def _honouring_retry_after(call: Callable[[], Awaitable[Any]]) -> Any:
    while True:
        try:
            return await call()
        except RetryAfter as exc:
            await asyncio.sleep(retry_after_seconds(exc.retry_after))


class _Peer:
    def __init__(self, policy: str, bot: Bot, spark: SparkClient) -> None:
        self._policy = policy
        self._bot = bot
        self._spark = spark
        self._tasks: set[asyncio.Task[None]] = set()

    def take(self, update: dict[str, Any]) -> None:
        message = update.get("message") or {}
        text = str(message.get("text") or "")
        chat = message.get("chat") or {}
        if not text or "id" not in chat:
            return
        if text.startswith("/ask"):
            text = text.split(" ", 1)[1] if " " in text else ""
        task = asyncio.create_task(self._answer(int(chat["id"]), int(message["message_id"]), text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _answer(self, chat_id: int, reply_to: int, question: str) -> None:
        try:
            if self._policy == "ptb-limiter":
                await self._edit_every_100(chat_id, reply_to, question)
            else:
                await self._edit_every_frame(chat_id, reply_to, question)
        except TelegramError as exc:
            log.warning("chat %s: answer failed: %s", chat_id, exc)

    def _stream(self, chat_id: int, question: str) -> Any:
        return self._spark.stream([ChatMessage("user", question)], uid=f"u{abs(chat_id)}"[:32])

    async def _send(self, chat_id: int, reply_to: int, text: str) -> Message:
        return await self._bot.send_message(
            chat_id, text, reply_parameters=ReplyParameters(reply_to)
        )

    async def _edit(self, message: Message, text: str) -> None:
        await self._bot.edit_message_text(text, chat_id=message.chat_id, message_id=message.id)

    async def _edit_every_100(self, chat_id: int, reply_to: int, question: str) -> None:
        answer, shown = "", 0
        message: Message | None = None
        async with contextlib.aclosing(self._stream(chat_id, question)) as events:
            async for event in events:
                if not isinstance(event, TextDelta):
                    continue
                answer += event.text
                if len(answer) - shown < EDIT_EVERY:
                    continue
                if message is None:
                    message = await self._send(chat_id, reply_to, answer)
                else:
                    await self._edit(message, answer)
                shown = len(answer)
        if message is None:
            await self._send(chat_id, reply_to, answer)
        elif shown < len(answer):
            await self._edit(message, answer)

    async def _edit_every_frame(self, chat_id: int, reply_to: int, question: str) -> None:
        answer = ""
        message: Message | None = None
        async with contextlib.aclosing(self._stream(chat_id, question)) as events:
            async for event in events:
                if not isinstance(event, TextDelta) or not event.text.strip():
                    continue
                answer += event.text
                message = await self._show_every_frame(chat_id, reply_to, message, answer)

    async def _show_every_frame(
        self, chat_id: int, reply_to: int, message: Message | None, text: str
    ) -> Message:
        if message is None:
            sent: Message = await _honouring_retry_after(
                lambda: self._send(chat_id, reply_to, text)
            )
            return sent
        await _honouring_retry_after(lambda: self._edit(message, text))
        return message


async def serve_peer(policy: str, settings: Settings, stop: asyncio.Event) -> None:
    """Serve ``policy`` on the bot's webhook until ``stop`` is set."""
    telegram = settings.telegram
    assert telegram.webhook_url is not None
    assert telegram.webhook_secret is not None
    token = telegram.token or ""
    root = (telegram.api_base_url or "https://api.telegram.org").rstrip("/")
    limiter = AIORateLimiter(max_retries=3) if policy == "ptb-limiter" else None
    # The connection pool an ApplicationBuilder gives (a bare Bot would have one connection).
    bot: Bot = ExtBot(
        token,
        base_url=f"{root}/bot",
        rate_limiter=limiter,
        request=HTTPXRequest(connection_pool_size=256),
    )
    secret = telegram.webhook_secret.get_secret_value()
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        bot,
    ):
        peer = _Peer(policy, bot, SparkClient(session, settings.spark.client_options()))

        async def receive(request: web.Request) -> web.Response:
            if request.headers.get(SECRET_HEADER) != secret:
                return web.Response(status=403)
            peer.take(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post(urlsplit(telegram.webhook_url).path or "/", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, telegram.host, telegram.port).start()
        await bot.set_webhook(telegram.webhook_url, secret_token=secret)
        try:
            await stop.wait()
        finally:
            await peer.close()
            await runner.cleanup()
