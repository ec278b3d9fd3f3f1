"""One statement text for both drivers: ``:name`` placeholders numbered once for asyncpg."""

from __future__ import annotations

import pytest

from storage.sql import numbered, sql


def test_each_name_is_one_number_in_order_of_first_appearance() -> None:
    statement = numbered("SELECT :b, :a WHERE x = :b AND y = :c_2")
    assert statement.text == "SELECT $1, $2 WHERE x = $1 AND y = $3"
    assert statement.names == ("b", "a", "c_2")


def test_casts_quoted_text_and_words_with_colons_are_left_alone() -> None:
    statement = numbered(
        "SELECT CAST(:x AS BIGINT), :x::text, 'at :noon', 'it''s :not', y FROM t WHERE z=:y"
    )
    assert statement.text == (
        "SELECT CAST($1 AS BIGINT), $1::text, 'at :noon', 'it''s :not', y FROM t WHERE z=$2"
    )
    assert statement.names == ("x", "y")


def test_args_follow_the_numbers_and_a_missing_value_is_an_error() -> None:
    statement = sql("UPDATE t SET a = :a WHERE id = :id AND a <> :a")
    assert statement.sqlite == "UPDATE t SET a = :a WHERE id = :id AND a <> :a"
    assert statement.args({"id": 7, "a": "x", "unused": 1}) == ["x", 7]
    with pytest.raises(KeyError):
        statement.args({"a": "x"})


def test_a_postgresql_text_of_its_own_is_numbered_instead() -> None:
    statement = sql("SELECT :a", postgres="SELECT CAST(:a AS JSON), :b")
    assert statement.sqlite == "SELECT :a"
    assert statement.postgres.text == "SELECT CAST($1 AS JSON), $2"
    assert statement.args({"a": "[]", "b": 1}) == ["[]", 1]


def test_sqlite_binds_only_the_names_its_text_uses() -> None:
    statement = sql("SELECT :a, :b, :a", postgres="SELECT :c")
    assert statement.sqlite_names == ("a", "b")
    assert statement.postgres.names == ("c",)
