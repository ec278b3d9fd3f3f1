"""SQLAlchemy 2 typed ORM models: the schema that the alembic chain builds.

Conventions: constraint names come from :data:`NAMING_CONVENTION` so migrations name the same
things on SQLite and PostgreSQL; Telegram ids are ``BigInteger`` (group ids are large and
negative); every timestamp is timezone-aware UTC (:class:`UTCDateTime`, which also makes SQLite
hand back aware values). Surrogate keys are ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite,
where only an ``INTEGER PRIMARY KEY`` is the auto-numbered rowid.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SPARK_UID_LENGTH = 32

Id = BigInteger().with_variant(Integer(), "sqlite")
TelegramId = BigInteger


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that only accepts and returns aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        # SQLite keeps text; storing it without an offset keeps it sortable.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    username: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(255))
    language_code: Mapped[str | None] = mapped_column(String(16))
    # None: the operator's DAILY_TOKEN_QUOTA applies; 0: unlimited.
    daily_token_quota: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(32))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    token_ratio: Mapped[float] = mapped_column(Float, server_default=text("1.0"))
    spark_uid: Mapped[str] = mapped_column(String(SPARK_UID_LENGTH), unique=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ChatTopic(Base):
    """A forum topic: it gets a Spark uid of its own."""

    __tablename__ = "chat_topics"

    chat_id: Mapped[int] = mapped_column(
        ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True
    )
    thread_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    spark_uid: Mapped[str] = mapped_column(String(SPARK_UID_LENGTH), unique=True)
    created_at: Mapped[datetime]


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # At most one open conversation per (chat, topic, scope): concurrent "current
        # conversation" calls converge on one row instead of racing into two.
        Index(
            "uq_conversations_open",
            "chat_id",
            "thread_id",
            "scope_user_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    # 0 outside forum topics; Telegram thread ids are positive.
    thread_id: Mapped[int] = mapped_column(TelegramId, server_default=text("0"))
    # 0 when shared by the whole chat, else the Telegram user id it belongs to.
    scope_user_id: Mapped[int] = mapped_column(TelegramId, server_default=text("0"))
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant')", name="role"),
        CheckConstraint(
            "status IN ('streaming', 'complete', 'partial', 'failed', 'cancelled', 'superseded', "
            "'undelivered')",
            name="status",
        ),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # Start-up recovery looks only for rows still streaming: keep that lookup tiny.
        Index(
            "ix_messages_streaming",
            "status",
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    # For an answer: the question it answers (several answers after /retry).
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # Raw token estimate of ``content`` (bot.spark.tokens), computed once when the text is
    # stored so that building a prompt never re-reads the history's text to count it.
    tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    status: Mapped[str] = mapped_column(String(16))
    # Whether a partial answer may be sent back to Spark as history.
    usable: Mapped[bool] = mapped_column(Boolean, server_default=false())
    telegram_message_ids: Mapped[list[int]] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(32))
    sid: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TelegramMessage(Base):
    """Which stored message a Telegram message shows, for replies (ids are per chat)."""

    __tablename__ = "telegram_messages"

    chat_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    telegram_message_id: Mapped[int] = mapped_column(
        TelegramId, primary_key=True, autoincrement=False
    )
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )


_LEDGER_FIGURES = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "error_code",
    "first_token_ms",
    "duration_ms",
)


class UsageRecord(Base):
    """The ledger: one row per Spark request, kept even when users or chats go away (so no
    foreign keys), read by time range for quotas and admin statistics."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_created_at", "created_at"),
        # Covering: one user's or chat's report reads only the index (migration 0003).
        Index(
            "ix_usage_records_user_id_created_at",
            "user_id",
            "created_at",
            "chat_id",
            *_LEDGER_FIGURES,
        ),
        Index(
            "ix_usage_records_chat_id_created_at",
            "chat_id",
            "created_at",
            "user_id",
            *_LEDGER_FIGURES,
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(TelegramId)
    chat_id: Mapped[int | None] = mapped_column(TelegramId)
    conversation_id: Mapped[int | None] = mapped_column(Id)
    message_id: Mapped[int | None] = mapped_column(Id)
    model: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    completion_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    first_token_ms: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    sid: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[int | None] = mapped_column(Integer)


# Per-day rollups of the ledger, kept by database triggers on every ledger insert (see the
# 0002 revision) so that admin statistics read a few thousand rows instead of millions. Days
# are UTC. A missing user or chat is filed under id 0, which Telegram never uses.


class UsageDaily(Base):
    """Whole-bot totals per UTC day."""

    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed_requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    completion_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class UsageDailyUser(Base):
    """Tokens per user and UTC day (one user's days are one index range)."""

    __tablename__ = "usage_daily_users"

    user_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class UsageDailyChat(Base):
    """Tokens per chat and UTC day."""

    __tablename__ = "usage_daily_chats"

    chat_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class UsageMonthlyUser(Base):
    """Tokens per user and calendar month (``month`` is its first day): upper bounds that
    narrow a top-N search down to a few users."""

    __tablename__ = "usage_monthly_users"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class UsageMonthlyChat(Base):
    """Tokens per chat and calendar month."""

    __tablename__ = "usage_monthly_chats"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    chat_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class UsageUserSeen(Base):
    """The last UTC day each user made a request: active users in O(log n)."""

    __tablename__ = "usage_users_seen"

    user_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    last_day: Mapped[date] = mapped_column(Date, index=True)


class UsageChatSeen(Base):
    """The last UTC day each chat made a request: active chats in O(log n)."""

    __tablename__ = "usage_chats_seen"

    chat_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    last_day: Mapped[date] = mapped_column(Date, index=True)


class UsageDailyError(Base):
    """Failed requests per UTC day and error code (-1: no Spark code, e.g. a timeout)."""

    __tablename__ = "usage_daily_errors"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    error_code: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class UsageDailyLatency(Base):
    """Latency histogram of successful requests per UTC day: ``metric`` 0 is time to first
    token, 1 is duration; ``bucket`` is the value in ms rounded down to a step of about 1 %
    (storage.stats.latency_bucket), so percentiles come from a few hundred rows a day."""

    __tablename__ = "usage_daily_latency"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metric: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class ProcessedUpdate(Base):
    """A Telegram update the bot has taken on, so that a re-delivery of it (Telegram sends an
    update again after a failed or slow webhook answer, or an unconfirmed poll) is not answered
    a second time, across restarts too. Rows older than a day are pruned: Telegram gives up on
    an update after 24 hours."""

    __tablename__ = "processed_updates"
    __table_args__ = (Index("ix_processed_updates_received_at", "received_at"),)

    # Update ids are counted per bot; the bot's id (the token's prefix) survives a new token.
    bot_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(TelegramId, primary_key=True, autoincrement=False)
    received_at: Mapped[datetime]


class ApiKey(Base):
    """A key of the HTTP API. Its traffic is billed to ``user_id``: a users row of its own
    (a negative id, which Telegram never gives a user) or a Telegram user's, so the ledger,
    quotas and /stats count it like any user. Only the SHA-256 of the key is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # None: no limit of the key's own (the user's quota and USER_RATE_LIMIT still apply).
    daily_tokens: Mapped[int | None] = mapped_column(Integer)
    rate_per_minute: Mapped[int | None] = mapped_column(Integer)
    # Comma-separated model names the key may use; None: every enabled model.
    models: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class WebConversation(Base):
    """A conversation of the web front end, owned by one API key. Its number is this row's id,
    never handed out again once deleted (AUTOINCREMENT on SQLite, a sequence on PostgreSQL),
    so a client holding an old number gets "not found", never someone's newer conversation.
    Its history lives in the chat ``WEB_CHAT_BASE + id`` (type ``web``), like a Telegram
    chat's (:mod:`storage.repositories.web_conversations`)."""

    __tablename__ = "web_conversations"
    __table_args__ = (
        # A key's conversations, newest first, paged by id.
        Index("ix_web_conversations_key_id_id", "key_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
