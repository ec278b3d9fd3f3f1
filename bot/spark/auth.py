"""Spark's HMAC-SHA256 URL signing (spark-protocol.md §2), and the matching verification.

The client signs a fresh URL for every connection because the server allows only 300 s of
clock skew. The simulator uses :func:`parse_authorization` and :func:`signature` to check what
clients send, tolerating the extra whitespace that the official Python SDK puts between pairs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import urlencode, urlsplit, urlunsplit

ALGORITHM = "hmac-sha256"
SIGNED_HEADERS = "host date request-line"


def format_date(moment: datetime) -> str:
    """RFC 1123 date in English and GMT, whatever the locale: ``Fri, 05 May 2023 10:43:39 GMT``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def parse_date(value: str) -> datetime | None:
    """Parse an RFC 1123 date; None when it is not one."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def signature(api_secret: str, host: str, date: str, request_line: str) -> str:
    """Base64 HMAC-SHA256 over the three signed lines, keyed by the API secret."""
    origin = f"host: {host}\ndate: {date}\n{request_line}"
    digest = hmac.new(api_secret.encode(), origin.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def authorization(api_key: str, signature_b64: str) -> str:
    origin = (
        f'api_key="{api_key}", algorithm="{ALGORITHM}", '
        f'headers="{SIGNED_HEADERS}", signature="{signature_b64}"'
    )
    return base64.b64encode(origin.encode()).decode()


def sign_url(
    url: str,
    api_key: str,
    api_secret: str,
    date: datetime | str | None = None,
    *,
    method: str = "GET",
) -> str:
    """Return ``url`` with the ``authorization``, ``date`` and ``host`` query parameters.

    ``date`` defaults to now; a string is used verbatim (the official test vector needs that).
    """
    parts = urlsplit(url)
    host = parts.netloc
    date_text = date if isinstance(date, str) else format_date(date or datetime.now(UTC))
    request_line = f"{method} {parts.path} HTTP/1.1"
    signed = signature(api_secret, host, date_text, request_line)
    query = urlencode(
        {"authorization": authorization(api_key, signed), "date": date_text, "host": host}
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def redact_url(url: str) -> str:
    """The URL without its query: safe to log (the query carries the signature)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class Authorization:
    """The decoded ``authorization`` query parameter."""

    api_key: str
    algorithm: str
    headers: str
    signature: str


_PAIR = re.compile(r'\s*([a-z_]+)\s*=\s*"([^"]*)"\s*')


def parse_authorization(value: str) -> Authorization | None:
    """Decode the base64 ``authorization`` parameter; None when malformed or incomplete."""
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    fields: dict[str, str] = {}
    for chunk in text.split(","):
        match = _PAIR.fullmatch(chunk)
        if match is None:
            return None
        fields[match.group(1)] = match.group(2)
    try:
        return Authorization(
            api_key=fields["api_key"],
            algorithm=fields["algorithm"],
            headers=fields["headers"],
            signature=fields["signature"],
        )
    except KeyError:
        return None
