"""The command line as a user runs it: real subprocesses, a real simulator, real SQLite."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from bot.spark.models import get_model
from bot.spark.simulator import Credentials, SparkSimulator, answer_text

PROJECT = Path(__file__).resolve().parent.parent


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell or .env leaks in."""
    keep = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        "PYTHONPATH": str(PROJECT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}",
        **extra,
    }


async def _run(tmp_path: Path, *args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,  # no .env here
        env=_environment(tmp_path, **env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 45)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _spark_env(simulator: SparkSimulator) -> dict[str, str]:
    demo = Credentials.demo()
    return {
        "SPARK_APP_ID": demo.app_id,
        "SPARK_API_KEY": demo.api_key,
        "SPARK_API_SECRET": demo.api_secret,
        "SPARK_URL": simulator.base_url,
    }


async def test_bot_without_token_says_what_is_missing(tmp_path: Path) -> None:
    code, _, err = await _run(tmp_path)
    assert code == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in err
    assert "python -m bot chat --simulate" in err
    assert "python -m bot web --simulate" in err


async def test_ask_simulated_prints_the_answer(tmp_path: Path) -> None:
    code, out, err = await _run(tmp_path, "ask", "--simulate", "what are tides?")
    assert code == 0, err
    assert out == answer_text("what are tides?", get_model("lite")) + "\n"


async def test_ask_failure_exits_non_zero_with_the_error_on_stderr(tmp_path: Path) -> None:
    code, out, err = await _run(tmp_path, "ask", "--simulate", "[[error:10013]] bad")
    assert code == 1
    assert out == ""
    assert err.startswith("error: Spark declined to answer this (content policy).")
    assert "10013" in err


async def test_ask_without_credentials_names_them(tmp_path: Path) -> None:
    code, _, err = await _run(tmp_path, "ask", "hello")
    assert code == 2
    assert "SPARK_APP_ID, SPARK_API_KEY, SPARK_API_SECRET" in err


async def test_invalid_settings_are_all_named_at_start(tmp_path: Path) -> None:
    code, _, err = await _run(
        tmp_path, "ask", "--simulate", "hi", SPARK_MAX_TOKENS="99999", SPARK_TOP_K="0"
    )
    assert code == 2
    assert "SPARK_MAX_TOKENS" in err
    assert "SPARK_TOP_K" in err


async def test_terminal_chat_is_multi_turn_against_spark(tmp_path: Path) -> None:
    async with SparkSimulator(Credentials.demo()) as simulator:
        code, out, err = await _run(
            tmp_path,
            "chat",
            stdin="first question\nsecond question\n/exit\n",
            **_spark_env(simulator),
        )
        assert code == 0, err
        lite = get_model("lite")
        first = answer_text("first question", lite)
        assert first in out
        assert answer_text("second question", lite) in out
        second_request = simulator.requests[-1].request
        assert second_request is not None
        history = second_request["payload"]["message"]["text"]
        assert [m["role"] for m in history] == ["user", "assistant", "user"]
        assert [m["content"] for m in history] == ["first question", first, "second question"]


async def test_terminal_chat_new_forgets_history(tmp_path: Path) -> None:
    async with SparkSimulator(Credentials.demo()) as simulator:
        code, out, err = await _run(
            tmp_path, "chat", stdin="one\n/new\ntwo\n", **_spark_env(simulator)
        )
        assert code == 0, err
        assert "(new conversation)" in out
        last = simulator.requests[-1].request
        assert last is not None
        assert last["payload"]["message"]["text"] == [{"role": "user", "content": "two"}]


async def test_terminal_chat_simulated_needs_no_credentials(tmp_path: Path) -> None:
    code, out, err = await _run(tmp_path, "chat", "--simulate", stdin="hello\n")
    assert code == 0, err
    assert answer_text("hello", get_model("lite")) in out


async def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    code, _, err = await _run(tmp_path, "migrate")
    assert code == 0, err
    assert (tmp_path / "cli.sqlite3").stat().st_size > 0
    code, _, err = await _run(tmp_path, "migrate")  # idempotent
    assert code == 0, err
