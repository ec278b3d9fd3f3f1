"""Storage's own errors: the database is not the one this process may use right now.

Storage imports nothing of the bot, so these do not derive from ``bot.errors.BotError``; the
front ends recognise them where they report failures::

    StorageError
    ├── DatabaseUnavailable    the file is missing, replaced, not writable, or has no schema
    └── AnswerNotStreaming     an answer to finish is not stored, or was finished already

Every other database failure (a constraint, a lost PostgreSQL connection) stays the driver's
own exception (:mod:`sqlite3` or asyncpg).
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of the errors storage raises on purpose."""


class DatabaseUnavailable(StorageError):
    """The database cannot be used safely: ``problem`` says why, ``location`` where.

    ``problem`` is short and carries no path (it is shown on ``/healthz``); ``location`` is
    the SQLite file's path or the PostgreSQL host, for the log.
    """

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"database {location}: {problem}")
        self.location = location
        self.problem = problem


class AnswerNotStreaming(StorageError, LookupError):
    """An answer to finish is not stored, or is no longer ``streaming``: another process took
    its conversation over and marked it interrupted. Nothing was written."""

    def __init__(self, message_id: int) -> None:
        super().__init__(f"message {message_id} is not stored or no longer streaming")
        self.message_id = message_id
