"""Token estimates (spark-protocol.md §3.4 rule of thumb) and per-chat calibration."""

from __future__ import annotations

import math

import pytest

from bot.spark.tokens import (
    DEFAULT_RATIO,
    MAX_RATIO,
    MESSAGE_OVERHEAD_TOKENS,
    MIN_RATIO,
    PROMPT_OVERHEAD_TOKENS,
    SAFETY_MARGIN,
    calibrated_tokens,
    estimate_messages_tokens,
    estimate_text_tokens,
    update_ratio,
)
from bot.spark.types import ChatMessage


def test_chinese_is_one_token_per_one_and_a_half_characters_rounded_up() -> None:
    assert estimate_text_tokens("你好") == 2  # 2 / 1.5 = 1.33 -> 2
    assert estimate_text_tokens("今天天气很好") == 4  # 6 / 1.5
    assert estimate_text_tokens("中" * 300) == 200


def test_english_is_one_token_per_point_eight_words() -> None:
    assert estimate_text_tokens("the cat sat on the mat") == math.ceil(6 / 0.8)
    assert estimate_text_tokens("hello") == 2  # 1.25 -> 2


def test_long_words_digits_and_symbols_cost_more_than_short_ones() -> None:
    assert estimate_text_tokens("internationalisation") >= 5
    assert estimate_text_tokens("1234567") == 3
    assert estimate_text_tokens("a+b=c;") == math.ceil(3 * 1.25 + 3)
    assert estimate_text_tokens("🙂") == 2


def test_mixed_text_adds_both_scripts() -> None:
    text = "Spark 星火大模型 answers 问题"
    # words: Spark, answers (2 × 1.25); CJK: 5 + 2 chars (7 / 1.5)
    assert estimate_text_tokens(text) == math.ceil(2.5 + 5 / 1.5 + 2 / 1.5)


def test_empty_text_costs_nothing_but_a_message_costs_its_overhead() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("  \n\t ") == 0
    messages = [ChatMessage("user", ""), ChatMessage("assistant", "你好")]
    assert estimate_messages_tokens(messages) == (
        PROMPT_OVERHEAD_TOKENS + 2 * MESSAGE_OVERHEAD_TOKENS + 2
    )


def test_calibrated_estimate_applies_ratio_and_safety_margin() -> None:
    assert calibrated_tokens(100, 1.0) == math.ceil(100 * SAFETY_MARGIN)
    assert calibrated_tokens(100, 2.0) == math.ceil(200 * SAFETY_MARGIN)
    assert calibrated_tokens(100, 100.0) == math.ceil(100 * MAX_RATIO * SAFETY_MARGIN)


@pytest.mark.parametrize("true_ratio", [0.6, 0.85, 1.4, 2.3])
def test_ratio_converges_on_sparks_count_from_above(true_ratio: float) -> None:
    ratio = DEFAULT_RATIO
    history: list[int] = []
    for raw in [120, 300, 80, 950, 410, 220, 640, 150, 500, 700, 330, 260, 900, 90, 480] * 2:
        reported = round(raw * true_ratio)
        ratio = update_ratio(ratio, raw, reported)
        history.append(calibrated_tokens(1000, ratio))
    real = 1000 * true_ratio
    final = history[-1]
    # Never below Spark's real count at the end, and within the safety margin plus 3 %.
    assert real <= final <= real * (SAFETY_MARGIN + 0.03)
    assert ratio == pytest.approx(true_ratio, rel=0.03)


def test_underestimates_are_corrected_faster_than_overestimates() -> None:
    up = update_ratio(1.0, 100, 200) - 1.0
    down = 1.0 - update_ratio(1.0, 100, 50)
    assert up > down > 0


def test_ratio_is_clamped_and_ignores_meaningless_reports() -> None:
    ratio = DEFAULT_RATIO
    for _ in range(50):
        ratio = update_ratio(ratio, 10, 10_000)
    assert ratio == pytest.approx(MAX_RATIO)
    for _ in range(200):
        ratio = update_ratio(ratio, 10_000, 1)
    assert ratio == pytest.approx(MIN_RATIO)
    assert update_ratio(1.3, 0, 500) == 1.3
    assert update_ratio(1.3, 500, 0) == 1.3
    assert update_ratio(float("nan"), 100, 100) == DEFAULT_RATIO


def test_one_wild_report_cannot_push_the_ratio_past_its_bounds() -> None:
    assert MIN_RATIO <= update_ratio(1.0, 10, 1_000_000) <= MAX_RATIO
    assert MIN_RATIO <= update_ratio(1.0, 1_000_000, 1) <= MAX_RATIO
