"""``python -m bot`` as an operator starts it with a setting that cannot work.

Every start-up failure an operator can cause (the database, the webhook's address and
secret, the listening port, the token, the Bot API) ends the process with exit code 2 and one
line on stderr that says what to fix, with no traceback and no secret in it. The bot runs as a
child process against the in-process Bot API fake, with real SQLite files and, where
``TEST_DATABASE_URL`` is set, the real PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from storage.migrate import upgrade
from tests.support.bot_harness import BotProcess, ProcessFactory, free_port
from tests.support.db_fixtures import postgres_base_url
from tests.support.fake_telegram import BotApiError, FakeTelegram
from tests.support.spark_fixtures import spark_env
from tests.support.telegram_fixtures import FakeFactory

START_TIMEOUT = 30.0  # a cold child imports ptb and SQLAlchemy, then gives up
PASSWORD = "s3cret-PW-never-shown"


def _env(fake: FakeTelegram | None, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        "TELEGRAM_BOT_TOKEN": fake.token if fake else "123456:TEST-token-never-used",
        **spark_env(),
        "DATABASE_URL": database_url,
        # Quiet unless something is wrong: the failure must be the only line.
        "LOG_LEVEL": "WARNING",
    }
    if fake is not None:
        env["TELEGRAM_API_BASE_URL"] = fake.root_url
    return {**env, **extra}


def _sqlite(tmp_path: Path, name: str = "bot.sqlite3") -> str:
    return f"sqlite+aiosqlite:///{tmp_path / name}"


async def _fails(process: BotProcess) -> str:
    """Run the process to its end; it must fail with exit code 2 and one line on stderr."""
    await process.start()
    code = await process.wait(timeout=START_TIMEOUT)
    stderr = process.stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert code == 2, stderr
    (line,) = lines
    assert line.startswith("error: "), line
    return line


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` (a file or a directory) unwritable, for root too (immutable), or skip."""
    chattr = shutil.which("chattr")
    if os.geteuid() == 0 and chattr is None:
        pytest.skip("root without chattr here: nothing can be made read-only")
    mode = path.stat().st_mode
    path.chmod(mode & ~0o222)
    immutable = False
    try:
        if os.geteuid() == 0 and chattr is not None:
            made = subprocess.run([chattr, "+i", str(path)], check=False)  # noqa: S603 (fixed)
            if made.returncode != 0:
                pytest.skip("chattr +i is refused here: nothing can be made read-only for root")
            immutable = True
        yield
    finally:
        if immutable and chattr is not None:
            subprocess.run([chattr, "-i", str(path)], check=True)  # noqa: S603 (fixed)
        path.chmod(mode)


# -- settings Telegram would refuse -----------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("WEBHOOK_URL", "http://bot.example.com/hook-path", "must be an https:// URL"),
        ("WEBHOOK_URL", "https:///hook-path", "has no host"),
        ("WEBHOOK_SECRET", "not allowed: spaces or colons", "A-Z, a-z, 0-9, _ and -"),
        ("WEBHOOK_SECRET", "x" * 257, "1 to 256 characters"),
    ],
)
async def test_a_webhook_setting_telegram_refuses_stops_the_bot_before_it_starts(
    bot_process: ProcessFactory, tmp_path: Path, variable: str, value: str, problem: str
) -> None:
    # No Bot API server of one's own: Telegram's rules apply, and nothing is contacted.
    env = _env(None, _sqlite(tmp_path), WEBHOOK_URL="https://bot.example.com/hook-path")
    env[variable] = value
    line = await _fails(bot_process(env))
    assert line.startswith(f"error: invalid configuration: {variable}: ")
    assert problem in line
    assert value not in line
    assert "hook-path" not in line  # a webhook path may be a secret


async def test_telegram_refusing_an_http_webhook_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    # With a Bot API server of one's own, http:// may do (--local mode); this one says no.
    fake = await make_fake_telegram()
    port = free_port()
    env = _env(
        fake,
        _sqlite(tmp_path),
        WEBHOOK_URL=f"http://127.0.0.1:{port}/hook-path",
        HOST="127.0.0.1",
        PORT=str(port),
    )
    line = await _fails(bot_process(env))
    assert "WEBHOOK_URL" in line
    assert "an https url must be provided for webhook" in line.lower()
    assert "hook-path" not in line
    assert [call.status for call in fake.calls_to("setWebhook")] == [400]


async def test_telegram_refusing_the_webhook_address_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    fake.fail_next(
        "setWebhook",
        BotApiError.bad_request("bad webhook: Failed to resolve host: Name or service not known"),
    )
    port = free_port()
    env = _env(
        fake,
        _sqlite(tmp_path),
        WEBHOOK_URL="https://no-such-host.example/hook-path",
        HOST="127.0.0.1",
        PORT=str(port),
    )
    line = await _fails(bot_process(env))
    assert "WEBHOOK_URL" in line
    assert "failed to resolve host" in line.lower()
    assert "no-such-host.example" in line
    assert "hook-path" not in line


