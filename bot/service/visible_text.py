"""Whether an answer has anything a reader would see.

Chat apps strip whitespace and invisible characters (zero-width, direction marks, braille
blank, object replacement) and show nothing for a text made only of them; the service notes
such an answer as empty rather than leave the user with silence.
"""

from __future__ import annotations

INVISIBLE = frozenset("\u180e\u200b\u200c\u200d\u200e\u200f\u202e\u2060\u2800\ufeff\ufffc")


def is_blank(text: str) -> bool:
    """True when a reader would find no text in ``text``."""
    return all(ch.isspace() or ch in INVISIBLE for ch in text)
