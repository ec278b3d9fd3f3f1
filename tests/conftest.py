"""Fixtures shared by every test live in tests/support; this file only registers them."""

pytest_plugins = [
    "tests.support.spark_fixtures",
    "tests.support.db_fixtures",
    "tests.support.telegram_fixtures",
    "tests.support.bot_harness",
    "tests.support.redis_fixtures",
]
