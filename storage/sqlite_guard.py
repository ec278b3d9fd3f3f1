"""Is the file at the SQLite path still the database this process opened, and safe to use?

Taking the database's directory away does not stop SQLite: connections already open keep
reading and writing the file they hold, unlinked or moved, and a connection opened later on
the path would create a fresh empty file there. So every unit of work first checks, in a stat
and three access calls (microseconds):

- the path names the file (``st_dev``, ``st_ino``) this process first saw there. Missing: the
  work waits for it to come back. Another file: it is never adopted (it may be empty, or an old
  copy); restarting the bot adopts it, after the start-up migration has checked its schema.
- the file, its ``-wal`` and its ``-shm`` are writable. SQLite writes the WAL index (``-shm``)
  through a shared memory map, readers included, so on an immutable or read-only index the
  process dies of SIGBUS instead of getting an error; checked first, the work fails cleanly.

A connection opened after start also finds the schema (``alembic_version``) before it is used,
and opens the file with ``mode=rw`` (see :func:`read_write_uri`): only a migration creates it.
Every failure is a :class:`~storage.errors.DatabaseUnavailable`, reported to
:class:`~storage.availability.Availability` for its one log line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from storage.availability import Availability
from storage.errors import DatabaseUnavailable

SCHEMA_TABLE = "alembic_version"
SCHEMA_QUERY = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"


def read_write_uri(path: str) -> str:
    """The SQLite URI that opens ``path`` for reading and writing, never creating it."""
    return f"file:{quote(str(Path(path).absolute()))}?mode=rw"


class SqliteFileGuard:
    """Checks one SQLite file before each unit of work; see the module docstring."""

    def __init__(self, path: str, availability: Availability) -> None:
        self.path = str(Path(path).absolute())
        self.uri = read_write_uri(self.path)
        self.availability = availability
        self._companions = (f"{self.path}-wal", f"{self.path}-shm")
        self._identity: tuple[int, int] | None = None
        self.pin()

    def pin(self) -> None:
        """Remember which file is at the path now (at start, right after the migration)."""
        try:
            status = os.stat(self.path)
        except OSError:
            return  # pinned by the first check that finds it
        self._identity = (status.st_dev, status.st_ino)

    def check(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the pinned file is at the path, writable."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            raise self._failed("file missing (its directory deleted or moved?)") from None
        except OSError as exc:
            raise self._failed(f"file cannot be read ({exc.strerror})") from exc
        identity = (status.st_dev, status.st_ino)
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity:
            raise self._failed(
                f"file replaced: another file (inode {identity[1]}, was {self._identity[1]}) "
                "is at its path; the bot keeps refusing it until it is restarted"
            )
        if not os.access(self.path, os.W_OK):
            raise self._failed("file not writable (read-only or immutable)")
        for companion in self._companions:
            # SQLite deletes and re-creates these as connections come and go: refused only
            # if one is there and still refused (never opened here: closing any descriptor
            # of the file would drop this process's SQLite locks on it).
            if (
                not os.access(companion, os.W_OK)
                and os.path.lexists(companion)
                and not os.access(companion, os.W_OK)
            ):
                suffix = companion.rsplit("-", 1)[1]
                raise self._failed(f"-{suffix} file not writable (read-only or immutable)")

    def check_schema(self, tables: Iterable[str]) -> None:
        """Raise unless ``tables`` (what :data:`SCHEMA_QUERY` found) holds the schema's table."""
        if SCHEMA_TABLE not in set(tables):
            raise self._failed(
                f"schema missing (no {SCHEMA_TABLE} table): not a migrated database"
            )

    def cannot_open(self, exc: Exception) -> DatabaseUnavailable:
        """The error for a connection that failed to open (the file went away just now)."""
        self.check()  # names the reason when it is one of ours
        return self._failed(f"file cannot be opened ({exc})")

    def succeeded(self) -> None:
        self.availability.succeeded()

    def _failed(self, problem: str) -> DatabaseUnavailable:
        error = DatabaseUnavailable(self.path, problem)
        self.availability.failed(error)
        return error
