"""The one-line start-up messages for failures no test machine can produce for real.

A wrong PostgreSQL password needs a server that checks passwords (the test server trusts
everyone), and a privileged port needs a user without privileges; the end-to-end cases are in
test_bot_startup_failures.py. Here the translators get the very errors the drivers raise.
"""

from __future__ import annotations

import errno
import socket

import pytest
from asyncpg.exceptions import InvalidPasswordError  # type: ignore[import-untyped]
from sqlalchemy.exc import DBAPIError

from bot.errors import ConfigError, StartupError
from bot.startup_failures import database_failures, listen_failures

PASSWORD = "pa%40ss-word"  # percent-encoded, as a URL carries it


def test_a_wrong_postgresql_password_is_named_and_masked() -> None:
    refused = InvalidPasswordError('password authentication failed for user "bot"')
    url = f"postgres://bot:{PASSWORD}@db.example:5432/bot"
    with pytest.raises(StartupError) as caught, database_failures(url):
        raise DBAPIError("SELECT 1", {}, refused)
    message = str(caught.value)
    assert message == (
        "DATABASE_URL: PostgreSQL at postgresql+asyncpg://bot:***@db.example:5432/bot "
        'refused: password authentication failed for user "bot" (check the user, password '
        "and database name)"
    )
    assert isinstance(caught.value, ConfigError)  # exit code 2, like any setting


@pytest.mark.parametrize(
    ("error", "start"),
    [
        (OSError(errno.EACCES, "Permission denied"), "PORT: "),
        (OSError(errno.EADDRINUSE, "in use"), "PORT: "),
        (OSError(errno.EADDRNOTAVAIL, "not here"), "HOST: "),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "HOST: "),
    ],
)
def test_a_bind_failure_names_host_or_port(error: OSError, start: str) -> None:
    with pytest.raises(StartupError) as caught, listen_failures("bot.internal", 80):
        raise error
    message = str(caught.value)
    assert message.startswith(f"{start}cannot listen for webhook updates on bot.internal:80: ")
    assert "\n" not in message


def test_errors_that_are_bugs_keep_their_traceback() -> None:
    with pytest.raises(KeyError), database_failures("sqlite:///bot.sqlite3"):
        raise KeyError("a bug, not a setting")
