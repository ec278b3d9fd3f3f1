"""Splitting long answers into Telegram-sized parts: boundaries, code fences, exact rejoin."""

from __future__ import annotations

import random
import re

import pytest

from bot.service.visible_text import is_blank
from bot.telegram.textsplit import (
    MIN_SPLIT_LIMIT,
    TELEGRAM_TEXT_LIMIT,
    rejoin,
    split_text,
    utf16_len,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one visible emoji, five code points
FENCE_LINE = re.compile(r"^ *(`{3,}|~{3,})", re.MULTILINE)


def assert_valid(parts: list[str], limit: int) -> None:
    assert parts, "a non-blank text must give at least one part"
    for part in parts:
        assert utf16_len(part) <= limit, f"part of {utf16_len(part)} units > {limit}"
        assert not is_blank(part), f"blank part {part!r}"


def test_utf16_len_counts_code_units() -> None:
    assert utf16_len("") == 0
    assert utf16_len("abc") == 3
    assert utf16_len("星火") == 2
    assert utf16_len("😀") == 2
    assert utf16_len(FAMILY) == 8
    assert utf16_len("a😀星") == 4
    assert TELEGRAM_TEXT_LIMIT == 4096


def test_short_text_is_one_part_and_blank_text_is_none() -> None:
    assert split_text("你好 **world** 😀") == ["你好 **world** 😀"]
    assert split_text("x" * 4096) == ["x" * 4096]
    assert split_text("") == []
    assert split_text(" \n\t\u200b\n") == []


def test_limit_below_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        split_text("text", MIN_SPLIT_LIMIT - 1)


def test_paragraphs_are_cut_at_blank_lines() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 300 for i in range(5)]
    text = "\n\n".join(paragraphs)
    parts = split_text(text)
    assert_valid(parts, 4096)
    assert parts == [
        paragraphs[0] + "\n\n" + paragraphs[1] + "\n\n",
        paragraphs[2] + "\n\n" + paragraphs[3] + "\n\n",
        paragraphs[4],
    ]
    assert rejoin(parts) == text


def test_newline_is_preferred_to_sentence_end() -> None:
    lines = [f"Line {i}. It has sentences. " * 8 for i in range(40)]
    text = "\n".join(lines)
    parts = split_text(text)
    assert_valid(parts, 4096)
    assert len(parts) > 1
    for part in parts[:-1]:
        assert part.endswith("\n")
    assert rejoin(parts) == text


def test_chinese_sentences_are_cut_after_full_stop() -> None:
    text = "".join(f"这是第{i}句话，讲的是星火模型！真的吗？是的。" for i in range(400))
    parts = split_text(text)
    assert_valid(parts, 4096)
    assert len(parts) > 1
    for part in parts[:-1]:
        assert part[-1] in "。！？"
    assert rejoin(parts) == text


def test_english_sentence_end_needs_a_space_and_decimals_stay_whole() -> None:
    text = ("Pi is 3.14159 and e is 2.71828 in most texts. " * 120).strip()
    parts = split_text(text, 1000)
    assert_valid(parts, 1000)
    for part in parts[:-1]:
        assert part.endswith("texts. ")
    assert rejoin(parts) == text


def test_words_are_not_cut_when_spaces_exist() -> None:
    words = [f"w{i:05d}" for i in range(2000)]
    text = " ".join(words)
    parts = split_text(text)
    assert_valid(parts, 4096)
    assert len(parts) == 4
    seen = [word for part in parts for word in part.split()]
    assert seen == words
    assert rejoin(parts) == text


def test_text_without_any_boundary_is_hard_cut_at_the_limit() -> None:
    text = "字" * 10000
    parts = split_text(text)
    assert [len(part) for part in parts] == [4096, 4096, 1808]
    assert rejoin(parts) == text


