"""Bot API call benchmark: the bot's CPU for one call, by method, and how much of it is whose.

The Bot API fake of the tests (no flood limits) runs in a spawned child process, so
``time.process_time()`` here is the calling side alone: python-telegram-bot's ``Bot`` method,
its parameters and the result's objects, over the bot's aiohttp transport
(``bot/telegram/bot_api_request.py``). Beside it, the same ``sendChatAction`` as a bare
aiohttp ``POST`` of a ready JSON body: what the HTTP client alone costs.

``--calls`` calls per method, ``--concurrency`` at once (as under load, where the event loop
wakes for many responses at a time), after one warm-up round. Usage:
``python benchmarks/bot_api_calls.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, and its name would hide packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
from telegram import Bot, ReplyParameters  # noqa: E402
from telegram.constants import ChatAction  # noqa: E402

from bot.telegram.bot_api_request import AiohttpRequest  # noqa: E402
from tests.support.fake_telegram import FakeTelegram  # noqa: E402
from tests.support.fake_telegram_limits import FloodLimits  # noqa: E402
from tests.support.telegram_driver import TelegramDriver  # noqa: E402

CHATS = 200
TEXT_CHARS = 800


def _serve(pipe: Connection) -> None:
    async def serve() -> None:
        async with FakeTelegram(limits=FloodLimits.unlimited()) as fake:
            driver = TelegramDriver(fake)
            chats = [driver.private_chat(driver.user()).id for _ in range(CHATS)]
            pipe.send((fake.token, fake.base_url, chats))
            await asyncio.Event().wait()

    asyncio.run(serve())


async def _cpu_per_call(
    call: Callable[[int], Awaitable[Any]], calls: int, concurrency: int
) -> float:
    """Microseconds of this process's CPU per call, the second of two rounds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            await call(index)

    cpu = 0.0
    for _ in range(2):
        started = time.process_time()
        await asyncio.gather(*(one(index) for index in range(calls)))
        cpu = time.process_time() - started
    return cpu / calls * 1e6


async def measure(token: str, base_url: str, chats: list[int], args: argparse.Namespace) -> None:
    bot = Bot(
        token, base_url=base_url, request=AiohttpRequest(), get_updates_request=AiohttpRequest()
    )
    await bot.initialize()
    text = "x" * TEXT_CHARS
    asked = await bot.send_message(chats[0], "a question")  # something to reply to

    def chat(index: int) -> int:
        return chats[index % len(chats)]

    methods: dict[str, Callable[[int], Awaitable[Any]]] = {
        "sendChatAction": lambda i: bot.send_chat_action(chat(i), ChatAction.TYPING),
        f"sendMessageDraft ({TEXT_CHARS} chars)": lambda i: bot.send_message_draft(
            chat(i), 5, text=text
        ),
        f"sendMessage ({TEXT_CHARS} chars)": lambda i: bot.send_message(chat(i), text),
        f"sendMessage ({TEXT_CHARS} chars, a reply)": lambda i: bot.send_message(
            chats[0],
            text,
            reply_parameters=ReplyParameters(asked.message_id, allow_sending_without_reply=True),
        ),
    }
    print(f"| call ({args.calls} calls, {args.concurrency} at once) | bot CPU µs per call |")
    print("|---|---:|")
    try:
        for name, call in methods.items():
            print(f"| {name} | {await _cpu_per_call(call, args.calls, args.concurrency):.0f} |")
        async with aiohttp.ClientSession() as session:
            url = f"{base_url}{token}/sendChatAction"
            body = json.dumps({"chat_id": chats[0], "action": "typing"}).encode()
            headers = {"Content-Type": "application/json"}

            async def bare(_index: int) -> None:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

            figure = await _cpu_per_call(bare, args.calls, args.concurrency)
            print(f"| sendChatAction, a bare aiohttp POST | {figure:.0f} |")
    finally:
        await bot.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    try:
        token, base_url, chats = parent.recv()
        asyncio.run(measure(token, base_url, chats, args))
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
