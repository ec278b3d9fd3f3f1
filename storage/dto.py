"""Frozen value types that the repositories take and return.

Also the clock type: time is passed in (``Clock``), never read from a global, so tests can
pin it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

Clock = Callable[[], datetime]
MessageRole = Literal["user", "assistant"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class MessageStatus(StrEnum):
    STREAMING = "streaming"
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # An answer replaced by /retry.
    SUPERSEDED = "superseded"
    # Written in full by Spark, but its final message never reached the user.
    UNDELIVERED = "undelivered"


FINAL_STATUSES = frozenset(MessageStatus) - {MessageStatus.STREAMING}

# Ledger error codes of our own, beside Spark's (which are positive).
LEDGER_NO_SPARK_CODE = -1  # transport, timeout, refused handshake: Spark gave no code
LEDGER_UNDELIVERED = -2  # Spark answered, but the answer never reached the user
LEDGER_CLIENT_GONE = -3  # the HTTP client hung up while Spark was answering


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str | None
    first_name: str | None
    language_code: str | None
    daily_token_quota: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ChatInfo:
    id: int
    type: str
    title: str | None
    model: str | None
    system_prompt: str | None
    token_ratio: float
    spark_uid: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    id: int
    chat_id: int
    thread_id: int
    # 0 when the whole chat (or topic) shares the conversation, else the user it belongs to.
    scope_user_id: int
    # The uid Spark sees for this chat or forum topic (≤ 32 characters, random).
    spark_uid: str
    created_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: MessageRole
    content: str
    status: MessageStatus
    usable: bool
    telegram_message_ids: tuple[int, ...]
    reply_to_id: int | None
    user_id: int | None
    model: str | None
    sid: str | None
    error_code: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryTurn:
    """A question and the answer that counts for it, as history for the next request."""

    question_id: int
    answer_id: int
    question: str
    answer: str
    # The token counts the service gave the two texts when it stored them.
    question_tokens: int
    answer_tokens: int


@dataclass(frozen=True, slots=True)
class PromptHistory:
    """The chat row (None: not stored) and the history read for a prompt, newest first: the
    turns within the limit asked for, and always the newest; ``total`` counts every turn
    that counts as history, read or not."""

    chat: ChatInfo | None
    turns: list[HistoryTurn]
    total: int


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens one request cost, as Spark reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """The usage ledger row written with a finished answer (its conversation, message and sid
    are the answer's)."""

    model: str
    usage: TokenUsage | None
    user_id: int | None
    chat_id: int | None
    first_token_ms: int | None = None
    duration_ms: int | None = None
    # -1 for a failure without a Spark code (transport, timeout), as the ledger keeps it.
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class CalibrationRules:
    """How a chat's token ratio follows the counts Spark reports: start at ``default``, move a
    share of the way to each new sample (``up`` when it is higher, ``down`` when lower), and
    stay within [``least``, ``greatest``]. The service owns the rules; storage applies them."""

    default: float
    least: float
    greatest: float
    up: float
    down: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """Spark's ``prompt_tokens`` for a prompt estimated (raw) at ``raw_estimate``, folded into
    the chat's ratio by ``rules`` in the same unit of work as the answer."""

    chat_id: int
    raw_estimate: int
    reported_prompt_tokens: int
    rules: CalibrationRules


@dataclass(frozen=True, slots=True)
class LastTurn:
    question: StoredMessage
    answer: StoredMessage | None
