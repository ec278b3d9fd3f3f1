"""What stops the bot from starting, said in one line that names the setting to fix.

Start-up is where the operator's settings meet the world for the first time: the database is
opened and migrated, the webhook server binds ``HOST``:``PORT``, Telegram is asked who the bot
is and given the webhook (:mod:`bot.telegram.startup_failures`). A failure there is a setting
that cannot work, not a bug, so each step translates its third-party errors (and only those)
into a :class:`~bot.errors.StartupError`; ``__main__`` prints it as ``error: ...`` and exits 2,
like any configuration error. Messages start with the variable to fix and never carry a
secret: database passwords are masked. This module needs no Telegram stack (``migrate`` and
the terminal use it too).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from alembic.util.exc import CommandError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from bot.errors import StartupError
from storage.database import normalise_url
from storage.errors import DatabaseUnavailable

_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
_URL_EXAMPLES = "sqlite:///data/bot.sqlite3 or postgresql://user:password@host:5432/dbname"
_UNKNOWN_REVISION = re.compile(r"Can't locate revision identified by '([^']+)'")
# (variable to fix, what to do) per errno of a failed bind.
_LISTEN_HINTS: dict[int, tuple[str, str]] = {
    errno.EADDRINUSE: ("PORT", "another process listens there: choose a free PORT"),
    errno.EACCES: ("PORT", "ports below 1024 need privileges: choose a PORT from 1024 up"),
    errno.EADDRNOTAVAIL: ("HOST", "HOST must be an address of this machine, 0.0.0.0 for all"),
}


def _one_line(error: BaseException | None, *, hide: str | None = None) -> str:
    text = " ".join(str(error).split()) if error is not None else ""
    if hide:
        text = text.replace(hide, "***")
    return text or type(error).__name__


def database_url(raw: str) -> URL:
    """``DATABASE_URL`` parsed, or a StartupError if it is nothing the bot can open."""
    try:
        url = make_url(normalise_url(raw))
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StartupError(f"DATABASE_URL: not a database URL; use {_URL_EXAMPLES}") from None
    if url.drivername not in _DRIVERS:
        raise StartupError(f"DATABASE_URL: {url.drivername} is not supported; use {_URL_EXAMPLES}")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise StartupError("DATABASE_URL: SQLite needs a file, e.g. sqlite:///data/bot.sqlite3")
    return url


@contextmanager
def database_failures(raw_url: str) -> Iterator[None]:
    """Opening and migrating the database: a failure names DATABASE_URL, password masked."""
    url = database_url(raw_url)
    shown = url.render_as_string(hide_password=True)
    password = url.password if isinstance(url.password, str) and url.password else None
    sqlite = url.get_backend_name() == "sqlite"
    try:
        yield
    except DatabaseUnavailable as exc:  # e.g. tables gone although alembic says up to date
        raise StartupError(f"DATABASE_URL: {_one_line(exc, hide=password)}") from exc
    except CommandError as exc:
        reason = _one_line(exc, hide=password)
        unknown = _UNKNOWN_REVISION.search(reason)
        if unknown is None:
            raise StartupError(f"DATABASE_URL: cannot migrate {shown}: {reason}") from exc
        raise StartupError(
            f"DATABASE_URL: {shown} is at schema revision {unknown.group(1)}, which this "
            "version of the bot does not know (a newer version migrated it: run that one, "
            "or restore a backup)"
        ) from exc
    except (DBAPIError, sqlite3.Error) as exc:
        reason = _one_line(exc.orig if isinstance(exc, DBAPIError) else exc, hide=password)
        if sqlite:
            raise StartupError(
                f"DATABASE_URL: cannot open the SQLite database {url.database}: {reason} (the "
                "bot must be able to write the file and its directory)"
            ) from exc
        raise StartupError(
            f"DATABASE_URL: PostgreSQL at {shown} refused: {reason} (check the user, "
            "password and database name)"
        ) from exc
    except OSError as exc:
        reason = exc.strerror or _one_line(exc, hide=password)
        if sqlite:
            raise StartupError(
                f"DATABASE_URL: cannot create {exc.filename or url.database}: {reason} "
                "(point it into a directory the bot may write)"
            ) from exc
        raise StartupError(
            f"DATABASE_URL: cannot connect to PostgreSQL at {shown}: {reason} (check the host "
            "and port, and that the server runs)"
        ) from exc


@contextmanager
def listen_failures(host: str, port: int) -> Iterator[None]:
    """Binding the webhook server to HOST:PORT."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            variable, hint = "HOST", "HOST must be a name or address of this machine"
            reason = exc.strerror or str(exc)
        else:
            code = exc.errno or 0
            variable, hint = _LISTEN_HINTS.get(code, ("HOST or PORT", "check HOST and PORT"))
            reason = os.strerror(code) if code else str(exc)
        raise StartupError(
            f"{variable}: cannot listen for webhook updates on {host}:{port}: "
            f"{reason.lower()} ({hint})"
        ) from exc
