"""Command line: ``python -m bot [run|web|chat|ask|simulator|migrate|keys]``.

Settings are read once here and passed down; each command imports only what it needs so that
``simulator`` and ``migrate`` start without the Telegram stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import os
import sys
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

# python-telegram-bot 22 warns unless RetryAfter.retry_after is a timedelta; the bot accepts both.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.logs import RedactingFilter, configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="iFlytek Spark language models in Telegram."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the Telegram bot (the default)")
    web = commands.add_parser(
        "web", help="serve the chat page and the HTTP APIs alone on HOST:PORT (no Telegram)"
    )
    web.add_argument(
        "--simulate",
        action="store_true",
        help="use a built-in Spark simulator and a demo key, on 127.0.0.1 only",
    )

    chat = commands.add_parser("chat", help="multi-turn chat with Spark in this terminal")
    chat.add_argument("--simulate", action="store_true", help="talk to a built-in Spark simulator")

    ask = commands.add_parser("ask", help="print one streamed answer to stdout")
    ask.add_argument("question", help="the question to ask")
    ask.add_argument("--simulate", action="store_true", help="use a built-in Spark simulator")

    sim = commands.add_parser("simulator", help="serve a local Spark-compatible WebSocket API")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--app-id", default=None)
    sim.add_argument("--api-key", default=None)
    sim.add_argument("--api-secret", default=None)

    commands.add_parser("migrate", help="upgrade the database schema to the newest revision")
    from bot.web.keys_cli import add_parser as add_keys_parser

    add_keys_parser(commands)
    return parser


def _settings(command: str) -> tuple[Settings, RedactingFilter]:
    settings = load_settings()
    secrets = [
        secret.get_secret_value()
        for secret in (
            settings.spark.api_key,
            settings.spark.api_secret,
            settings.telegram.bot_token,
            settings.telegram.webhook_secret,
        )
        if secret is not None
    ]
    with contextlib.suppress(ValueError):  # a URL that does not parse has no password to hide
        password = urlsplit(settings.database.url).password
        secrets += [password, unquote(password)] if password else []
    level = settings.log_level
    if command in ("chat", "ask") and "LOG_LEVEL" not in os.environ:
        level = "ERROR"  # the terminal shows answers; failures are explained on stderr anyway
    return settings, configure_logging(level, secrets)


def main(argv: Sequence[str] | None = None) -> int:
    # A fatal signal (SIGBUS when SQLite's memory-mapped WAL index becomes immutable, say)
    # would otherwise end the process without a word: this writes the stacks to stderr.
    faulthandler.enable()
    args = _parser().parse_args(argv)
    command = args.command or "run"
    redactor = RedactingFilter()  # until the settings name the secrets
    try:
        if command == "simulator":
            from bot.spark.simulator import Credentials, serve_forever

            configure_logging("INFO")
            defaults = Credentials.demo()
            credentials = Credentials(
                app_id=args.app_id or defaults.app_id,
                api_key=args.api_key or defaults.api_key,
                api_secret=args.api_secret or defaults.api_secret,
            )
            asyncio.run(serve_forever(args.host, args.port, credentials))
            return 0
        settings, redactor = _settings(command)
        if command == "migrate":
            from bot.startup_failures import database_failures
            from storage.migrate import upgrade_to_head

            with database_failures(settings.database.url):
                upgrade_to_head(settings.database.url)
            return 0
        if command == "web":
            from bot.web.app import serve

            return asyncio.run(serve(settings, simulate=args.simulate))
        if command == "keys":
            from bot.web.keys_cli import run as run_keys

            return asyncio.run(run_keys(settings, args))
        if command == "chat":
            from bot.terminal import chat

            return asyncio.run(chat(settings, simulate=args.simulate))
        if command == "ask":
            from bot.terminal import ask

            return asyncio.run(ask(settings, args.question, simulate=args.simulate))
        from bot.telegram.app import run

        if settings.http_api.enabled:  # the HTTP API beside Telegram, on the same web app
            from bot.web.app import build_gateway

            return asyncio.run(run(settings, build_gateway))
        return asyncio.run(run(settings))
    except ConfigError as exc:
        # A third party's reason quoted in the message must not carry a secret either.
        print(f"error: {redactor.redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