def test_hard_cut_never_splits_a_surrogate_pair_or_an_emoji_cluster() -> None:
    emoji = "😀" * 5000
    parts = split_text(emoji)
    assert_valid(parts, 4096)
    assert all(utf16_len(part) == 2 * len(part) for part in parts)
    assert rejoin(parts) == emoji

    # "ab" shifts every family across the 1000-unit boundaries a blind cut would use
    families = "ab" + FAMILY * 1500
    parts = split_text(families, 1000)
    assert_valid(parts, 1000)
    for part in parts[1:]:
        assert part.startswith(FAMILY[0])
        assert len(part) % len(FAMILY) == 0
    for part in parts:
        assert part.endswith(FAMILY[-1])
    assert rejoin(parts) == families


def test_crlf_is_never_split() -> None:
    # a blind cut at 250 would fall between "\r" and "\n"
    text = "x" * 249 + "\r\n" + "y" * 100
    parts = split_text(text, 250)
    assert_valid(parts, 250)
    assert parts == ["x" * 249, "\r\n" + "y" * 100]
    assert rejoin(parts) == text


def test_code_block_that_fits_moves_whole_to_the_next_part() -> None:
    prose = "Some prose. " * 250  # 3000 characters
    code = "```python\n" + "".join(f"print({i})\n" for i in range(200)) + "```"
    text = prose + "\n\n" + code + "\n\nThe end."
    parts = split_text(text)
    assert_valid(parts, 4096)
    assert parts[0] == prose + "\n\n"
    assert parts[1].startswith(code)
    assert rejoin(parts) == text


def test_ten_thousand_character_answer_reopens_its_code_fence() -> None:
    intro = "\n\n".join(f"Paragraph {i}. " + "星火模型回答内容。 " * 40 for i in range(3))
    code_lines = [f"    result_{i} = compute(value_{i})  # step {i}" for i in range(200)]
    code = "```python\n" + "\n".join(code_lines) + "\n```"
    outro = "\n\n".join(f"Closing {i}. " + "More words here. " * 30 for i in range(3))
    text = intro + "\n\n" + code + "\n\n" + outro
    assert len(text) > 10000

    parts = split_text(text)

    assert_valid(parts, 4096)
    assert len(parts) >= 3
    assert rejoin(parts) == text
    reopened = [part for part in parts if part.startswith("```python\n    result_")]
    assert reopened, "the part continuing the code must re-open the fence"
    for index, part in enumerate(parts):
        fences = FENCE_LINE.findall(part)
        assert len(fences) % 2 == 0, f"part {index} leaves a fence open"
    closed_early = [part for part in parts[:-1] if part.endswith("\n```") and "result_" in part]
    assert closed_early, "the part cut inside the code must close the fence"
    # every code line arrives exactly once
    joined = "".join(parts)
    for line in code_lines:
        assert joined.count(line + "\n") == 1


def test_other_fence_markers_are_reopened_as_written() -> None:
    body = "".join(f"```inner {i}\n" for i in range(300))
    text = "Intro\n\n~~~~ text title\n" + body + "~~~~\n\nafter"
    parts = split_text(text, 1000)
    assert_valid(parts, 1000)
    for part in parts[1:-1]:
        assert part.startswith("~~~~ text title\n")
        assert part.endswith("\n~~~~")
    assert rejoin(parts) == text


def test_code_line_longer_than_a_part_is_cut_mid_line_and_reopened() -> None:
    line = "x = [" + ", ".join(str(i) for i in range(3000)) + "]"
    text = "Minified:\n\n```js\n" + line + "\n```\n\nDone."
    parts = split_text(text, 4096)
    assert_valid(parts, 4096)
    assert len(parts) >= 4
    for part in parts[1:-1]:
        assert part.startswith("```js\n")
    assert rejoin(parts) == text


def test_fence_line_lookalike_inside_code_survives_a_cut() -> None:
    code_lines = ["``` not a closer", "~~~", "``", "````"] * 200
    text = "```\n" + "\n".join(code_lines) + "\n```\ntail"
    for limit in (200, 333, 1000):
        parts = split_text(text, limit)
        assert_valid(parts, limit)
        assert rejoin(parts) == text


