"""What the webhook accepts as a Telegram update, and how it describes anything else.

Telegram posts one JSON object per update with an integer ``update_id`` and at most one
field per kind of update, each an object. Anything else (a proxy's error page, a replayed or
truncated request, ``null``) is refused with :class:`NotAnUpdate`, whose reason names only
the body's shape: the body itself may carry a user's words and never reaches a log line.
"""

from __future__ import annotations

import json
from typing import Any

from telegram import Bot, Update

# Telegram sends updates of a few kilobytes (4096 characters of text plus entities); a body
# far larger is not an update, and reading it whole would only cost memory.
MAX_UPDATE_BYTES = 1024 * 1024
# Update kinds whose payload is an object, as Telegram defines them; ptb would crash on
# anything else there (``"message": 5``) with an AttributeError.
_OBJECT_KINDS = frozenset(Update.ALL_TYPES)


class NotAnUpdate(ValueError):
    """The body is not a Telegram update; ``str()`` is a short, content-free reason."""


def _shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer"}
    return names.get(type(value), "a number")


def parse_update(body: bytes, bot: Bot) -> Update:
    """The update ``body`` carries, or :class:`NotAnUpdate` saying what is wrong with it."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise NotAnUpdate("JSON nested too deeply") from None
    except ValueError:  # also UnicodeDecodeError and over-long integers
        raise NotAnUpdate("not JSON") from None
    if not isinstance(data, dict):
        raise NotAnUpdate(f"JSON {_shape(data)}, not an update object")
    update_id = data.get("update_id")
    if update_id is None:
        raise NotAnUpdate("no update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise NotAnUpdate(f"update_id is {_shape(update_id)}, not an integer")
    if update_id < 0:
        raise NotAnUpdate("update_id is negative")
    for kind in _OBJECT_KINDS.intersection(data):
        if not isinstance(data[kind], dict):
            raise NotAnUpdate(f"update {update_id}: {kind} is {_shape(data[kind])}, not an object")
    try:
        return Update.de_json(data, bot)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, RecursionError) as exc:
        # ptb builds its objects without checking types: a missing required field is a
        # KeyError or TypeError, a wrong type anything from this list.
        raise NotAnUpdate(
            f"update {update_id}: its fields do not parse ({type(exc).__name__})"
        ) from None
