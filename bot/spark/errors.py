"""The Spark client's exception tree, with the context of every failure.

::

    SparkError                     anything that went wrong talking to Spark
    ├── SparkAuthError             handshake refused: 401 / 403, with the server's message
    ├── SparkAPIError              an error frame: ``code``, ``message``, ``sid``
    │   ├── SparkRequestInvalid    10003 10004 10005 10163: the request was wrong
    │   ├── SparkContextTooLong    10907: history + question over the model's budget
    │   ├── SparkContentBlocked    10013 10014 10019 10021: content audit
    │   ├── SparkQuotaExceeded     10015 10016 11200 11201: licence, tokens, daily quota
    │   ├── SparkRateLimited       10006 10007 11202 11203: per-user or licence limits
    │   └── SparkServiceError      10000-10012 10110 10222 10223 ...: server trouble
    ├── SparkTransportError        connection failed or closed before the last frame
    │   └── SparkTimeout           connect / first frame / idle / total budget (a TimeoutError)
    └── SparkProtocolError         a frame that does not match the documented schema

``SparkError.retryable`` tells whether a retry may help; ``partial_text`` carries whatever
answer text had already streamed when the failure happened, so nothing is lost. The module
imports nothing outside the standard library.
"""

from __future__ import annotations


class SparkError(Exception):
    """A failure talking to Spark; ``sid``, ``model`` and ``partial_text`` say where."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        sid: str | None = None,
        model: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message)
        self.sid = sid
        self.model = model
        self.partial_text = partial_text

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (sid={self.sid})" if self.sid else base


class SparkAuthError(SparkError):
    """The WebSocket handshake was refused (HTTP 401 or 403)."""

    def __init__(self, status: int, server_message: str, *, model: str | None = None) -> None:
        super().__init__(
            f"Spark refused the handshake: HTTP {status}: {server_message}", model=model
        )
        self.status = status
        self.server_message = server_message

    @property
    def is_clock_skew(self) -> bool:
        return self.status == 403 and "date" in self.server_message.lower()

    @property
    def is_ip_denied(self) -> bool:
        return "ip address" in self.server_message.lower()


class SparkAPIError(SparkError):
    """Spark answered with an error frame."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        sid: str | None = None,
        model: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(
            f"Spark error {code}: {message}", sid=sid, model=model, partial_text=partial_text
        )
        self.code = code
        self.server_message = message


class SparkRequestInvalid(SparkAPIError):
    """Spark rejected the request's shape or values (our bug or a bad setting)."""


class SparkContextTooLong(SparkAPIError):
    """History plus question exceed the model's context (10907)."""


class SparkContentBlocked(SparkAPIError):
    """The question or the answer failed Spark's content audit."""


class SparkQuotaExceeded(SparkAPIError):
    """The app's licence, token package or daily quota does not allow the request."""


class SparkRateLimited(SparkAPIError):
    """Too many requests or connections for this user or licence right now."""

    retryable = True


class SparkServiceError(SparkAPIError):
    """Spark had an internal or network problem; usually transient."""

    retryable = True


class SparkTransportError(SparkError):
    """The connection failed, or closed before the last frame arrived."""

    retryable = True


class SparkTimeout(SparkTransportError, TimeoutError):
    """A time budget ran out: ``phase`` is connect, first_frame, idle or total.

    Also a :class:`TimeoutError`, so code that handles timeouts generically handles this one.
    """

    def __init__(
        self,
        phase: str,
        seconds: float,
        *,
        sid: str | None = None,
        model: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(
            f"Spark timed out ({phase}, {seconds:g} s)",
            sid=sid,
            model=model,
            partial_text=partial_text,
        )
        self.phase = phase
        self.seconds = seconds


class SparkProtocolError(SparkError):
    """A frame did not match the documented schema."""


# Classification of Spark's error codes (spark-protocol.md §5). Codes not listed are treated as
# service errors only when they are in the 10xxx "engine/transport" family, else as final.
_CODE_CLASSES: dict[int, tuple[type[SparkAPIError], bool]] = {
    10000: (SparkServiceError, True),
    10001: (SparkServiceError, True),
    10002: (SparkServiceError, True),
    10003: (SparkRequestInvalid, False),
    10004: (SparkRequestInvalid, False),
    10005: (SparkRequestInvalid, False),
    10006: (SparkRateLimited, True),
    10007: (SparkRateLimited, True),
    10008: (SparkServiceError, True),
    10009: (SparkServiceError, True),
    10010: (SparkServiceError, True),
    10011: (SparkServiceError, True),
    10012: (SparkServiceError, True),
    10013: (SparkContentBlocked, False),
    10014: (SparkContentBlocked, False),
    10015: (SparkQuotaExceeded, False),
    10016: (SparkQuotaExceeded, False),
    10017: (SparkServiceError, False),
    10018: (SparkServiceError, False),
    10019: (SparkContentBlocked, False),
    10021: (SparkContentBlocked, False),
    10110: (SparkServiceError, True),
    10163: (SparkRequestInvalid, False),
    10222: (SparkServiceError, True),
    10223: (SparkServiceError, True),
    10907: (SparkContextTooLong, False),
    11200: (SparkQuotaExceeded, False),
    11201: (SparkQuotaExceeded, False),
    11202: (SparkRateLimited, True),
    11203: (SparkRateLimited, True),
}

RETRYABLE_CODES = frozenset(code for code, (_, retry) in _CODE_CLASSES.items() if retry)


def spark_api_error(
    code: int,
    message: str,
    *,
    sid: str | None = None,
    model: str | None = None,
    partial_text: str = "",
) -> SparkAPIError:
    """Build the right :class:`SparkAPIError` subclass for an error frame's ``code``."""
    cls, retryable = _CODE_CLASSES.get(code, (SparkServiceError, False))
    error = cls(code, message, sid=sid, model=model, partial_text=partial_text)
    error.retryable = retryable
    return error
