"""End to end: the SQLite database taken away under the running bot, and given back.

The bot runs in webhook mode, so ``/healthz`` can be asked as a load balancer would; updates
are posted to its webhook like Telegram posts them. The database lives in a directory of its
own, which the tests move away (as a deleted or unmounted volume looks to the bot), replace,
make immutable, and move back (the same file, as a restored mount brings it).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from bot.spark.simulator import SimulatorOptions
from tests.support.bot_harness import (
    BotFactory,
    ProcessFactory,
    RunningBot,
    free_port,
    spark_messages,
)
from tests.support.db_fixtures import drop_postgres_schema, postgres_base_url, postgres_schema_url
from tests.support.fake_telegram_errors import JsonDict
from tests.support.spark_fixtures import SimulatorFactory, spark_env
from tests.support.tcp_proxy import TcpProxy
from tests.support.telegram_driver import TelegramDriver, TgChat, TgUser
from tests.support.telegram_fixtures import FakeFactory

APOLOGY = (
    "⚠️ Something went wrong on my side and this message was not answered. "
    "Please try again in a moment."
)
MISSING = "file missing (its directory deleted or moved?)"
START_TIMEOUT = 20.0  # a child process imports ptb and SQLAlchemy and migrates first
# A bot process runs in real time, on a machine other tests keep busy.
PROCESS_TIMEOUT = 20.0


def _url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'bot.sqlite3'}"


class Webhook:
    """The bot's own HTTP side: Telegram's posts and the health probe."""

    def __init__(self, bot: RunningBot, port: int) -> None:
        self.bot = bot
        self.root = f"http://127.0.0.1:{port}"
        (registered,) = bot.fake.calls_to("setWebhook")
        self.secret = str(registered.params["secret_token"])

    async def deliver(self, message: JsonDict) -> None:
        update = self.bot.update_json(message)
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.secret}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.root}/tg", json=update, headers=headers) as response,
        ):
            assert response.status == 200

    async def health(self) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.root}/healthz") as response,
        ):
            return response.status, await response.text()


async def _webhook_bot(
    make_bot: BotFactory, database_url: str, simulator_options: SimulatorOptions | None = None
) -> Webhook:
    port = free_port()
    bot = await make_bot(
        telegram={
            "webhook_url": f"https://127.0.0.1:{port}/tg",
            "host": "127.0.0.1",
            "port": port,
        },
        database_url=database_url,
        simulator_options=simulator_options,
    )
    return Webhook(bot, port)


async def _ask(hook: Webhook, chat: TgChat, user: TgUser, question: str) -> None:
    await hook.deliver(await hook.bot.driver.send_text(chat, user, question))


async def _replies(bot: RunningBot, chat: TgChat, count: int) -> list[str]:
    return await bot.fake.wait_for(
        lambda: texts if len(texts := bot.fake.visible_texts(chat.id)) >= count else None
    )


def _logged(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()
    ]


def _answers_completed(caplog: pytest.LogCaptureFixture) -> int:
    return sum("answer complete" in r.getMessage() for r in caplog.records)


async def test_database_taken_away_gets_apologies_and_is_used_again_once_back(
    make_bot: BotFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data, away = tmp_path / "data", tmp_path / "away"
    hook = await _webhook_bot(make_bot, _url(data))
    bot = hook.bot
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await _ask(hook, chat, user, "[[answer:First.]] one")
    await bot.wait_stored(chat.id, 1)
    assert await hook.health() == (200, "ok")

    data.rename(away)  # the directory is gone from under the bot (same inode, kept aside)
    assert await hook.health() == (503, f"database unavailable: {MISSING}")
    await _ask(hook, chat, user, "[[answer:Second.]] two")
    await _ask(hook, chat, user, "[[answer:Third.]] three")
    assert await _replies(bot, chat, 3) == ["First.", APOLOGY, APOLOGY]
    assert bot.questions() == ["[[answer:First.]] one"]  # nothing reached Spark meanwhile
    assert _answers_completed(caplog) == 1
    path = str(data / "bot.sqlite3")
    assert _logged(caplog, logging.ERROR, "database unavailable") == [
        f"database unavailable: database {path}: {MISSING}; questions get an apology until "
        "it is back"
    ]  # once, however many messages it cost
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []  # and no traceback
    assert not data.exists()  # nothing created a new file (or directory) in its place

    away.rename(data)  # the same directory, the same file, is back
    await _ask(hook, chat, user, "[[answer:Fourth.]] four")
    assert (await _replies(bot, chat, 4))[3] == "Fourth."
    stored = await bot.wait_stored(chat.id, 2)
    assert [(m.role, m.content) for m in stored] == [
        ("user", "[[answer:First.]] one"),
        ("assistant", "First."),
        ("user", "[[answer:Fourth.]] four"),
        ("assistant", "Fourth."),
    ]
    assert [m["content"] for m in spark_messages(bot.spark.requests[-1])] == [
        "[[answer:First.]] one",
        "First.",
        "[[answer:Fourth.]] four",
    ]  # the history from before the outage is still the context
    assert await hook.health() == (200, "ok")
    assert len(_logged(caplog, logging.WARNING, "database available again")) == 1


async def test_a_replaced_database_file_is_refused_until_restart(
    make_bot: BotFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data, away = tmp_path / "data", tmp_path / "away"
    hook = await _webhook_bot(make_bot, _url(data))
    bot = hook.bot
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await _ask(hook, chat, user, "[[answer:First.]] one")
    await bot.wait_stored(chat.id, 1)

    data.rename(away)
    data.mkdir()
    (data / "bot.sqlite3").touch()  # an empty file where the database was
    await _ask(hook, chat, user, "[[answer:Second.]] two")
    assert (await _replies(bot, chat, 2))[1] == APOLOGY
    status, reason = await hook.health()
    assert status == 503
    assert reason.startswith("database unavailable: file replaced")
    await _ask(hook, chat, user, "[[answer:Third.]] three")  # it stays refused
    assert (await _replies(bot, chat, 3))[2] == APOLOGY
    assert bot.questions() == ["[[answer:First.]] one"]
    (logged,) = _logged(caplog, logging.ERROR, "database unavailable")
    assert f"{data / 'bot.sqlite3'}: file replaced" in logged
    assert [p.name for p in data.iterdir()] == ["bot.sqlite3"]  # no -wal, no -shm beside it
    assert (data / "bot.sqlite3").stat().st_size == 0  # never written to

    shutil.rmtree(data)
    away.rename(data)
    await _ask(hook, chat, user, "[[answer:Fourth.]] four")
    assert (await _replies(bot, chat, 4))[3] == "Fourth."
    stored = await bot.wait_stored(chat.id, 2)
    assert [m.content for m in stored if m.role == "assistant"] == ["First.", "Fourth."]
    assert await hook.health() == (200, "ok")


async def test_an_answer_streaming_as_the_database_goes_reaches_the_user_unstored(
    make_bot: BotFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data, away = tmp_path / "data", tmp_path / "away"
    # About 6 s of writing: two checkpoints (every 3 s) fall after the directory has gone.
    slow = SimulatorOptions(frame_interval=0.05, chars_per_frame=12)
    hook = await _webhook_bot(make_bot, _url(data), slow)
    bot = hook.bot
    user = bot.driver.user()
    chat = bot.driver.private_chat(user)
    await _ask(hook, chat, user, "[[long:1500]] a long story")
    await bot.fake.wait_for(lambda: len(max(bot.fake.draft_history(chat.id), default="")) > 24)
    data.rename(away)

    (shown,) = await bot.fake.wait_for(lambda: bot.fake.visible_texts(chat.id), timeout=15)
    (request,) = bot.spark.requests
    assert shown == request.answer_text.strip()  # the whole answer, not an apology
    await bot.fake.wait_for(lambda: _logged(caplog, logging.INFO, "answer not stored"))
    assert _logged(caplog, logging.WARNING, "checkpoint not stored")
    assert _answers_completed(caplog) == 0  # nothing pretends it was stored

    away.rename(data)
    await _ask(hook, chat, user, "[[answer:Next.]] and then?")
    assert (await _replies(bot, chat, 2))[1] == "Next."
    stored = await bot.wait_stored(chat.id, 1)
    assert [(m.role, m.status) for m in stored] == [
        ("user", "complete"),
        ("assistant", "streaming"),  # marked partial at the next start
        ("user", "complete"),
        ("assistant", "complete"),
    ]


async def test_postgresql_going_away_gets_apologies_and_a_503(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    base = postgres_base_url()  # skips, visibly, without TEST_DATABASE_URL
    server = make_url(base)
    url, schema = await postgres_schema_url(base)
    try:
        async with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
            hook = await _webhook_bot(make_bot, _through(url, proxy.port))
            bot = hook.bot
            user = bot.driver.user()
            chat = bot.driver.private_chat(user)
            await _ask(hook, chat, user, "[[answer:First.]] one")
            await bot.wait_stored(chat.id, 1)
            assert await hook.health() == (200, "ok")

            proxy.cut()  # the server is gone: every connection dropped, new ones refused
            status, reason = await hook.health()
            assert status == 503
            assert reason.startswith("database unavailable: "), reason
            await _ask(hook, chat, user, "[[answer:Second.]] two")
            assert (await _replies(bot, chat, 2))[1] == APOLOGY
            assert bot.questions() == ["[[answer:First.]] one"]

            proxy.restore()
            await _ask(hook, chat, user, "[[answer:Third.]] three")
            assert (await _replies(bot, chat, 3))[2] == "Third."
            stored = await bot.wait_stored(chat.id, 2)
            assert [m.content for m in stored if m.role == "assistant"] == ["First.", "Third."]
            assert await hook.health() == (200, "ok")
            await bot.stop()
            await bot.database.dispose()
    finally:
        await drop_postgres_schema(base, schema)


def _through(url: str, port: int) -> str:
    """``url`` with its server replaced by the proxy on ``port``."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


