"""Handshake verification for the Spark simulator: the gateway's HMAC checks (§2.1, §2.3).

The order follows the HMAC gateway Spark sits behind: decode the ``authorization`` parameter,
check the clock skew, the algorithm and signed headers, look the key up, then compare the
signature. Each refusal carries the HTTP status and the exact ``message`` text real clients see.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bot.spark.auth import ALGORITHM, SIGNED_HEADERS, parse_authorization, parse_date, signature

UNAUTHORIZED: Final = "Unauthorized"
CANNOT_VERIFY: Final = "HMAC signature cannot be verified"
UNKNOWN_KEY: Final = "HMAC signature cannot be verified: fail to retrieve credential"
MISMATCH: Final = "HMAC signature does not match"
BAD_DATE: Final = (
    "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC "
    "Authentication"
)
IP_DENIED: Final = "Your IP address is not allowed"


@dataclass(frozen=True, slots=True)
class HandshakeRefusal:
    """An HTTP error the gateway answers instead of upgrading."""

    status: int
    message: str


# The refusals `SparkSimulator.inject` can force, by fault name.
FORCED_REFUSALS: Final[dict[str, HandshakeRefusal]] = {
    "handshake-401": HandshakeRefusal(401, MISMATCH),
    "handshake-403-date": HandshakeRefusal(403, BAD_DATE),
    "handshake-403-ip": HandshakeRefusal(403, IP_DENIED),
    "unknown-key": HandshakeRefusal(401, UNKNOWN_KEY),
}


def verify_handshake(
    query: dict[str, str],
    *,
    host_header: str,
    path: str,
    api_key: str,
    api_secret: str,
    now: datetime,
    window: float,
) -> HandshakeRefusal | None:
    """None when the signed query is valid for this request, else the gateway's refusal."""
    raw = query.get("authorization")
    if not raw:
        return HandshakeRefusal(401, UNAUTHORIZED)
    parsed = parse_authorization(raw)
    date_text = query.get("date")
    host = query.get("host")
    if parsed is None or not date_text or not host:
        return HandshakeRefusal(401, CANNOT_VERIFY)
    date = parse_date(date_text)
    if date is None or abs((now - date).total_seconds()) > window:
        return HandshakeRefusal(403, BAD_DATE)
    if parsed.algorithm != ALGORITHM or parsed.headers != SIGNED_HEADERS:
        return HandshakeRefusal(401, CANNOT_VERIFY)
    if parsed.api_key != api_key:
        return HandshakeRefusal(401, UNKNOWN_KEY)
    # The signature covers the host the client dialled; a different Host header means the URL
    # was signed for another server.
    if host != host_header:
        return HandshakeRefusal(401, MISMATCH)
    expected = signature(api_secret, host, date_text, f"GET {path} HTTP/1.1")
    if not hmac.compare_digest(expected.encode(), parsed.signature.encode()):
        return HandshakeRefusal(401, MISMATCH)
    return None
