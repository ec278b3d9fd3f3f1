"""Whether the database is usable right now, and one log line each time that changes.

A failed check (:mod:`storage.sqlite_guard`) reports a problem; a unit of work that completed
reports success. Only changes are logged: the first problem, or a different one, at ERROR; the
first success after a problem at WARNING. So a database that stays away costs the operator one
line, not a traceback per message. Until a first unit of work has succeeded nothing is logged: a
database unusable from the start is the start's failure, reported once by the caller. Thread-safe:
the SQLite worker's threads report too.
"""

from __future__ import annotations

import logging
import threading

from storage.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


class Availability:
    """The database's current problem, if any, for one :class:`~storage.database.Database`."""

    def __init__(self) -> None:
        self._problem: DatabaseUnavailable | None = None
        self._lock = threading.Lock()
        self._was_available = False

    @property
    def problem(self) -> DatabaseUnavailable | None:
        return self._problem

    def failed(self, error: DatabaseUnavailable) -> None:
        with self._lock:
            previous, self._problem = self._problem, error
        if not self._was_available:
            return
        if previous is None or previous.problem != error.problem:
            log.error("database unavailable: %s; questions get an apology until it is back", error)

    def succeeded(self) -> None:
        if self._problem is None:  # the hot path: two attribute reads, no lock
            if not self._was_available:
                self._was_available = True
            return
        with self._lock:
            previous, self._problem = self._problem, None
            self._was_available = True
        if previous is not None:
            log.warning(
                "database available again: %s (it was: %s)", previous.location, previous.problem
            )