def test_whitespace_is_merged_into_visible_parts() -> None:
    text = "a" * 4096 + "\n\n\n   "
    parts = split_text(text)
    assert_valid(parts, 4096)
    assert rejoin(parts) == text

    text = "\n" * 1000 + "b" * 4000
    parts = split_text(text)
    assert_valid(parts, 4096)
    assert rejoin(parts) == text


def test_whitespace_runs_no_part_could_carry_are_shortened_not_sent_blank() -> None:
    text = "start" + "\n" * 9000 + "middle" + " " * 9000 + "end" + "\n" * 9000
    parts = split_text(text)
    assert_valid(parts, 4096)
    rebuilt = rejoin(parts)
    assert rebuilt.split() == ["start", "middle", "end"]
    assert "\n\nmiddle" in rebuilt


# --- generated inputs -----------------------------------------------------------------------

WORDS = [
    "hello",
    "world",
    "星火",
    "测试句子",
    "😀",
    FAMILY,
    "🇨🇳",
    "e\u0301",
    "Hi.",
    "好。",
    "真的！",
    "why?",
    "3.14",
    "**bold**",
    "`code`",
    "[link](https://example.com)",
    "<div>",
]
CODE_WORDS = [*WORDS, "```x", "~~", "``", "  ", "\t"]


def generated_text(rng: random.Random, block_ids: list[int]) -> str:
    """A Markdown-ish answer: prose, headings, lists, fences of every kind, long runs."""
    chunks: list[str] = []
    for _ in range(rng.randint(1, 40)):
        roll = rng.random()
        if roll < 0.18:
            block = len(block_ids)
            block_ids.append(block)
            indent = rng.choice(["", "  ", "    "])
            fence = rng.choice(["```", "````", "~~~"])
            lines = [indent + fence + rng.choice(["", "python", " js ", "c++ title"])]
            lines.append(f"{indent}# begin-{block}")
            for _ in range(rng.randint(0, 60)):
                count = rng.randint(0, 10)
                lines.append(indent + " ".join(rng.choice(CODE_WORDS) for _ in range(count)))
            lines += [f"{indent}# end-{block}", indent + fence]
            chunks.append("\n" + "\n".join(lines) + "\n")
        elif roll < 0.25:
            chunks.append(rng.choice(WORDS) * rng.randint(20, 300))
        else:
            prefix = rng.choice(["", "# ", "## ", "- ", "1. ", "> ", "  "])
            count = rng.randint(1, 60)
            chunks.append(prefix + " ".join(rng.choice(WORDS) for _ in range(count)))
        chunks.append(rng.choice(["\n", "\n\n", "\n\n\n", " ", "\r\n", "\n \n"]))
    if rng.random() < 0.2:
        # a half-streamed answer ends inside a code block
        chunks.append("\n```python\n" + "print('星火')\n" * rng.randint(1, 200))
    return "".join(chunks)


@pytest.mark.parametrize("seed", range(8))
def test_generated_answers_split_and_rejoin_exactly(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        block_ids: list[int] = []
        text = generated_text(rng, block_ids)
        limit = rng.choice([MIN_SPLIT_LIMIT, 257, 600, 1500, 4096])
        parts = split_text(text, limit)
        if is_blank(text):
            assert parts == []
            continue
        assert_valid(parts, limit)
        assert rejoin(parts) == text
        # a code block that fits in one part is never cut
        for block in block_ids:
            begin, end = f"# begin-{block}", f"# end-{block}"
            start = text.index(begin)
            span = text[text.rfind("\n", 0, start) : text.index(end) + len(end)]
            if utf16_len(span) + 40 <= limit:
                holders = [part for part in parts if begin in part]
                assert len(holders) == 1
                assert end in holders[0]
