"""API keys as the operator handles them: ``python -m bot keys`` in a real subprocess, the keys
repository on SQLite and PostgreSQL, and ``python -m bot web`` serving a key it made."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from pathlib import Path

import aiohttp
import openai

from bot.spark.simulator import Credentials, SparkSimulator
from storage.database import Database, create_database
from storage.repositories.api_keys import key_hash
from tests.support import db_rows
from tests.support.bot_harness import free_port

PROJECT = Path(__file__).resolve().parent.parent


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        "PYTHONPATH": str(PROJECT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'keys.sqlite3'}",
        **extra,
    }


async def _keys(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "keys",
        *args,
        cwd=tmp_path,
        env=_environment(tmp_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 45)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _printed_key(out: str) -> str:
    return next(
        line.removeprefix("key: ") for line in out.splitlines() if line.startswith("key: ")
    )


async def test_a_key_is_shown_once_stored_as_a_hash_listed_and_revoked(tmp_path: Path) -> None:
    code, out, _ = await _keys(
        tmp_path, "create", "ci-bot", "--daily-tokens", "5000", "--rate", "30", "--models", "MAX"
    )
    assert code == 0
    key = _printed_key(out)
    assert key.startswith("sk-spark-")
    assert "cannot be shown again" in out

    database = create_database(f"sqlite+aiosqlite:///{tmp_path / 'keys.sqlite3'}")
    try:
        stored = await db_rows.one(database, "SELECT * FROM api_keys")
        assert stored is not None
        user = await db_rows.one(database, "SELECT * FROM users WHERE id = :id", id=stored.user_id)
    finally:
        await database.dispose()
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (stored.daily_tokens, stored.rate_per_minute, stored.models) == (5000, 30, "max")
    assert user is not None
    assert user.id < 0  # never a Telegram user's id
    assert user.daily_token_quota == 5000
    assert user.first_name == "key ci-bot"

    code, out, _ = await _keys(tmp_path, "list")
    assert code == 0
    assert "ci-bot: user" in out
    assert "models max" in out
    assert "active" in out
    assert key not in out
    assert stored.key_hash not in out

    code, _, err = await _keys(tmp_path, "create", "ci-bot")
    assert code == 2
    assert "exists already" in err

    assert (await _keys(tmp_path, "revoke", "ci-bot"))[0] == 0
    code, out, _ = await _keys(tmp_path, "list")
    assert "REVOKED" in out
    code, _, err = await _keys(tmp_path, "revoke", "ci-bot")
    assert code == 2
    assert "no active key" in err


async def test_bad_key_options_are_named(tmp_path: Path) -> None:
    code, _, err = await _keys(tmp_path, "create", "x", "--models", "gpt-4o")
    assert code == 2
    assert "--models: unknown model 'gpt-4o'" in err
    code, _, err = await _keys(tmp_path, "create", "x", "--user", "42", "--daily-tokens", "9")
    assert code == 2
    assert "/quota" in err


async def test_keys_on_each_backend(database: Database) -> None:
    first = await database.api_keys.create("a", key_hash("sk-1"), daily_tokens=10)
    second = await database.api_keys.create("b", key_hash("sk-2"), models=("max", "x1"))
    shared = await database.api_keys.create("c", key_hash("sk-3"), user_id=4242)
    assert first.user_id == -1
    assert second.user_id == -2
    assert shared.user_id == 4242
    found = await database.api_keys.find(key_hash("sk-2"))
    assert await database.api_keys.find(key_hash("sk-4")) is None
    assert (await db_rows.user(database, 4242)) is not None
    assert (await db_rows.user(database, -1)) is not None
    assert found is not None
    assert found.models == ("max", "x1")
    assert not found.revoked
    assert await database.api_keys.revoke("b")
    assert not await database.api_keys.revoke("b")
    keys = await database.api_keys.list_all()
    assert [(key.name, key.revoked) for key in keys] == [("a", False), ("b", True), ("c", False)]


async def test_python_m_bot_web_serves_a_key_made_by_python_m_bot_keys(
    tmp_path: Path, spark_simulator: SparkSimulator
) -> None:
    key = _printed_key((await _keys(tmp_path, "create", "app"))[1])
    demo = Credentials.demo()
    port = free_port()
    env = _environment(
        tmp_path,
        SPARK_APP_ID=demo.app_id,
        SPARK_API_KEY=demo.api_key,
        SPARK_API_SECRET=demo.api_secret,
        SPARK_URL=spark_simulator.base_url,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    log = (tmp_path / "web.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "web", cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with session.get(base + "/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
        async with openai.AsyncOpenAI(api_key=key, base_url=base + "/v1", max_retries=0) as client:
            completion = await client.chat.completions.create(
                model="lite", messages=[{"role": "user", "content": "Hi"}]
            )
        assert completion.choices[0].message.content == spark_simulator.requests[0].answer_text
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    logged = (tmp_path / "web.log").read_text()
    assert "HTTP API on 127.0.0.1" in logged
    assert "api key app: ok" in logged
    assert key not in logged
