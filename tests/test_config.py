"""Configuration: parsing, aliases, and one message that names every bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

SPARK_VARS = (
    "SPARK_APP_ID SPARK_API_KEY SPARK_API_SECRET SPARK_MODEL SPARK_MODELS SPARK_URL "
    "SPARK_TEMPERATURE SPARK_MAX_TOKENS SPARK_TOP_K SPARK_SYSTEM_PROMPT PORT ADMIN_USER_IDS "
    "DATABASE_URL TELEGRAM_BOT_TOKEN STREAM_TRANSPORT WEBHOOK_URL WEBHOOK_SECRET "
    "TELEGRAM_API_BASE_URL"
).split()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SPARK_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_need_no_environment() -> None:
    settings = load_settings(None)
    assert settings.spark.model == "lite"
    assert settings.spark.has_credentials is False
    assert settings.database.url.startswith("sqlite+aiosqlite:///")


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Lite", "lite"),
        ("ULTRA", "4.0-ultra"),
        ("4.0Ultra", "4.0-ultra"),
        ("generalv3.5", "max"),
        ("v1.5", "v1.5"),
        ("Pro-128K", "pro-128k"),
        ("x1", "x1"),
        ("v3", "v3"),
    ],
)
def test_model_names_are_case_insensitive_aliases(
    monkeypatch: pytest.MonkeyPatch, given: str, canonical: str
) -> None:
    monkeypatch.setenv("SPARK_MODEL", given)
    assert load_settings(None).spark.model == canonical


def test_every_bad_variable_is_named_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_MODEL", "lite")
    monkeypatch.setenv("SPARK_MAX_TOKENS", "8000")
    monkeypatch.setenv("SPARK_TEMPERATURE", "1.5")
    monkeypatch.setenv("SPARK_TOP_K", "7")
    monkeypatch.setenv("SPARK_URL", "https://example.invalid/chat")
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("STREAM_TRANSPORT", "pigeon")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    message = str(caught.value)
    for name in (
        "SPARK_MAX_TOKENS",
        "SPARK_TEMPERATURE",
        "SPARK_TOP_K",
        "SPARK_URL",
        "PORT",
        "STREAM_TRANSPORT",
    ):
        assert name in message
    assert "1..4096" in message


def test_unknown_model_lists_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_MODEL", "gpt-4")
    with pytest.raises(ConfigError, match=r"SPARK_MODEL: unknown model 'gpt-4'.*4\.0-ultra"):
        load_settings(None)


def test_x1_allows_a_hotter_temperature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_MODEL", "x1")
    monkeypatch.setenv("SPARK_TEMPERATURE", "1.8")
    monkeypatch.setenv("SPARK_MAX_TOKENS", "32768")
    spark = load_settings(None).spark
    assert spark.temperature == 1.8
    assert spark.max_tokens == 32768


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_APP_ID", "app")
    with pytest.raises(ConfigError, match="SPARK_API_KEY, SPARK_API_SECRET"):
        load_settings(None).spark.require_credentials()


def test_env_file_and_id_lists(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "SPARK_APP_ID=app\nSPARK_API_KEY=key\nSPARK_API_SECRET=s3cr3t-value\n"
        "ADMIN_USER_IDS=1, 22 ,333\nSPARK_MODELS=lite,Max\n"
    )
    settings = load_settings(env)
    assert settings.spark.require_credentials() == ("app", "key", "s3cr3t-value")
    assert settings.telegram.admin_user_ids == [1, 22, 333]
    assert settings.spark.enabled_models == ("lite", "max")
    assert "s3cr3t-value" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://bot.example.com/tg", "must be an https:// URL"),
        ("ftp://bot.example.com/tg", "must be an https:// URL"),
        ("bot.example.com/tg", "must be an https:// URL"),
        ("https:///tg", "has no host"),
        ("https://", "has no host"),
        ("https://bot.example.com:99999/tg", "has a port that is not a number"),
        ("https://bot.example.com:https/tg", "has a port that is not a number"),
        ("https://bot.example.com:0/tg", "has a port that is not a number"),
    ],
)
def test_a_webhook_url_telegram_would_not_call_is_refused(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    monkeypatch.setenv("WEBHOOK_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    message = str(caught.value)
    assert message.startswith("invalid configuration: WEBHOOK_URL: ")
    assert problem in message
    assert "\n" not in message
    assert "/tg" not in message  # the path may be secret


@pytest.mark.parametrize(
    "url", ["https://bot.example.com/tg", "HTTPS://bot.example.com:8443/", " https://1.2.3.4 "]
)
def test_an_https_webhook_url_with_a_host_is_taken(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("WEBHOOK_URL", url)
    assert load_settings(None).telegram.webhook_url == url.strip()


def test_a_bot_api_server_of_ones_own_decides_about_http_webhooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # telegram-bot-api --local calls http:// webhooks; Telegram's own servers do not.
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "http://127.0.0.1:8081")
    monkeypatch.setenv("WEBHOOK_URL", "http://bot:8080/tg")
    assert load_settings(None).telegram.webhook_url == "http://bot:8080/tg"


@pytest.mark.parametrize("given", ["0", "101", "many"])
def test_webhook_connections_are_what_telegram_takes(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    assert load_settings(None).telegram.webhook_max_connections == 100
    monkeypatch.setenv("WEBHOOK_MAX_CONNECTIONS", given)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert "WEBHOOK_MAX_CONNECTIONS" in str(caught.value)
    monkeypatch.setenv("WEBHOOK_MAX_CONNECTIONS", "40")
    assert load_settings(None).telegram.webhook_max_connections == 40


def test_an_empty_webhook_url_means_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "")
    assert load_settings(None).telegram.webhook_url is None


@pytest.mark.parametrize(
    "secret", ["has spaces", "colon:inside", "ünïcode", "dot.ted", "x" * 257, "123456:ABC-token"]
)
def test_a_webhook_secret_telegram_refuses_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    message = str(caught.value)
    assert message.startswith("invalid configuration: WEBHOOK_SECRET: must be 1 to 256 ")
    assert "A-Z, a-z, 0-9, _ and -" in message
    assert secret not in message


@pytest.mark.parametrize("secret", ["a", "x" * 256, "Abc_123-xyz"])
def test_a_webhook_secret_in_telegrams_alphabet_is_taken(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    value = load_settings(None).telegram.webhook_secret
    assert value is not None
    assert value.get_secret_value() == secret


def test_an_empty_webhook_secret_means_a_random_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "")
    assert load_settings(None).telegram.webhook_secret is None


def test_redis_url_needs_postgresql_and_a_redis_scheme() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL: processes sharing Redis must share"):
        load_settings(None, redis={"url": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ConfigError, match=r"REDIS_URL: use redis://host:6379/0"):
        load_settings(
            None,
            redis={"url": "http://127.0.0.1:6379"},
            database={"url": "postgresql://postgres@127.0.0.1/test"},
        )
    settings = load_settings(
        None,
        redis={"url": "redis://127.0.0.1:6379/0"},
        database={"url": "postgresql://postgres@127.0.0.1/test"},
    )
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert load_settings(None).redis.url is None
