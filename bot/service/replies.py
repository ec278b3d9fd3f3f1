"""Turns failures into short, friendly messages in the user's language.

The operator gets the details (code, sid) in the log; the user gets one sentence saying what
happened and what to do.
"""

from __future__ import annotations

from bot.errors import (
    BotError,
    ConfigError,
    QuestionTooLong,
    QuotaExhausted,
    RateLimitExceeded,
)
from bot.service.i18n import Language, text
from bot.spark.errors import (
    SparkAPIError,
    SparkAuthError,
    SparkContentBlocked,
    SparkContextTooLong,
    SparkQuotaExceeded,
    SparkRateLimited,
    SparkRequestInvalid,
    SparkServiceError,
    SparkTimeout,
    SparkTransportError,
)

_OUTPUT_AUDIT_CODES = frozenset({10014, 10019})


def describe_refusal(error: BotError, language: Language, model_title: str = "Spark") -> str:
    """A refusal before Spark was called (too long, quota, rate limit)."""
    if isinstance(error, QuestionTooLong):
        # When a system prompt is sent too, say what it takes: it may be what does not fit.
        return text(
            language,
            "error_question_too_long_system" if error.system_tokens else "error_question_too_long",
            model=model_title,
            tokens=error.estimated_tokens,
            budget=error.budget_tokens,
            system=error.system_tokens,
        )
    if isinstance(error, QuotaExhausted):
        return text(
            language,
            "user_quota_exhausted",
            quota=error.quota,
            reset=f"{error.resets_at:%Y-%m-%d %H:%M}",
        )
    if isinstance(error, RateLimitExceeded):
        return text(
            language, "user_rate_limited", seconds=max(1, round(error.retry_after_seconds))
        )
    return describe_failure(error, language, model_title)


def describe_failure(error: BaseException, language: Language, model_title: str = "Spark") -> str:
    """What to tell the user when an answer failed."""
    if isinstance(error, SparkContentBlocked):
        if error.code in _OUTPUT_AUDIT_CODES:
            return text(language, "error_output_blocked")
        return text(language, "error_content_blocked")
    if isinstance(error, SparkContextTooLong):
        return text(language, "error_context_too_long", model=model_title)
    if isinstance(error, SparkQuotaExceeded):
        return text(language, "error_quota")
    if isinstance(error, SparkRateLimited | SparkServiceError):
        return text(language, "error_busy")
    if isinstance(error, SparkTimeout):
        return text(language, "error_timeout")
    if isinstance(error, SparkTransportError):
        return text(language, "error_unavailable")
    if isinstance(error, SparkAuthError | SparkRequestInvalid | ConfigError):
        return text(language, "error_config")
    if isinstance(error, SparkAPIError):
        return text(language, "error_busy" if error.retryable else "error_internal")
    if isinstance(error, QuestionTooLong | QuotaExhausted | RateLimitExceeded):
        return describe_refusal(error, language, model_title)
    return text(language, "error_internal")
