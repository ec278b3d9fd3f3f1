"""End to end: /stats, /quota, /usage and the limits, through the Bot API fake.

The bot runs as :class:`~bot.telegram.app.BotRuntime`, the production composition root,
against the Bot API fake, the Spark simulator and a SQLite file. The bot and the fake share a
clock running faster than real time (:data:`tests.support.bot_harness.TIME_FACTOR`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.service.limits import RATE_WINDOW_SECONDS
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from bot.telegram.app import BotRuntime, open_bot_runtime
from bot.telegram.stats_format import WIDTH, display_width
from storage.database import Database, create_database
from storage.dto import TokenUsage
from storage.repositories.usage import Usage
from tests.support import db_rows
from tests.support.bot_harness import TIME_FACTOR
from tests.support.clocks import ScaledClock
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_driver import TelegramDriver

ADMIN = 900_001
# More admins, each with a private chat of their own, so that many commands can be answered
# at once without waiting for one chat's one-message-a-second budget.
HELPERS = tuple(range(900_002, 900_020))


@dataclass(slots=True)
class Bot:
    fake: FakeTelegram
    driver: TelegramDriver
    spark: SparkSimulator
    runtime: BotRuntime
    database: Database
    clock: ScaledClock

    async def record(
        self,
        at: datetime,
        *,
        user_id: int | None,
        chat_id: int | None,
        tokens: tuple[int, int] = (0, 0),
        first_token_ms: int | None = None,
        duration_ms: int | None = None,
        error_code: int | None = None,
    ) -> None:
        await Usage(self.database.runner, lambda: at).record(
            model="lite",
            usage=TokenUsage(tokens[0], tokens[1], sum(tokens)),
            user_id=user_id,
            chat_id=chat_id,
            first_token_ms=first_token_ms,
            duration_ms=duration_ms,
            error_code=error_code,
            sid=f"cht000{at:%H%M%S%f}",
        )

    async def reply_to(self, chat_id: int, count: int) -> Any:
        """The ``count``-th message the bot sent to ``chat_id`` (1-based), once it is there."""
        await self.fake.wait_for(lambda: len(self.fake.visible_messages(chat_id)) >= count)
        return self.fake.visible_messages(chat_id)[count - 1]

    async def ask(self, chat: Any, user: Any, command: str, count: int) -> str:
        await self.driver.send_command(chat, user, command)
        shown = await self.reply_to(chat.id, count)
        return str(shown.text)


BotMaker = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def make_admin_bot(tmp_path: Path) -> AsyncIterator[BotMaker]:
    stack = contextlib.AsyncExitStack()
    tasks: list[tuple[BotRuntime, asyncio.Task[None]]] = []

    async def make(
        *,
        limits: dict[str, Any] | None = None,
        before_start: Callable[[TelegramDriver], object] | None = None,
        **telegram: Any,
    ) -> Bot:
        clock = ScaledClock(TIME_FACTOR)
        fake = await stack.enter_async_context(FakeTelegram(clock=clock.now))
        if before_start is not None:
            before_start(TelegramDriver(fake))
        credentials = Credentials.demo()
        simulator = await stack.enter_async_context(
            SparkSimulator(credentials, SimulatorOptions(frame_interval=0.005))
        )
        url = f"sqlite+aiosqlite:///{tmp_path / 'admin.sqlite3'}"
        settings: Settings = load_settings(
            None,
            spark={
                "app_id": credentials.app_id,
                "api_key": credentials.api_key,
                "api_secret": credentials.api_secret,
                "url": simulator.base_url,
                "max_retries": 0,
            },
            telegram={
                "bot_token": fake.token,
                "api_base_url": fake.root_url,
                "shutdown_grace_seconds": 0.5,
                "admin_user_ids": [ADMIN, *HELPERS],
                **telegram,
            },
            database={"url": url},
            limits=limits or {},
        )
        runtime = await stack.enter_async_context(open_bot_runtime(settings, clock=clock))
        task = asyncio.create_task(runtime.serve(), name="bot")
        tasks.append((runtime, task))
        database = create_database(url)
        stack.push_async_callback(database.dispose)
        await fake.wait_for_call("deleteWebhook")
        return Bot(fake, TelegramDriver(fake), simulator, runtime, database, clock)

    try:
        yield make
    finally:
        for runtime, task in tasks:
            runtime.request_stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 15)
        await stack.aclose()


def pre_lines(message_text: str) -> list[str]:
    """The report as the user reads it, line by line."""
    return message_text.splitlines()


def assert_fits_a_phone(message: Any) -> None:
    """Every line fits WIDTH columns, and the report is one monospace block."""
    assert [e["type"] for e in message.entities] == ["bold", "pre"]
    for line in str(message.text).splitlines():
        assert display_width(line) <= WIDTH, line


def midnight() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def seed(bot: Bot) -> None:
    """A ledger with known totals: today, 3 and 10 days ago, and 40 days ago (ignored)."""
    day = midnight()
    await db_rows.upsert_user(bot.database, 11, username="alice", first_name="Alice")
    await db_rows.upsert_user(bot.database, 12, first_name="Bob <b>")
    await db_rows.upsert_chat(bot.database, 11, type="private", title="Alice")
    await db_rows.upsert_chat(bot.database, -500, type="supergroup", title="研究小组 Research")
    await bot.record(day + timedelta(minutes=1), user_id=11, chat_id=11, tokens=(1000, 500),
                     first_token_ms=420, duration_ms=2500)  # fmt: skip
    await bot.record(day + timedelta(minutes=2), user_id=12, chat_id=-500, tokens=(3000, 1500),
                     first_token_ms=800, duration_ms=6000)  # fmt: skip
    await bot.record(day + timedelta(minutes=3), user_id=12, chat_id=-500, error_code=10013)
    await bot.record(day - timedelta(days=3), user_id=11, chat_id=-500, tokens=(20_000, 10_000),
                     first_token_ms=1500, duration_ms=21_000)  # fmt: skip
    await bot.record(day - timedelta(days=10), user_id=13, chat_id=13, error_code=11200)
    await bot.record(day - timedelta(days=40), user_id=14, chat_id=14, tokens=(9_999_999, 0))


def table_row(lines: list[str], label: str) -> list[str]:
    (found,) = [line for line in lines if line.startswith(label + " ")]
    return found[len(label) :].split()


async def ask_many(bot: Bot, commands: list[str], user_ids: list[int] | None) -> list[str]:
    """Each command from its own user in their own private chat, all at once; the replies."""
    chats = []
    for n, command in enumerate(commands):
        user_id = user_ids[n] if user_ids is not None else None
        user = bot.driver.user(id=user_id, first_name=f"U{n}")
        chat = bot.driver.private_chat(user)
        chats.append(chat)
        await bot.driver.send_command(chat, user, command)
    return [str((await bot.reply_to(chat.id, 1)).text) for chat in chats]


async def test_non_admin_is_refused_and_sees_no_data(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot()
    await seed(bot)
    commands = ["/stats", "/stats user @alice", "/stats export", "/quota @alice off"]
    answers = await ask_many(bot, commands, None)
    assert answers == ["This command is for the bot's administrators."] * 4
    assert not [d for chat_id in bot.fake.state.chats for d in bot.fake.documents(chat_id)]
    alice = await db_rows.user(bot.database, 11)
    assert alice is not None
    assert alice.daily_token_quota is None  # unchanged
    assert not bot.spark.requests


async def test_admins_get_stats_and_quota_in_their_command_menu(
    make_admin_bot: BotMaker,
) -> None:
    # Only ADMIN has opened the bot before it starts; Telegram refuses the other admins'
    # scopes ("chat not found"), which must not stop the bot.
    def admin_opened_the_bot(driver: TelegramDriver) -> None:
        driver.private_chat(driver.user(id=ADMIN, first_name="Op"))

    bot = await make_admin_bot(before_start=admin_opened_the_bot)
    admin_scope = {"type": "chat", "chat_id": ADMIN}
    menu = [entry["command"] for entry in bot.fake.commands(admin_scope)]
    assert menu[-2:] == ["stats", "quota"]
    assert {"new", "usage"} <= set(menu)
    zh_menu = bot.fake.commands(admin_scope, language_code="zh")
    assert [e["description"] for e in zh_menu[-2:]] == [
        "用量统计（管理员）",
        "设置用户每日 token 配额（管理员）",
    ]
    assert not bot.fake.commands({"type": "chat", "chat_id": HELPERS[0]})
    everyone = [entry["command"] for entry in bot.fake.commands()]
    assert "usage" in everyone
    assert not {"stats", "quota"} & set(everyone)
    # The bot is up: an admin who opens it later gets the greeting, then the menu too.
    late = bot.driver.user(id=HELPERS[0], first_name="Late")
    chat = bot.driver.private_chat(late)
    await bot.driver.send_command(chat, late, "/start")
    assert str((await bot.reply_to(chat.id, 1)).text).startswith("Hello!")
    late_scope = {"type": "chat", "chat_id": HELPERS[0]}
    await bot.fake.wait_for(lambda: bool(bot.fake.commands(late_scope, language_code="zh")))
    assert [e["command"] for e in bot.fake.commands(late_scope)][-2:] == ["stats", "quota"]
    await bot.driver.send_command(chat, late, "/stats")
    assert str((await bot.reply_to(chat.id, 2)).text).startswith("📊 Usage, whole bot\n")
    # Anyone else's /start changes no menu.
    member = bot.driver.user(first_name="Member")
    member_chat = bot.driver.private_chat(member)
    await bot.driver.send_command(member_chat, member, "/start")
    await bot.reply_to(member_chat.id, 1)
    assert not bot.fake.commands({"type": "chat", "chat_id": member.id})


async def test_stats_on_an_empty_ledger(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot()
    admin = bot.driver.user(id=ADMIN, first_name="Op")
    chat = bot.driver.private_chat(admin)
    await bot.driver.send_command(chat, admin, "/stats")
    shown = await bot.reply_to(chat.id, 1)
    assert_fits_a_phone(shown)
    assert str(shown.text).startswith("📊 Usage, whole bot\n")
    assert "No requests in the last 30 days." in str(shown.text)


async def test_stats_with_known_totals(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot()
    await seed(bot)
    admin = bot.driver.user(id=ADMIN, first_name="Op")
    chat = bot.driver.private_chat(admin)
    await bot.driver.send_command(chat, admin, "/stats")
    shown = await bot.reply_to(chat.id, 1)
    assert_fits_a_phone(shown)
    lines = pre_lines(str(shown.text))
    assert next(line.split() for line in lines if line.startswith(" ")) == [
        "today",
        "7",
        "d",
        "30",
        "d",
    ]
    assert table_row(lines, "requests") == ["3", "4", "5"]
    assert table_row(lines, "failed") == ["1", "1", "2"]
    assert table_row(lines, "users") == ["2", "2", "3"]
    assert table_row(lines, "chats") == ["2", "2", "3"]
    assert table_row(lines, "prompt") == ["4000", "24k", "24k"]
    assert table_row(lines, "answer") == ["2000", "12k", "12k"]
    assert table_row(lines, "tokens") == ["6000", "36k", "36k"]
    assert table_row(lines, "1st p50") == ["420ms", "800ms", "800ms"]
    assert table_row(lines, "1st p95") == ["800ms", "1.50s", "1.50s"]
    assert table_row(lines, "time p50") == ["2.50s", "6.00s", "6.00s"]
    assert table_row(lines, "time p95") == ["6.00s", "21.0s", "21.0s"]
    assert table_row(lines, "10013") == ["1", "1", "1"]
    assert table_row(lines, "11200") == ["0", "0", "1"]
    spark = lines[lines.index("Tokens per day (max 30k)") + 1]
    assert len(spark) == 30
    assert spark[-1] == "▂"  # today: 6000 of the peak
    assert spark[-4] == "█"  # three days ago: the peak, 30000
    assert spark.count(" ") == 28
    top_users = lines[lines.index("Top users, 30 d") + 1 :][:3]
    assert [line.split()[:3] for line in top_users] == [
        ["1", "@alice", "31.5k"],
        ["2", "Bob", "<b>"],
        ["3", "13", "0"],
    ]
    assert "Bob <b>" in str(shown.text)  # escaped as HTML, shown as written
    top_chats = lines[lines.index("Top chats, 30 d") + 1 :][:3]
    assert top_chats[0].split()[:2] == ["1", "研究小组"]
    assert top_chats[0].split()[-2:] == ["34.5k", "96%"]


async def test_stats_for_a_user_and_a_chat(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot(limits={"daily_token_quota": 50_000})
    await seed(bot)
    admin = bot.driver.user(id=ADMIN, first_name="Op", language_code="zh-hans")
    chat = bot.driver.private_chat(admin)
    await bot.driver.send_command(chat, admin, "/stats user @ALICE")
    shown = await bot.reply_to(chat.id, 1)
    assert_fits_a_phone(shown)
    lines = pre_lines(str(shown.text))
    assert lines[0] == "👤 @alice 的用量"
    assert table_row(lines, "请求") == ["1", "2", "2"]
    assert table_row(lines, "总计") == ["1500", "31.5k", "31.5k"]
    assert table_row(lines, "配额") == ["50k/天", "（默认）"]
    assert table_row(lines, "今日已用") == ["1,500"]
    assert table_row(lines, "今日剩余") == ["48,500"]

    await bot.driver.send_command(chat, admin, "/stats chat -500")
    shown = await bot.reply_to(chat.id, 2)
    assert_fits_a_phone(shown)
    lines = pre_lines(str(shown.text))
    assert lines[0] == "💬 研究小组 Research 的用量"
    assert table_row(lines, "请求") == ["2", "3", "3"]
    assert table_row(lines, "用户") == ["1", "2", "2"]


async def test_unknown_and_malformed_arguments(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot()
    await seed(bot)
    expected = {
        "/stats user @nobody": "I don't know the user @nobody: they have not written to me yet.",
        "/stats user 4242": "I don't know the user 4242: they have not written to me yet.",
        "/stats chat -42": "I have no record of the chat -42.",
        "/stats chat team": "/stats: the whole bot",
        "/stats users": "/stats: the whole bot",
        "/stats export now": "/stats: the whole bot",
        "/quota": "Usage: /quota <id|@name> <tokens per day|off|default>",
        "/quota @alice lots": "Usage: /quota <id|@name> <tokens per day|off|default>",
        "/quota @alice -5": "Usage: /quota <id|@name> <tokens per day|off|default>",
        "/quota @nobody 100": "I don't know the user @nobody: they have not written to me yet.",
    }
    answers = await ask_many(bot, list(expected), list(HELPERS[: len(expected)]))
    for (command, start), answer in zip(expected.items(), answers, strict=True):
        assert answer.startswith(start), (command, answer)
    alice = await db_rows.user(bot.database, 11)
    assert alice is not None
    assert alice.daily_token_quota is None


async def test_stats_only_in_private_chats(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot()
    await seed(bot)
    admin = bot.driver.user(id=ADMIN, first_name="Op")
    group = bot.driver.group("Team")
    bot.driver.fake.chat(group.id).members[admin.id] = "member"
    await bot.driver.send_command(group, admin, f"/stats@{bot.fake.bot_username}")
    shown = await bot.reply_to(group.id, 1)
    assert shown.text == "Statistics are shown only in a private chat with me."


async def test_export_csv_of_the_last_30_days(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot()
    await seed(bot)
    admin = bot.driver.user(id=ADMIN, first_name="Op")
    chat = bot.driver.private_chat(admin)
    await bot.driver.send_command(chat, admin, "/stats export")
    await bot.fake.wait_for(lambda: bot.fake.documents(chat.id))
    (document,) = bot.fake.documents(chat.id)
    assert document.file_name is not None
    assert re.fullmatch(r"usage-\d{8}-\d{8}\.csv", document.file_name)
    assert document.caption is not None
    assert document.caption.endswith(", 5 rows")
    rows = list(csv.DictReader(io.StringIO(document.data.decode())))
    assert len(rows) == 5
    assert [row["user_id"] for row in rows] == ["13", "11", "11", "12", "12"]
    assert [row["username"] for row in rows] == ["", "alice", "alice", "", ""]
    assert [row["total_tokens"] for row in rows] == ["0", "30000", "1500", "4500", "0"]
    assert [row["error_code"] for row in rows] == ["11200", "", "", "", "10013"]
    assert rows[1]["created_at"] == (midnight() - timedelta(days=3)).isoformat()
    assert rows[2]["first_token_ms"] == "420"
    assert rows[2]["duration_ms"] == "2500"
    assert rows[3]["chat_id"] == "-500"


async def test_quota_set_enforced_at_the_boundary_and_shown_in_usage(
    make_admin_bot: BotMaker,
) -> None:
    bot = await make_admin_bot()
    admin = bot.driver.user(id=ADMIN, first_name="Op")
    admin_chat = bot.driver.private_chat(admin)
    user = bot.driver.user(first_name="Ann", username="ann")
    chat = bot.driver.private_chat(user)
    await bot.driver.send_text(chat, user, "hello")  # the bot learns who Ann is
    await bot.fake.wait_for(lambda: bot.fake.visible_messages(chat.id))
    (first,) = await ledger_tokens(bot, user.id)

    answer = await bot.ask(admin_chat, admin, f"/quota @ann {first + 1}", 1)
    assert answer.startswith(f"✅ @ann: daily quota {first + 1:,} tokens.")
    assert "(set)" in answer

    await bot.driver.send_text(chat, user, "second question")  # one token left: admitted
    await bot.fake.wait_for(lambda: len(bot.fake.visible_messages(chat.id)) >= 2)
    await wait_ledger(bot, user.id, 2)
    spark_calls = len(bot.spark.requests)
    await bot.driver.send_text(chat, user, "third question")
    refused = await bot.reply_to(chat.id, 3)
    assert str(refused.text).startswith("You've used your daily quota of ")
    tomorrow = midnight() + timedelta(days=1)
    assert f"It resets at {tomorrow:%Y-%m-%d} 00:00 UTC." in str(refused.text)
    assert len(bot.spark.requests) == spark_calls  # Spark was not called

    await bot.driver.send_command(chat, user, "/usage")
    usage = await bot.reply_to(chat.id, 4)
    assert_fits_a_phone(usage)
    spent = sum(await ledger_tokens(bot, user.id))
    assert table_row(pre_lines(str(usage.text)), "today") == [f"{spent:,}"]
    assert table_row(pre_lines(str(usage.text)), "left today") == ["0"]

    answer = await bot.ask(admin_chat, admin, "/quota @ann off", 2)
    assert answer.startswith("✅ @ann: no daily quota.")
    await bot.driver.send_text(chat, user, "fourth question")
    await wait_ledger(bot, user.id, 3)
    ann = await db_rows.user(bot.database, user.id)
    assert ann is not None
    assert ann.daily_token_quota == 0
    answer = await bot.ask(admin_chat, admin, f"/quota {user.id} default", 3)
    assert answer.startswith("✅ @ann: back to the default quota (unlimited).")


async def test_rate_limit_says_when_to_try_again(make_admin_bot: BotMaker) -> None:
    bot = await make_admin_bot(limits={"user_rate_limit": 1})
    user = bot.driver.user(first_name="Ann")
    chat = bot.driver.private_chat(user)
    asked_at = bot.clock.now()
    await bot.driver.send_text(chat, user, "one")
    await bot.driver.send_text(chat, user, "two")
    await wait_ledger(bot, user.id, 1)
    await bot.fake.wait_for(lambda: len(bot.fake.visible_messages(chat.id)) >= 2)
    texts = [str(m.text) for m in bot.fake.visible_messages(chat.id)]
    refusals = [t for t in texts if t.startswith("You're asking very fast.")]
    assert len(refusals) == 1
    seconds = int(re.findall(r"again in (\d+) s", refusals[0])[0])
    # The window opened when "one" was admitted, after it was asked; the refusal was worked
    # out before Telegram got it. Both on the bot's clock, which the fake shares.
    (refused,) = [
        c
        for c in bot.fake.calls_to("sendMessage", chat_id=chat.id)
        if str(c.params["text"]).startswith("You're asking very fast.")
    ]
    assert round(RATE_WINDOW_SECONDS - (refused.at - asked_at)) <= seconds <= RATE_WINDOW_SECONDS
    assert len(bot.spark.requests) == 1
    # The admin is not limited.
    admin = bot.driver.user(id=ADMIN, first_name="Op")
    admin_chat = bot.driver.private_chat(admin)
    for question in ("a", "b"):
        await bot.driver.send_text(admin_chat, admin, question)
    await wait_ledger(bot, ADMIN, 2)
    assert len(bot.spark.requests) == 3


async def ledger_tokens(bot: Bot, user_id: int) -> list[int]:
    await wait_ledger(bot, user_id, 1)
    totals = await db_rows.usage_totals(
        bot.database, midnight() - timedelta(days=1), user_id=user_id
    )
    assert totals.requests >= 1
    return await db_rows.tokens_of(bot.database, user_id)


async def wait_ledger(bot: Bot, user_id: int, count: int) -> None:
    async with asyncio.timeout(10):
        while True:
            totals = await db_rows.usage_totals(
                bot.database, midnight() - timedelta(days=1), user_id=user_id
            )
            if totals.requests >= count:
                return
            await asyncio.sleep(0.05)
