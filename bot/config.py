"""Settings from the environment and ``.env``, validated once at start.

Each group reads its own variables; :func:`load_settings` validates every group and raises one
:class:`~bot.errors.ConfigError` that names *every* bad or missing variable, so an operator fixes
a deployment in one go. No instance exists at import time: ``__main__`` loads it and passes it on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError
from bot.spark.models import MODEL_NAMES, SparkModel, find_model, get_model
from bot.spark.options import SparkOptions
from bot.spark.retry import RetryPolicy, SparkTimeouts
from bot.spark.types import GenerationOptions

StreamTransport = Literal["auto", "draft", "edit"]
GroupHistoryScope = Literal["chat", "user"]
UnauthorizedGroupAction = Literal["leave", "silent"]

IdList = Annotated[list[int], NoDecode]
# What Telegram accepts as setWebhook's secret_token.
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _split_ids(value: Any) -> Any:
    """Accept ``1, 2,3`` (and JSON-ish ``[1,2]``) as well as real lists."""
    if isinstance(value, str):
        text = value.strip().strip("[]")
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    if isinstance(value, int):
        return [value]
    return value


def _model_name(value: Any) -> Any:
    if isinstance(value, str):
        model = find_model(value)
        if model is None:
            raise ValueError(f"unknown model {value!r}; choose one of {', '.join(MODEL_NAMES)}")
        return model.name
    return value


class _Group(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )


class SparkSettings(_Group):
    """``SPARK_*``: credentials, model and generation defaults, timeouts."""

    model_config = SettingsConfigDict(env_prefix="SPARK_")

    app_id: str | None = None
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    model: str = "lite"
    # Models users may switch to with /model; empty means only SPARK_MODEL.
    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    url: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_k: int = Field(default=4, ge=1, le=6)
    system_prompt: str | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    first_frame_timeout: float = Field(default=60.0, gt=0)
    idle_timeout: float = Field(default=60.0, gt=0)
    total_timeout: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)

    _normalise_model = field_validator("model", mode="before")(_model_name)

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.replace(";", ",").split(",") if part.strip()]
        return [_model_name(v) for v in value] if isinstance(value, list) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value or None

    @field_validator("max_tokens")
    @classmethod
    def _check_max_tokens(cls, value: int | None, info: ValidationInfo) -> int | None:
        model = find_model(str(info.data.get("model", "")))
        if value is not None and model is not None and not 1 <= value <= model.max_tokens_limit:
            raise ValueError(
                f"{value} is outside {model.title}'s range 1..{model.max_tokens_limit}"
            )
        return value

    @field_validator("temperature")
    @classmethod
    def _check_temperature(cls, value: float | None, info: ValidationInfo) -> float | None:
        model = find_model(str(info.data.get("model", "")))
        if value is not None and model is not None and not 0 < value <= model.temperature_max:
            raise ValueError(
                f"{value} is outside {model.title}'s range (0, {model.temperature_max:g}]"
            )
        return value

    @property
    def model_info(self) -> SparkModel:
        return get_model(self.model)

    def client_options(self) -> SparkOptions:
        """The Spark client's options for SPARK_MODEL with the operator's credentials, URL,
        timeouts, retries (SPARK_MAX_RETRIES retries = that many + 1 attempts) and generation
        defaults; a ConfigError names missing credentials."""
        app_id, api_key, api_secret = self.require_credentials()
        return SparkOptions(
            app_id=app_id,
            api_key=api_key,
            api_secret=api_secret,
            model=self.model_info,
            url=self.url,
            timeouts=SparkTimeouts(
                connect=self.connect_timeout,
                first_frame=self.first_frame_timeout,
                idle=self.idle_timeout,
                total=self.total_timeout,
            ),
            retry=RetryPolicy(max_attempts=self.max_retries + 1),
            defaults=GenerationOptions(
                temperature=self.temperature, max_tokens=self.max_tokens, top_k=self.top_k
            ),
        )

    @property
    def enabled_models(self) -> tuple[str, ...]:
        """SPARK_MODEL first, then the others the operator enabled, without repeats."""
        return tuple(dict.fromkeys([self.model, *self.models]))

    @property
    def has_credentials(self) -> bool:
        return bool(self.app_id and self.api_key and self.api_secret)

    def require_credentials(self) -> tuple[str, str, str]:
        """(app_id, api_key, api_secret), or a ConfigError naming what is missing."""
        missing = [
            name
            for name, value in (
                ("SPARK_APP_ID", self.app_id),
                ("SPARK_API_KEY", self.api_key),
                ("SPARK_API_SECRET", self.api_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"missing Spark credentials: {', '.join(missing)}")
        return (
            str(self.app_id),
            self.api_key.get_secret_value() if self.api_key else "",
            self.api_secret.get_secret_value() if self.api_secret else "",
        )


class DatabaseSettings(_Group):
    url: str = Field(
        default="sqlite+aiosqlite:///data/bot.sqlite3",
        validation_alias=AliasChoices("DATABASE_URL"),
    )


class TelegramSettings(_Group):
    """The Telegram side: token, transport, access control."""

    bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN")
    )
    api_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_API_BASE_URL")
    )
    webhook_url: str | None = Field(default=None, validation_alias=AliasChoices("WEBHOOK_URL"))
    # Telegram posts at most this many updates at once (its default: 40). Each is answered
    # once its question is stored, so this over the time that takes is how many questions a
    # second the bot can take in: Telegram's maximum, for bursts.
    webhook_max_connections: int = Field(
        default=100, ge=1, le=100, validation_alias=AliasChoices("WEBHOOK_MAX_CONNECTIONS")
    )
    webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("WEBHOOK_SECRET")
    )
    host: str = Field(default="0.0.0.0", validation_alias=AliasChoices("HOST"))  # noqa: S104
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    admin_user_ids: IdList = Field(
        default_factory=list, validation_alias=AliasChoices("ADMIN_USER_IDS")
    )
    allowed_user_ids: IdList = Field(
        default_factory=list, validation_alias=AliasChoices("ALLOWED_USER_IDS")
    )
    allowed_chat_ids: IdList = Field(
        default_factory=list, validation_alias=AliasChoices("ALLOWED_CHAT_IDS")
    )
    stream_transport: StreamTransport = Field(
        default="auto", validation_alias=AliasChoices("STREAM_TRANSPORT")
    )
    group_history_scope: GroupHistoryScope = Field(
        default="chat", validation_alias=AliasChoices("GROUP_HISTORY_SCOPE")
    )
    unauthorized_group_action: UnauthorizedGroupAction = Field(
        default="silent", validation_alias=AliasChoices("UNAUTHORIZED_GROUP_ACTION")
    )
    shutdown_grace_seconds: float = Field(
        default=10.0, ge=0, validation_alias=AliasChoices("SHUTDOWN_GRACE_SECONDS")
    )
    # Send budgets (bot.telegram.send_budgets): Telegram's published figures, a little under.
    send_private_interval: float = Field(
        default=1.0, gt=0, validation_alias=AliasChoices("SEND_PRIVATE_INTERVAL")
    )
    send_group_interval: float = Field(
        default=3.0, gt=0, validation_alias=AliasChoices("SEND_GROUP_INTERVAL")
    )
    send_group_per_minute: int = Field(
        default=20, ge=1, validation_alias=AliasChoices("SEND_GROUP_PER_MINUTE")
    )
    send_global_per_second: int = Field(
        default=28, ge=1, validation_alias=AliasChoices("SEND_GLOBAL_PER_SECOND")
    )
    send_draft_interval: float = Field(
        default=1.0, gt=0, validation_alias=AliasChoices("SEND_DRAFT_INTERVAL")
    )
    send_drafts_count_global: bool = Field(
        default=False, validation_alias=AliasChoices("SEND_DRAFTS_COUNT_GLOBAL")
    )
    send_actions_count_global: bool = Field(
        default=False, validation_alias=AliasChoices("SEND_ACTIONS_COUNT_GLOBAL")
    )
    send_learn_seconds: float = Field(
        default=600.0, ge=0, validation_alias=AliasChoices("SEND_LEARN_SECONDS")
    )

    _split = field_validator(
        "admin_user_ids", "allowed_user_ids", "allowed_chat_ids", mode="before"
    )(_split_ids)

    @field_validator(
        "stream_transport", "group_history_scope", "unauthorized_group_action", mode="before"
    )
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The URL may carry a secret path: messages name the problem, never the value.
        url = (value or "").strip()
        if not url:
            return None
        parts = urlsplit(url)
        # Telegram calls webhooks over HTTPS only; a Bot API server of one's own in --local
        # mode also calls http://, so there its own answer to setWebhook decides.
        schemes = ("https", "http") if info.data.get("api_base_url") else ("https",)
        if parts.scheme.lower() not in schemes:
            raise ValueError("must be an https:// URL (Telegram calls webhooks over HTTPS only)")
        try:
            port = parts.port  # raises on a port that is not a number in range
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("has a port that is not a number from 1 to 65535")
        if not parts.hostname:
            raise ValueError(
                "has no host; give the public address, e.g. https://bot.example.com/telegram"
            )
        return url

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # unset: a random secret is made at each start
        if not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError(
                "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)"
            )
        return value

    @property
    def token(self) -> str | None:
        return self.bot_token.get_secret_value() if self.bot_token else None


class LimitSettings(_Group):
    """Quotas and abuse limits (0 = unlimited)."""

    daily_token_quota: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("DAILY_TOKEN_QUOTA")
    )
    user_rate_limit: int = Field(default=0, ge=0, validation_alias=AliasChoices("USER_RATE_LIMIT"))


class HttpApiSettings(_Group):
    """``HTTP_API_*``: the OpenAI-compatible HTTP API (``python -m bot web``, or beside the
    bot when enabled). Requests are bounded before Spark is called."""

    model_config = SettingsConfigDict(env_prefix="HTTP_API_")

    # Serve the API from the bot's own web app too (HOST:PORT), in polling mode as well.
    enabled: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_messages: int = Field(default=256, ge=1)
    # A comment line on a stream while Spark is silent, so proxies keep the connection.
    keepalive_seconds: float = Field(default=15.0, gt=0)
    # Off: of each request only its ledger row is kept, not what was asked and answered.
    store_bodies: bool = False
    # A conversation answer whose readers all left keeps being written this long, so a
    # reader that reconnects with Last-Event-ID resumes it; then it is stored as partial.
    resume_grace_seconds: float = Field(default=30.0, ge=0)


class RedisSettings(_Group):
    """``REDIS_*``: state shared by several processes serving one bot (unset: one process)."""

    model_config = SettingsConfigDict(env_prefix="REDIS_")

    url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    # Keys of this bot start with it, so several bots can share one Redis.
    prefix: str = Field(default="sparkbot:", min_length=1)
    # How long a process that stopped renewing still holds a conversation and counts as alive:
    # the bound on how long a killed process's users wait to hear of it.
    lease_seconds: float = Field(default=5.0, ge=1.0, le=60.0)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use redis://host:6379/0 (or rediss:// for TLS)")
        return value.strip()


class Settings(BaseModel):
    """All settings, grouped."""

    spark: SparkSettings
    database: DatabaseSettings
    telegram: TelegramSettings
    limits: LimitSettings
    http_api: HttpApiSettings = Field(default_factory=HttpApiSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    log_level: str = "INFO"


_GROUPS: dict[str, type[_Group]] = {
    "spark": SparkSettings,
    "database": DatabaseSettings,
    "telegram": TelegramSettings,
    "limits": LimitSettings,
    "http_api": HttpApiSettings,
    "redis": RedisSettings,
}


def _env_name(group: type[_Group], field: str) -> str:
    info = group.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        if isinstance(first, str):
            return first
    prefix = group.model_config.get("env_prefix") or ""
    return f"{prefix}{field}".upper()


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read and validate every group; raise one ConfigError listing all problems.

    ``overrides`` maps a group name to a dict of field values (tests and the CLI use it).
    """
    groups: dict[str, Any] = {}
    problems: list[str] = []
    for name, group in _GROUPS.items():
        try:
            groups[name] = group(_env_file=env_file, **overrides.get(name, {}))
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                variable = _env_name(group, field) if field else group.__name__
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{variable}: {message}" if field else message)
    redis, database = groups.get("redis"), groups.get("database")
    if redis and redis.url and database and database.url.startswith("sqlite"):
        problems.append(
            "REDIS_URL: processes sharing Redis must share PostgreSQL too; set "
            "DATABASE_URL to postgresql://..."
        )
    if len(problems) == 1:
        raise ConfigError(f"invalid configuration: {problems[0]}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return Settings(log_level=os.environ.get("LOG_LEVEL", "INFO").upper(), **groups)
