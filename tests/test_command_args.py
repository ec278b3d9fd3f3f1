"""The strict parsers behind every command's arguments."""

from __future__ import annotations

import pytest

from bot.telegram.command_args import (
    QuotaArgs,
    StatsArgs,
    UsageError,
    UserRef,
    parse_int64,
    parse_model,
    parse_quota,
    parse_quota_args,
    parse_stats_args,
    parse_user_ref,
    shorten,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("50000", 50_000),
        ("50,000", 50_000),
        ("50_000", 50_000),
        ("50k", 50_000),
        ("2M", 2_000_000),
        ("2147483647", 2**31 - 1),
        ("off", 0),
        ("不限", 0),
        ("default", None),
        ("默认", None),
    ],
)
def test_quota_values(value: str, expected: int | None) -> None:
    assert parse_quota(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "0", "-5", "²", "５", "١٢", "5k5", "k", ",5", "2147483648", "9" * 30, "lots", "5 k"],
)
def test_bad_quota_values(value: str) -> None:
    with pytest.raises(UsageError):
        parse_quota(value)


def test_user_references() -> None:
    assert parse_user_ref("11") == UserRef(user_id=11)
    assert parse_user_ref("@Alice_1") == UserRef(username="Alice_1")
    assert parse_user_ref("9223372036854775807").user_id == 2**63 - 1
    assert UserRef(user_id=11).lookup == 11
    assert UserRef(username="alice").lookup == "@alice"


@pytest.mark.parametrize(
    "value",
    ["0", "-11", "²", "١", "9223372036854775808", "9" * 25, "@", "@" + "a" * 33, "@al-ice", "al"],
)
def test_bad_user_references(value: str) -> None:
    with pytest.raises(UsageError):
        parse_user_ref(value)


def test_ids_fit_signed_64_bits() -> None:
    assert parse_int64("-9223372036854775808") == -(2**63)
    for bad in ("-9223372036854775809", "9223372036854775808", "--5", "5-", "+5", "²", ""):
        with pytest.raises(UsageError):
            parse_int64(bad)


def test_command_shapes() -> None:
    assert parse_quota_args(["@alice"]) == QuotaArgs(UserRef(username="alice"))
    assert parse_quota_args(["11", "off"]) == QuotaArgs(UserRef(user_id=11), True, 0)
    assert parse_quota_args(["11", "default"]) == QuotaArgs(UserRef(user_id=11), True, None)
    assert parse_stats_args([]) == StatsArgs("overview")
    assert parse_stats_args(["EXPORT"]) == StatsArgs("export")
    assert parse_stats_args(["chat", "-500"]) == StatsArgs("chat", chat_id=-500)
    for bad_quota in ([], ["11", "5", "6"]):
        with pytest.raises(UsageError):
            parse_quota_args(bad_quota)
    for bad_stats in (["users"], ["export", "now"], ["user"], ["chat", "team"]):
        with pytest.raises(UsageError):
            parse_stats_args(bad_stats)


def test_models_must_be_known_enabled_and_short() -> None:
    assert parse_model(" MAX ", ("lite", "max")).name == "max"
    assert parse_model("generalv3.5", ("lite", "max")).name == "max"
    for bad in ("pro", "gpt-4", "x" * 5000, "max" + " " * 40 + "x"):
        with pytest.raises(UsageError):
            parse_model(bad, ("lite", "max"))


def test_shorten_bounds_what_is_echoed() -> None:
    assert shorten("gpt-4") == "gpt-4"
    assert shorten("x" * 5000) == "x" * 31 + "…"
    assert shorten("a\n\nb") == "a b"
