"""Failures of the shared store, with where it is (never its password)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def describe_location(url: str) -> str:
    """``url`` without credentials: what a log line or an error may name."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class CoordinationUnavailable(Exception):
    """The shared store cannot be reached or refused an operation."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"Redis at {location} is unavailable: {reason}")
        self.location = location
        self.reason = reason
