"""Configuration: parsing, aliases, and one message that names every bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

SPARK_VARS = (
    "SPARK_APP_ID SPARK_API_KEY SPARK_API_SECRET SPARK_MODEL SPARK_MODELS SPARK_URL "
    "SPARK_TEMPERATURE SPARK_MAX_TOKENS SPARK_TOP_K SPARK_SYSTEM_PROMPT PORT ADMIN_USER_IDS "
    "DATABASE_URL TELEGRAM_BOT_TOKEN STREAM_TRANSPORT"
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
