"""SQL statements written once for both drivers, and the values their rows hold.

A :class:`Statement` is written with ``:name`` placeholders, the form :mod:`sqlite3` takes
with a dict of parameters. asyncpg takes only ``$1``, ``$2``... in order, so a statement also
holds that form, derived once when it is defined (module import), never by hand: each distinct
name becomes one number, in order of first appearance, and :meth:`Statement.args` lists the
values in that order. PostgreSQL casts (``::type``) and text inside quotes are left alone
(``tests/test_sql.py`` holds the rules). A statement whose PostgreSQL text must differ (a
data-modifying CTE, a JSON cast) names it with ``postgres=``; most share one text.

Rows are read by column name, never by position: :class:`sqlite3.Row` and asyncpg's
``Record`` both answer ``row["column"]``. What differs is the values: SQLite hands back text
for timestamps and dates and integers for booleans; :func:`utc`, :func:`as_date` and
:func:`id_list` read either form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

# A placeholder: a colon and a name, not part of a "::" cast or of a longer word.
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


class Row(Protocol):
    """One row of a result: :class:`sqlite3.Row` or asyncpg's ``Record``."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Any: ...


Params = Mapping[str, object]


# PostgreSQL: commit without waiting for the WAL flush, for this statement's transaction only
# (a column of the turn's writes): the promise SQLite's synchronous=NORMAL makes (a crash of
# the bot loses nothing; a crash of the server or machine may lose the last fraction of a
# second of turns, never half a turn). Waiting for the flush while the ledger trigger holds
# its day's rollup rows locked serialises every turn.
ASYNC_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"


@dataclass(frozen=True, slots=True)
class Numbered:
    """A statement in asyncpg's form: its text and the parameter names in ``$n`` order."""

    text: str
    names: tuple[str, ...]


def numbered(sql: str) -> Numbered:
    """``sql`` with its ``:name`` placeholders as ``$n`` (see the module docstring)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # a quoted string: kept as it is
            return match.group(0)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Numbered(_PLACEHOLDER.sub(number, sql), tuple(names))


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement: ``sqlite`` text with ``:name`` placeholders, and its asyncpg form."""

    sqlite: str
    postgres_text: str | None = field(default=None, kw_only=True, repr=False)
    postgres: Numbered = field(init=False, repr=False)
    # The names the SQLite text binds: only those are converted and passed to sqlite3.
    sqlite_names: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "postgres", numbered(self.postgres_text or self.sqlite))
        object.__setattr__(self, "sqlite_names", numbered(self.sqlite).names)

    def args(self, params: Params) -> list[object]:
        """The values for asyncpg, in ``$n`` order (a missing name is a KeyError)."""
        return [params[name] for name in self.postgres.names]


def sql(text: str, *, postgres: str | None = None) -> Statement:
    """A :class:`Statement`; ``postgres`` when PostgreSQL needs another text."""
    return Statement(text, postgres_text=postgres)


def utc(value: datetime | str) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite keeps naive UTC text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def maybe_utc(value: datetime | str | None) -> datetime | None:
    return None if value is None else utc(value)


def as_date(value: date | str) -> date:
    """A stored or computed date (SQLite: ``YYYY-MM-DD`` text)."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def id_list(value: str | Sequence[int] | None) -> tuple[int, ...]:
    """A JSON list of ids as stored (text on both drivers unless decoded already)."""
    ids: Sequence[int] | None = json.loads(value) if isinstance(value, str) else value
    return tuple(ids or ())


def sqlite_time(value: datetime) -> str:
    """An aware datetime as SQLite keeps it: naive UTC text, which sorts and compares."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
    # isoformat is several times faster than strftime; the text is the same.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
