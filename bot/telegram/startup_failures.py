"""Telegram's refusals at start-up, said in one line that names the setting to fix.

The Telegram half of :mod:`bot.startup_failures`: getMe (the token, the Bot API's address)
and setWebhook (the webhook's address and secret). A webhook URL is shown without its path,
which may be secret, and a refused token is never repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from telegram.error import BadRequest, InvalidToken, NetworkError

from bot.errors import StartupError

_OFFICIAL_BOT_API = "https://api.telegram.org"


def _unreachable(api_base_url: str | None, error: NetworkError) -> StartupError:
    where = api_base_url or _OFFICIAL_BOT_API
    variable = "TELEGRAM_API_BASE_URL" if api_base_url else "network"
    return StartupError(f"{variable}: cannot reach the Bot API at {where}: {error.message}")


@contextmanager
def telegram_failures(api_base_url: str | None) -> Iterator[None]:
    """Asking Telegram who the bot is: a refused token or an unreachable Bot API."""
    try:
        yield
    except InvalidToken as exc:
        raise StartupError(
            "TELEGRAM_BOT_TOKEN: Telegram does not know this token; copy it again from "
            "@BotFather (/mybots, API Token)"
        ) from exc
    except BadRequest:
        raise  # a request of ours was wrong: a bug, with its traceback
    except NetworkError as exc:
        raise _unreachable(api_base_url, exc) from exc


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL: its path may be a secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@contextmanager
def webhook_failures(webhook_url: str, api_base_url: str | None) -> Iterator[None]:
    """Telegram's answer to setWebhook."""
    try:
        yield
    except BadRequest as exc:
        if "secret token" in exc.message.lower():
            raise StartupError(f"WEBHOOK_SECRET: Telegram refused it: {exc.message}") from exc
        # Telegram's own servers call public https:// addresses on these ports only.
        rule = "" if api_base_url else " (a public https:// address on port 443, 80, 88 or 8443)"
        raise StartupError(
            f"WEBHOOK_URL: Telegram refused the webhook at {_origin(webhook_url)}: "
            f"{exc.message}{rule}"
        ) from exc
    except InvalidToken as exc:
        raise StartupError("TELEGRAM_BOT_TOKEN: Telegram no longer knows this token") from exc
    except NetworkError as exc:
        raise _unreachable(api_base_url, exc) from exc
