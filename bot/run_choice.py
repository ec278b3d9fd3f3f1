"""What ``make run`` starts: the Telegram bot when there is a token, otherwise the web front
end (``python -m bot web``, with ``--simulate`` when Spark's credentials are missing too).

Prints the arguments for ``python -m bot`` on stdout and, on stderr, what it is doing and how
to add what is missing. ``python -m bot`` itself (the Procfile's command) never chooses:
without its secrets it stops with the message it always gives.
"""

from __future__ import annotations

import sys
from typing import TextIO

from bot.config import load_settings
from bot.errors import ConfigError


def choose(out: TextIO = sys.stdout, say: TextIO = sys.stderr) -> list[str]:
    try:
        settings = load_settings()
    except ConfigError:
        return ["run"]  # the bot names every bad setting itself
    if settings.telegram.token is not None:
        return ["run"]
    host = settings.telegram.host
    if not settings.spark.has_credentials:
        print(
            "No TELEGRAM_BOT_TOKEN and no Spark credentials: starting the web chat against\n"
            "the built-in Spark simulator (python -m bot web --simulate), on this machine only.\n"
            f"Open http://127.0.0.1:{settings.telegram.port}/ in a browser: no key needed.\n"
            "For real answers set SPARK_APP_ID, SPARK_API_KEY and SPARK_API_SECRET; for\n"
            "Telegram set TELEGRAM_BOT_TOKEN (environment or .env, see .env.example).",
            file=say,
        )
        return ["web", "--simulate"]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    print(
        "No TELEGRAM_BOT_TOKEN: starting the web chat and the HTTP APIs with Spark\n"
        f"(python -m bot web). Open http://{shown}:{settings.telegram.port}/ and sign in with\n"
        "a key from: python -m bot keys create NAME\n"
        "For Telegram set TELEGRAM_BOT_TOKEN (environment or .env, see .env.example).",
        file=say,
    )
    return ["web"]


if __name__ == "__main__":
    print(" ".join(choose()))