async def test_a_token_telegram_does_not_know_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    wrong = "654321:WRONG-token-of-another-bot"
    env = _env(fake, _sqlite(tmp_path), TELEGRAM_BOT_TOKEN=wrong)
    line = await _fails(bot_process(env))
    assert "TELEGRAM_BOT_TOKEN" in line
    assert "@BotFather" in line
    assert "WRONG-token" not in line


async def test_an_unreachable_bot_api_stops_the_bot(
    bot_process: ProcessFactory, tmp_path: Path
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    env = _env(None, _sqlite(tmp_path), TELEGRAM_API_BASE_URL=nobody)
    line = await _fails(bot_process(env))
    assert "TELEGRAM_API_BASE_URL" in line
    assert nobody in line


# -- the webhook server's address ------------------------------------------------------------


async def test_a_port_already_in_use_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _env(
            fake,
            _sqlite(tmp_path),
            WEBHOOK_URL="https://bot.example.com/tg",
            HOST="127.0.0.1",
            PORT=str(port),
        )
        line = await _fails(bot_process(env))
    assert f"127.0.0.1:{port}" in line
    assert "PORT" in line
    assert "in use" in line
    assert fake.calls_to("setWebhook") == []  # Telegram was never sent to a dead address


async def test_a_host_that_is_not_this_machine_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    env = _env(
        fake,
        _sqlite(tmp_path),
        WEBHOOK_URL="https://bot.example.com/tg",
        HOST="192.0.2.1",  # TEST-NET-1: no machine has it
        PORT=str(free_port()),
    )
    line = await _fails(bot_process(env))
    assert "192.0.2.1" in line
    assert "HOST" in line


# -- the database ----------------------------------------------------------------------------


async def test_a_sqlite_directory_that_cannot_be_made_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    (tmp_path / "a-file").write_text("not a directory")
    env = _env(fake, _sqlite(tmp_path / "a-file" / "data"))
    line = await _fails(bot_process(env))
    assert "DATABASE_URL" in line
    assert str(tmp_path / "a-file") in line
    assert fake.calls_to("getMe") == []


async def test_a_read_only_sqlite_directory_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    data = tmp_path / "data"
    data.mkdir()
    env = _env(fake, _sqlite(data))
    with _read_only(data):
        line = await _fails(bot_process(env))
    assert "DATABASE_URL" in line
    assert str(data / "bot.sqlite3") in line


async def test_a_read_only_sqlite_file_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    url = _sqlite(tmp_path)
    await upgrade(url)  # a good database of a previous run, now read-only
    database = tmp_path / "bot.sqlite3"
    for leftover in ("bot.sqlite3-wal", "bot.sqlite3-shm"):
        (tmp_path / leftover).unlink(missing_ok=True)
    with _read_only(database):
        line = await _fails(bot_process(_env(fake, url)))
    assert "DATABASE_URL" in line
    assert "read" in line.lower()
    assert str(database) in line


async def test_a_database_of_a_newer_version_stops_the_bot(
    make_fake_telegram: FakeFactory, bot_process: ProcessFactory, tmp_path: Path
) -> None:
    fake = await make_fake_telegram()
    url = _sqlite(tmp_path)
    await upgrade(url)
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '2099_01_01_0001'")
        connection.commit()
    line = await _fails(bot_process(_env(fake, url)))
    assert "2099_01_01_0001" in line
    assert "newer" in line


@pytest.mark.parametrize(
    "url",
    [
        "not a database url",
        f"mysql://bot:{PASSWORD}@127.0.0.1/bot",
        f"postgresql://bot:{PASSWORD}@127.0.0.1:notaport/bot",
    ],
)
async def test_a_database_url_the_bot_cannot_use_stops_it(
    bot_process: ProcessFactory, tmp_path: Path, url: str
) -> None:
    line = await _fails(bot_process(_env(None, url)))
    assert "DATABASE_URL" in line
    assert PASSWORD not in line


def _postgres(**parts: str | int) -> str:
    base = make_url(postgres_base_url())
    return base.set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"database": "no_such_database"}, 'database "no_such_database" does not exist'),
        ({"username": "no_such_role"}, 'role "no_such_role" does not exist'),
        ({"port": 0}, "connect"),
    ],
    ids=["database", "user", "port"],
)
async def test_a_postgresql_url_that_does_not_lead_in_stops_the_bot(
    make_fake_telegram: FakeFactory,
    bot_process: ProcessFactory,
    change: dict[str, str | int],
    problem: str,
) -> None:
    fake = await make_fake_telegram()
    if change.get("port") == 0:
        change = {"port": free_port(), "host": "127.0.0.1"}
    url = _postgres(password=PASSWORD, **change)
    line = await _fails(bot_process(_env(fake, url)))
    assert "DATABASE_URL" in line
    assert problem in line
    assert PASSWORD not in line
    assert "***" in line
    assert fake.calls_to("getMe") == []


async def test_migrate_reports_a_database_it_cannot_open_on_one_line(
    bot_process: ProcessFactory, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    env = _env(None, _sqlite(tmp_path / "a-file" / "data"))
    line = await _fails(bot_process(env, args=["migrate"]))
    assert "DATABASE_URL" in line