# -- the bot as a process: files made immutable, fatal signals ----------------------------------


def _chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(  # noqa: S603 - fixed arguments, paths of this test
        ["chattr", flag, *map(str, paths)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    if shutil.which("chattr") is None or not _chattr("+i", path):
        pytest.skip("chattr +i is not available here (needs root and ext4/xfs/btrfs)")
    try:
        yield
    finally:
        _chattr("-i", path)


def _process_env(fake_url: str, token: str, spark_url: str, database_url: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": token,
        "TELEGRAM_API_BASE_URL": fake_url,
        **spark_env(spark_url),
        "DATABASE_URL": database_url,
        "SHUTDOWN_GRACE_SECONDS": "1",
    }


async def test_an_immutable_wal_index_fails_the_work_cleanly_instead_of_killing_the_bot(
    make_fake_telegram: FakeFactory,
    make_spark_simulator: SimulatorFactory,
    bot_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    fake = await make_fake_telegram()
    simulator = await make_spark_simulator()
    data = tmp_path / "data"
    process = bot_process(_process_env(fake.root_url, fake.token, simulator.base_url, _url(data)))
    await process.start()
    await fake.wait_for_call("deleteWebhook", timeout=START_TIMEOUT)
    driver = TelegramDriver(fake)
    user = driver.user()
    chat = driver.private_chat(user)
    await driver.send_text(chat, user, "[[answer:First.]] one")
    await fake.wait_for(lambda: fake.visible_texts(chat.id) == ["First."], timeout=10)
    # The answer is stored after it is shown: made immutable in the middle of that write, the
    # index would fail the write already under way (a check cannot see the future).
    await fake.wait_for(lambda: "answer complete" in process.stderr, timeout=10)

    # SQLite writes its WAL index through a shared memory map: on an immutable file that
    # write is a SIGBUS, for readers and the writer alike.
    with _immutable(data / "bot.sqlite3-shm"):
        await driver.send_text(chat, user, "[[answer:Second.]] two")
        await fake.wait_for(
            lambda: fake.visible_texts(chat.id) == ["First.", APOLOGY], timeout=PROCESS_TIMEOUT
        )
        assert process.process is not None
        assert process.process.returncode is None
    await driver.send_text(chat, user, "[[answer:Third.]] three")
    await fake.wait_for(
        lambda: fake.visible_texts(chat.id)[2:] == ["Third."], timeout=PROCESS_TIMEOUT
    )
    process.signal(signal.SIGTERM)
    assert await process.wait(timeout=8) == 0
    log = process.stderr
    assert "ERROR storage.availability: database unavailable: database " in log
    assert "bot.sqlite3: -shm file not writable (read-only or immutable)" in log
    assert "database available again" in log
    assert [r.question for r in simulator.requests] == [
        "[[answer:First.]] one",
        "[[answer:Third.]] three",
    ]


async def test_a_fatal_signal_leaves_a_line_in_the_log(
    make_fake_telegram: FakeFactory,
    make_spark_simulator: SimulatorFactory,
    bot_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    fake = await make_fake_telegram()
    simulator = await make_spark_simulator()
    env = _process_env(fake.root_url, fake.token, simulator.base_url, _url(tmp_path / "data"))
    process = bot_process(env)
    await process.start()
    await fake.wait_for_call("deleteWebhook", timeout=START_TIMEOUT)
    process.signal(signal.SIGBUS)  # what a fault on a memory-mapped file delivers
    assert await process.wait(timeout=8) == -signal.SIGBUS
    assert "Fatal Python error: Bus error" in process.stderr
