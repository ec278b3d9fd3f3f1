"""``make run``'s choice and ``python -m bot web --simulate`` as processes, as a newcomer
runs them: no Telegram token, no Spark credentials."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from tests.support.bot_harness import free_port

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SPARK_", "TELEGRAM_", "HTTP_API_", "DATABASE_URL"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"
    env.update(extra)
    return env


async def _choice(tmp_path: Path, **extra: str) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.run_choice",
        cwd=tmp_path,
        env=_env(tmp_path, **extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0
    return out.decode().strip(), err.decode()


async def test_make_run_chooses_the_web_chat_without_a_token(tmp_path: Path) -> None:
    args, said = await _choice(tmp_path)
    assert args == "web --simulate"
    assert "simulator" in said
    assert "http://127.0.0.1:8080/" in said
    assert "TELEGRAM_BOT_TOKEN" in said
    assert "SPARK_APP_ID" in said
    spark = {"SPARK_APP_ID": "a", "SPARK_API_KEY": "b", "SPARK_API_SECRET": "c"}
    args, said = await _choice(tmp_path, **spark)
    assert args == "web"
    assert "keys create" in said
    args, _ = await _choice(tmp_path, TELEGRAM_BOT_TOKEN="123:abc", **spark)
    assert args == "run"


async def test_the_procfile_command_never_falls_back_to_the_simulator(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    # It stops at once with the message it always gave, serving nothing.
    assert process.returncode == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in err.decode()
    assert b"Chat page" not in out


async def test_web_simulate_serves_the_page_with_a_loopback_demo_key(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "web",
        "--simulate",
        cwd=tmp_path,
        env=_env(tmp_path, PORT=str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        second = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert first.strip() == f"Chat page: http://127.0.0.1:{port}/"
        key = second.rsplit(" ", 1)[-1].strip()
        assert key.startswith("sk-spark-")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/web/config.json")).json() == {"demo": True, "key": key}
            page = await http.get("/")
            assert page.status_code == 200
            assert "Content-Security-Policy" in page.headers
            headers = {"Authorization": f"Bearer {key}"}
            created = await http.post("/v1/conversations", headers=headers, json={})
            number = created.json()["id"]
            answer = await http.post(
                f"/v1/conversations/{number}/messages",
                headers=headers,
                json={"text": "[[answer:hello]]"},
                timeout=30,
            )
            assert answer.json()["message"]["content"] == "hello"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
