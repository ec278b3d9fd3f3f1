"""Logging set-up with a filter that keeps secrets out of every log line.

Secrets reach log lines in practice through URLs: httpx logs Bot API URLs that contain the bot
token, and a signed Spark URL carries its signature in the query. The filter masks the known
secret values and both URL shapes, whatever logger the record comes from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_SIGNED_QUERY = re.compile(r"(authorization=)[^&\s\"']+", re.IGNORECASE)
_BOT_TOKEN_PATH = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")
MASK = "***"


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _SIGNED_QUERY.sub(r"\1" + MASK, text)
        return _BOT_TOKEN_PATH.sub("/bot" + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> RedactingFilter:
    """Root logging to stderr with redaction on every handler; returns the filter."""
    redactor = RedactingFilter(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # alembic announces every plugin it loads at INFO.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    return redactor
