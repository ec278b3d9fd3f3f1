"""Spark in a terminal: ``python -m bot chat`` and ``python -m bot ask "question"``.

``chat`` is multi-turn through the same :class:`~bot.service.conversation.ConversationService` as
the Telegram bot (history stored in DATABASE_URL, trimmed to the model's budget); only the sink
differs: it prints text as it streams. Ctrl-C stops the answer being written; Ctrl-D or /exit
leaves. ``--simulate`` starts a local Spark simulator and uses a throw-away database, so anyone can
try it with no credentials.

``ask`` prints one streamed answer to stdout and exits non-zero with the error on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from typing import TextIO

import aiohttp

from bot.config import Settings
from bot.errors import BotError, ConversationError
from bot.service.conversation import ConversationService, Participant, Place, with_sources
from bot.service.events import (
    Delivery,
    Ending,
    Finished,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
)
from bot.service.replies import describe_failure, describe_refusal
from bot.spark import types as spark_types
from bot.spark.client import SparkClient
from bot.spark.errors import SparkError
from bot.spark.types import ChatMessage
from bot.startup_failures import database_failures
from storage.database import create_database
from storage.migrate import upgrade

TERMINAL_CHAT_ID = 0
TERMINAL_USER = Participant(user_id=0, first_name="terminal")
TERMINAL_PLACE = Place(chat_id=TERMINAL_CHAT_ID, chat_type="terminal", title="terminal")


class TerminalSink:
    """Prints an answer as it grows: reasoning first (marked 💭), then the answer."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._answer = ""
        self._reasoning = False

    @property
    def gone(self) -> bool:
        return False

    async def start(self) -> None:
        self._write("spark> ")

    def event(self, event: StreamEvent) -> None:
        if isinstance(event, ReasoningDelta) and not self._answer:
            self._write(event.text if self._reasoning else "💭 " + event.text)
            self._reasoning = True
        elif isinstance(event, TextDelta):
            if self._reasoning and not self._answer:
                self._write("\n\n")
            self._answer += event.text
            self._write(event.text)

    async def finish(self, ending: Ending) -> Delivery:
        text = ending.text
        if isinstance(ending, Finished) and ending.complete and ending.sources:
            text = with_sources(text, ending.sources)
        if text.startswith(self._answer):
            self._write(text[len(self._answer) :])
        if ending.note:
            self._write(("\n" if text else "") + ending.note)
        self._write("\n\n")
        return Delivery()

    async def aclose(self) -> None:
        """Nothing runs in the background."""

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


@asynccontextmanager
async def _spark_settings(settings: Settings, simulate: bool) -> AsyncIterator[Settings]:
    """The settings to use: unchanged, or pointed at an in-process simulator."""
    if not simulate:
        settings.spark.require_credentials()
        yield settings
        return
    from bot.simulated import simulated_settings  # the simulator only when asked for

    async with simulated_settings(settings, name="chat") as simulated:
        yield simulated


async def chat(settings: Settings, *, simulate: bool = False) -> int:
    """Multi-turn chat on stdin/stdout."""
    async with _spark_settings(settings, simulate) as effective, AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        with database_failures(effective.database.url):
            await upgrade(effective.database.url)
            database = create_database(effective.database.url)
        stack.push_async_callback(database.dispose)
        service = ConversationService(
            database=database,
            spark=SparkClient(session, effective.spark.client_options()),
            spark_settings=effective.spark,
            front_end="terminal",
        )
        await service.recover_interrupted()
        view = await service.chat_settings(TERMINAL_PLACE)
        source = "simulator" if simulate else "Spark"
        print(
            f"{view.model_title} via {source}. /new starts over, Ctrl-C stops an answer, "
            "Ctrl-D or /exit quits.\n"
        )
        while True:
            line = await _read_line("you> ")
            if line is None or line.strip() in ("/exit", "/quit"):
                return 0
            question = line.strip()
            if not question:
                continue
            if question == "/new":
                await service.start_new_conversation(TERMINAL_USER, TERMINAL_PLACE)
                print("(new conversation)\n")
                continue
            await _answer_one(service, question)


async def _answer_one(service: ConversationService, question: str) -> None:
    try:
        queued = await service.record_question(TERMINAL_USER, TERMINAL_PLACE, question)
    except ConversationError as exc:
        print(describe_refusal(exc, "en"), file=sys.stderr)
        return
    task = asyncio.create_task(service.answer(queued, TerminalSink(sys.stdout)))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


async def _read_line(prompt: str) -> str | None:
    def read() -> str | None:
        try:
            return input(prompt)
        except EOFError:
            return None

    return await asyncio.get_running_loop().run_in_executor(None, read)


async def ask(settings: Settings, question: str, *, simulate: bool = False) -> int:
    """One streamed answer to stdout; non-zero exit with the error on stderr on failure."""
    async with (
        _spark_settings(settings, simulate) as effective,
        aiohttp.ClientSession() as session,
    ):
        client = SparkClient(session, effective.spark.client_options())
        model = effective.spark.model_info
        messages = [ChatMessage("user", question)]
        if effective.spark.system_prompt and model.supports_system:
            messages.insert(0, ChatMessage("system", effective.spark.system_prompt))
        wrote = False
        try:
            async with aclosing(client.stream(messages, "terminal")) as events:
                async for event in events:
                    if isinstance(event, spark_types.TextDelta):
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
                        wrote = True
        except SparkError as exc:
            if wrote:
                sys.stdout.write("\n")
            print(f"error: {describe_failure(exc, 'en')} ({exc})", file=sys.stderr)
            return 1
        except BotError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        sys.stdout.write("\n")
        return 0
