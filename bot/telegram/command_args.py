"""Strict parsers for command arguments: a typed value, or a :class:`UsageError`.

Whatever a user types after a command reaches these first. Only ASCII digits make a number
(``str.isdigit`` also accepts "²" and "١"), ids must fit SQLite's and PostgreSQL's signed
64-bit integers, quotas a 32-bit one, and names are bounded in length, so nothing a user types
can raise inside the database layer or make a reply too long for Telegram. A command answers a
:class:`UsageError` with its usage line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.errors import BotError
from bot.spark.models import SparkModel, find_model

INT64_MAX = 2**63 - 1
QUOTA_MAX = 2**31 - 1
QUOTA_OFF = ("off", "unlimited", "none", "不限")
QUOTA_DEFAULT = ("default", "reset", "默认")
# Telegram usernames are at most 32 characters of A-Z, a-z, 0-9 and _.
_USERNAME = re.compile(r"@([A-Za-z0-9_]{1,32})", re.ASCII)
_ID = re.compile(r"-?[0-9]{1,19}", re.ASCII)
# "50000", "50,000", "50_000", "50k", "2m": digits first, at most a few dozen characters.
_QUOTA = re.compile(r"([0-9][0-9,_]{0,24})([km]?)", re.ASCII)
# Longer than any model name or alias; a longer argument is not looked up at all.
MODEL_NAME_MAX = 32
SHOWN_NAME_MAX = 32


class UsageError(BotError):
    """A command's arguments do not parse; the command answers with its usage line."""


@dataclass(frozen=True, slots=True)
class UserRef:
    """A user as an admin names them: a numeric id or an @username (without the @)."""

    user_id: int | None = None
    username: str | None = None

    @property
    def lookup(self) -> int | str:
        return self.user_id if self.user_id is not None else f"@{self.username}"


@dataclass(frozen=True, slots=True)
class QuotaArgs:
    """``/quota <user> [value]``: ``change`` says whether a value was given; ``tokens`` is the
    daily quota (0 for unlimited, None for the default)."""

    user: UserRef
    change: bool = False
    tokens: int | None = None


@dataclass(frozen=True, slots=True)
class StatsArgs:
    """``/stats``, ``/stats user <user>``, ``/stats chat <id>``, ``/stats export``."""

    kind: str  # "overview" | "user" | "chat" | "export"
    user: UserRef | None = None
    chat_id: int | None = None


def parse_int64(value: str, *, negative: bool = True) -> int:
    """A database id: ASCII digits (a leading '-' when ``negative``), within signed 64 bits."""
    value = value.strip()
    if not _ID.fullmatch(value) or (value.startswith("-") and not negative):
        raise UsageError(f"not an id: {shorten(value)!r}")
    number = int(value)
    if not -INT64_MAX - 1 <= number <= INT64_MAX:
        raise UsageError(f"id out of range: {shorten(value)!r}")
    return number


def parse_user_ref(value: str) -> UserRef:
    """``12345`` or ``@name``; anything else is a UsageError."""
    value = value.strip()
    name = _USERNAME.fullmatch(value)
    if name is not None:
        return UserRef(username=name.group(1))
    user_id = parse_int64(value, negative=False)
    if user_id == 0:
        raise UsageError("user id 0")
    return UserRef(user_id=user_id)


def parse_quota(value: str) -> int | None:
    """A /quota value: tokens per day (1 to 2**31 - 1; "50k" and "50,000" work), 0 for
    "off" (unlimited), None for "default"; a UsageError for anything else."""
    word = value.strip().lower()
    if word in QUOTA_OFF:
        return 0
    if word in QUOTA_DEFAULT:
        return None
    match = _QUOTA.fullmatch(word)
    if match is None:
        raise UsageError(f"not a daily token quota: {shorten(value)!r}")
    digits, suffix = match.group(1).replace(",", "").replace("_", ""), match.group(2)
    tokens = int(digits) * {"": 1, "k": 1_000, "m": 1_000_000}[suffix]
    if not 1 <= tokens <= QUOTA_MAX:
        raise UsageError(f"daily token quota out of range: {shorten(value)!r}")
    return tokens


def parse_quota_args(args: Sequence[str]) -> QuotaArgs:
    if len(args) not in (1, 2):
        raise UsageError(f"/quota takes 1 or 2 arguments, not {len(args)}")
    user = parse_user_ref(args[0])
    if len(args) == 1:
        return QuotaArgs(user)
    return QuotaArgs(user, change=True, tokens=parse_quota(args[1]))


def parse_stats_args(args: Sequence[str]) -> StatsArgs:
    if not args:
        return StatsArgs("overview")
    kind = args[0].lower()
    if kind == "export" and len(args) == 1:
        return StatsArgs("export")
    if kind == "user" and len(args) == 2:
        return StatsArgs("user", user=parse_user_ref(args[1]))
    if kind == "chat" and len(args) == 2:
        return StatsArgs("chat", chat_id=parse_int64(args[1]))
    raise UsageError(f"not a /stats request: {shorten(' '.join(args))!r}")


def parse_model(value: str, enabled: Sequence[str]) -> SparkModel:
    """One of the ``enabled`` models, by name or alias; a UsageError otherwise."""
    name = value.strip()
    model = find_model(name) if len(name) <= MODEL_NAME_MAX else None
    if model is None or model.name not in enabled:
        raise UsageError(f"unknown or unavailable model {shorten(name)!r}")
    return model


def shorten(value: str, limit: int = SHOWN_NAME_MAX) -> str:
    """``value`` as it may be shown back to a user: at most ``limit`` characters."""
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"
