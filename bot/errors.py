"""The bot's own exception tree (the Spark client's is :mod:`bot.spark.errors`).

Every error the bot raises on purpose derives from :class:`BotError`. Third-party errors are
translated only at the boundary where they occur and chained (``raise X from exc``)::

    BotError
    ├── ConfigError                    settings missing or invalid (names every variable)
    │   └── StartupError               a setting that does not work: the database, the
    │                                  webhook's address, the token (names the variable)
    └── ConversationError              refused before Spark is called
        ├── QuestionTooLong            the question (with the system prompt) exceeds the budget
        ├── SystemPromptTooLong        a system prompt over its share of the model's budget
        ├── QuotaExhausted             the user's daily token quota is spent
        └── RateLimitExceeded          the user asks faster than USER_RATE_LIMIT
"""

from __future__ import annotations

from datetime import datetime


class BotError(Exception):
    """Root of every error the project raises on purpose."""


class ConfigError(BotError):
    """Settings are missing or invalid; the message names every offending variable."""


class StartupError(ConfigError):
    """The bot could not start with these settings; the message starts with the variable to
    fix and carries no secret."""


class ConversationError(BotError):
    """The bot refused a question before calling Spark."""


class QuestionTooLong(ConversationError):
    """The question, with the system prompt sent before it, does not fit the model's context
    budget; ``system_tokens`` is the system prompt's part (0 when there is none)."""

    def __init__(self, estimated_tokens: int, budget_tokens: int, system_tokens: int = 0) -> None:
        message = (
            f"question needs about {estimated_tokens} tokens, the model allows {budget_tokens}"
        )
        if system_tokens:
            message += f" ({system_tokens} of them the system prompt)"
        super().__init__(message)
        self.estimated_tokens = estimated_tokens
        self.budget_tokens = budget_tokens
        self.system_tokens = system_tokens


class SystemPromptTooLong(ConversationError):
    """A system prompt would take more than its share of a model's prompt budget: about
    ``tokens`` where ``limit_tokens`` are allowed (roughly ``limit_words`` English words or
    ``limit_chars`` Chinese characters)."""

    def __init__(
        self, tokens: int, limit_tokens: int, *, limit_words: int, limit_chars: int
    ) -> None:
        super().__init__(f"system prompt needs about {tokens} tokens, {limit_tokens} allowed")
        self.tokens = tokens
        self.limit_tokens = limit_tokens
        self.limit_words = limit_words
        self.limit_chars = limit_chars


class QuotaExhausted(ConversationError):
    """The user's daily token quota is spent until ``resets_at``."""

    def __init__(self, used: int, quota: int, resets_at: datetime) -> None:
        super().__init__(f"daily quota spent: {used}/{quota} tokens until {resets_at:%H:%M} UTC")
        self.used = used
        self.quota = quota
        self.resets_at = resets_at


class RateLimitExceeded(ConversationError):
    """The user asked more often than the per-user rate limit allows."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"too many questions; retry in {retry_after_seconds:.0f} s")
        self.retry_after_seconds = retry_after_seconds
