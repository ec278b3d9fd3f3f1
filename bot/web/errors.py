"""Every refusal and failure as OpenAI's error envelope, with the status clients act on.

``{"error": {"message", "type", "param", "code"}}``, and:

- 400 a request Spark cannot take (``param`` names the field); the prompt budget, ours or
  Spark's 10907, is ``context_length_exceeded``; content Spark's audit refused is
  ``content_filter``;
- 401 a missing, unknown or revoked key; 404 a model that is not enabled for the key;
- 429 with ``Retry-After`` for our quota and rate limits and for Spark's own (10006 10007
  11202 11203 per moment, 11201 until Beijing midnight, when iFlytek's daily quota resets);
- 502 Spark failing or unreachable, 503 Spark refusing this server (credentials, licence)
  or the database (or, with several processes, Redis) unavailable, 504 Spark timing out.

Messages say what the client can do; what the operator needs (code, sid) goes to the log
line and to the ``X-Spark-Sid`` header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from bot.errors import ConversationError, QuestionTooLong, QuotaExhausted, RateLimitExceeded
from bot.spark.errors import (
    SparkAPIError,
    SparkAuthError,
    SparkContentBlocked,
    SparkContextTooLong,
    SparkError,
    SparkQuotaExceeded,
    SparkRateLimited,
    SparkRequestInvalid,
    SparkTimeout,
    SparkTransportError,
)
from bot.web.openai_request import InvalidRequest
from coordination.errors import CoordinationUnavailable
from storage.errors import DatabaseUnavailable

SID_HEADER = "X-Spark-Sid"
SPARK_RETRY_SECONDS = 1.0
SHARED_STATE_RETRY_SECONDS = 5.0  # Spark names no wait for its per-moment limits
BEIJING = timezone(timedelta(hours=8))
SPARK_DAILY_QUOTA_CODE = 11201


@dataclass(frozen=True, slots=True)
class ApiError:
    status: int
    message: str
    kind: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None
    sid: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.sid:
            headers[SID_HEADER] = self.sid
        return headers


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")


def api_error(exc: BaseException, now: datetime | None = None) -> ApiError:
    """The envelope for ``exc``: one of ours, Spark's, or the database's."""
    now = now or datetime.now(UTC)
    if isinstance(exc, InvalidRequest):
        return ApiError(exc.status, exc.message, exc.kind, exc.param, exc.code)
    if isinstance(exc, ConversationError):
        return _refusal(exc, now)
    if isinstance(exc, SparkError):
        return _spark(exc, now)
    if isinstance(exc, CoordinationUnavailable):
        return ApiError(
            503,
            "The service cannot reach its shared state; try again shortly.",
            "server_error",
            code="service_unavailable",
            retry_after=SHARED_STATE_RETRY_SECONDS,
        )
    if isinstance(exc, DatabaseUnavailable):
        return ApiError(
            503,
            "The service cannot reach its database; try again later.",
            "server_error",
            code="service_unavailable",
        )
    return ApiError(500, "Internal error; the operator has the details.", "server_error")


def _refusal(exc: ConversationError, now: datetime) -> ApiError:
    if isinstance(exc, QuestionTooLong):
        return ApiError(
            400,
            f"The messages need about {exc.estimated_tokens} tokens; this model takes "
            f"{exc.budget_tokens} beside the answer's max_tokens. Send a shorter history or "
            "a smaller max_tokens.",
            param="messages",
            code="context_length_exceeded",
        )
    if isinstance(exc, QuotaExhausted):
        return ApiError(
            429,
            f"This key's daily token quota is spent ({exc.used}/{exc.quota}); it resets at "
            f"{exc.resets_at:%H:%M} UTC.",
            "insufficient_quota",
            code="insufficient_quota",
            retry_after=max(0.0, (exc.resets_at - now).total_seconds()),
        )
    if isinstance(exc, RateLimitExceeded):
        return ApiError(
            429,
            "Too many requests for this key; retry after the time in Retry-After.",
            "requests",
            code="rate_limit_exceeded",
            retry_after=exc.retry_after_seconds,
        )
    return ApiError(400, str(exc))


def _spark(exc: SparkError, now: datetime) -> ApiError:
    sid = exc.sid
    code = exc.code if isinstance(exc, SparkAPIError) else None
    detail = f" (Spark error {code})" if code is not None and code > 0 else ""
    if isinstance(exc, SparkContextTooLong):
        return ApiError(
            400,
            "Spark found the messages too long for the model (10907); send a shorter history.",
            param="messages",
            code="context_length_exceeded",
            sid=sid,
        )
    if isinstance(exc, SparkContentBlocked):
        return ApiError(
            400,
            f"Spark's content audit refused this conversation{detail}.",
            code="content_filter",
            sid=sid,
        )
    if isinstance(exc, SparkRequestInvalid):
        return ApiError(400, f"Spark refused the request{detail}: {exc.server_message}", sid=sid)
    if isinstance(exc, SparkRateLimited):
        return ApiError(
            429,
            f"Spark is busy with this user or this server's licence{detail}; retry shortly.",
            "requests",
            code="upstream_rate_limited",
            retry_after=SPARK_RETRY_SECONDS,
            sid=sid,
        )
    if isinstance(exc, SparkQuotaExceeded) and exc.code == SPARK_DAILY_QUOTA_CODE:
        return ApiError(
            429,
            "This server's daily Spark quota is spent (11201); it resets at midnight, "
            "Beijing time.",
            "insufficient_quota",
            code="upstream_quota_exceeded",
            retry_after=_until_beijing_midnight(now),
            sid=sid,
        )
    if isinstance(exc, SparkQuotaExceeded | SparkAuthError):
        return ApiError(
            503,
            f"Spark refuses this server's credentials or licence{detail}; the operator has "
            "been told.",
            "server_error",
            code="upstream_refused",
            sid=sid,
        )
    if isinstance(exc, SparkTimeout):
        return ApiError(
            504,
            "Spark did not answer in time; try again.",
            "server_error",
            code="upstream_timeout",
            sid=sid,
        )
    if isinstance(exc, SparkTransportError):
        return ApiError(
            502,
            "Spark could not be reached; try again.",
            "server_error",
            code="upstream_unreachable",
            sid=sid,
        )
    return ApiError(
        502, f"Spark failed{detail}; try again.", "server_error", code="upstream_error", sid=sid
    )


def _until_beijing_midnight(now: datetime) -> float:
    local = now.astimezone(BEIJING)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - local).total_seconds()
