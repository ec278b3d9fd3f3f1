"""Markdown answers rendered as Telegram text and entities, split into sendable parts."""

from __future__ import annotations

import dataclasses
import random

import pytest
from telegram import MessageEntity

from bot.service.visible_text import is_blank
from bot.telegram.formatting import (
    TELEGRAM_TEXT_LIMIT,
    Rendered,
    plain_parts,
    preview_text,
    render_markdown,
    render_message_parts,
    render_parts,
)
from bot.telegram.textsplit import split_text, utf16_len


def covered(rendered: Rendered, entity: MessageEntity) -> str:
    """The text under `entity`, sliced in UTF-16 code units as Telegram does."""
    units = rendered.text.encode("utf-16-le")
    return units[2 * entity.offset : 2 * (entity.offset + entity.length)].decode("utf-16-le")


def spans(rendered: Rendered) -> list[tuple[str, str]]:
    return [(entity.type, covered(rendered, entity)) for entity in rendered.entities]


def assert_sendable(rendered: Rendered, limit: int = TELEGRAM_TEXT_LIMIT) -> None:
    assert 1 <= utf16_len(rendered.text) <= limit
    assert rendered.text == rendered.text.strip(), "Telegram would strip the edges"
    size = utf16_len(rendered.text)
    for entity in rendered.entities:
        assert entity.length > 0
        assert entity.offset >= 0
        assert entity.offset + entity.length <= size, (entity, size)


def test_plain_text_comes_back_unchanged() -> None:
    text = "你好，星火！\n\n\n  Indented line stays indented.\nPrice: 5 dollars, 3 items 😀"
    assert render_markdown(text) == Rendered(text, ())
    assert render_markdown("\n\n  hello  \n") == Rendered("hello", ())
    assert render_markdown(" \n ") == Rendered("", ())


def test_inline_styles_have_exact_utf16_offsets_after_cjk_and_emoji() -> None:
    rendered = render_markdown("中文😀 **粗体** and *italic* or `code` ~~gone~~")
    assert rendered.text == "中文😀 粗体 and italic or code gone"
    assert [entity.to_dict() for entity in rendered.entities] == [
        {"type": "bold", "offset": 5, "length": 2},
        {"type": "italic", "offset": 12, "length": 6},
        {"type": "code", "offset": 22, "length": 4},
        {"type": "strikethrough", "offset": 27, "length": 4},
    ]
    assert spans(rendered) == [
        ("bold", "粗体"),
        ("italic", "italic"),
        ("code", "code"),
        ("strikethrough", "gone"),
    ]


def test_code_block_becomes_pre_with_its_language() -> None:
    rendered = render_markdown("运行👇\n\n```python\nprint('星火')\nx = 1\n```\n\nDone.")
    assert rendered.text == "运行👇\n\nprint('星火')\nx = 1\n\nDone."
    (pre,) = rendered.entities
    assert pre.to_dict() == {"type": "pre", "offset": 6, "length": 17, "language": "python"}
    assert covered(rendered, pre) == "print('星火')\nx = 1"


def test_links_keep_their_url_and_unopenable_links_become_text() -> None:
    rendered = render_markdown(
        "🔥 See [the docs](https://example.com/a?b=1), [local](notes.html) "
        "and [bad](javascript:alert(1))."
    )
    assert rendered.text == "🔥 See the docs, local and bad."
    (link,) = rendered.entities
    assert link.type == MessageEntity.TEXT_LINK
    assert link.url == "https://example.com/a?b=1"
    assert covered(rendered, link) == "the docs"


def test_headings_are_bold_without_emoji_decoration() -> None:
    rendered = render_markdown("# 标题 Title\n\n### Section\n\nBody")
    assert rendered.text == "标题 Title\n\nSection\n\nBody"
    assert sorted(spans(rendered)) == [
        ("bold", "Section"),
        ("bold", "标题 Title"),
        ("underline", "标题 Title"),
    ]


def test_lists_use_plain_markers() -> None:
    rendered = render_markdown(
        "- 苹果\n- **pear**\n  - nested\n\n1. one\n2. two\n\n- [ ] open\n- [x] done"
    )
    assert rendered.text == "• 苹果\n• pear\n  • nested\n\n1. one\n2. two\n\n☐ open\n✅ done"
    assert spans(rendered) == [("bold", "pear")]


def test_quotes_become_blockquotes_and_nested_quotes_are_flattened() -> None:
    rendered = render_markdown("> 引用 quote\n> > inner\n> back\n\nafter")
    assert rendered.text == "引用 quote\ninner\nback\n\nafter"
    assert spans(rendered) == [("blockquote", "引用 quote\ninner\nback")]


def test_nested_entities() -> None:
    rendered = render_markdown("**bold _both_ end** and ***all***")
    assert rendered.text == "bold both end and all"
    assert sorted(spans(rendered)) == [
        ("bold", "all"),
        ("bold", "bold both end"),
        ("italic", "all"),
        ("italic", "both"),
    ]


def test_raw_html_is_shown_not_swallowed() -> None:
    source = "Use <br/> or <div> here.\n\n<div>\n  block\n</div>\n\n<!-- note -->"
    rendered = render_markdown(source)
    assert rendered.text == source
    assert rendered.entities == ()
    mixed = render_markdown("星火😀 **<b>x</b>** and `<i>`")
    assert mixed.text == "星火😀 <b>x</b> and <i>"
    assert spans(mixed) == [("bold", "<b>x</b>"), ("code", "<i>")]
    assert mixed.entities[0].offset == 5


def test_tables_and_math_render_as_monospace() -> None:
    rendered = render_markdown("| 名字 | n |\n|---|---|\n| a | 1 |\n\nArea \\(\\pi r^2\\)")
    assert spans(rendered)[0][0] == "pre"
    assert "名字 | n" in spans(rendered)[0][1]
    assert ("code", "π r²") in spans(rendered)


def test_markdown_that_shows_nothing_falls_back_to_its_source() -> None:
    assert render_markdown("[ref]: https://example.com") == Rendered(
        "[ref]: https://example.com", ()
    )


STREAMED_ANSWER = (
    "# 回答\n\n**要点**：星火 *模型* 支持 `stream`。\n\n"
    "> 注意 [链接](https://example.com)\n\n"
    "```python\nfor i in range(3):\n    print(i)\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n- 一\n- 二 😀\n"
)


@pytest.mark.parametrize("end", range(1, len(STREAMED_ANSWER) + 1, 3))
def test_half_streamed_markdown_renders_without_raising(end: int) -> None:
    prefix = STREAMED_ANSWER[:end]
    rendered = render_markdown(prefix)
    if is_blank(prefix):
        assert rendered.text == ""
        return
    assert_sendable(rendered)


def test_unclosed_markup_stays_readable() -> None:
    assert render_markdown("**unclosed bold and `code") == Rendered(
        "**unclosed bold and `code", ()
    )
    rendered = render_markdown("Look:\n\n```python\nprint(1)\nprint(")
    assert spans(rendered) == [("pre", "print(1)\nprint(")]
    assert rendered.entities[0].language == "python"


def long_answer() -> str:
    prose = "\n\n".join(
        f"第{i}段：星火模型的**回答**，含 `code` 与 emoji 😀。" * 12 for i in range(6)
    )
    code = "```python\n" + "".join(f"value_{i} = compute({i})  # 第{i}步\n" for i in range(260))
    return prose + "\n\n" + code + "```\n\n" + "**The end.** 完。"


def test_render_parts_splits_a_long_answer_into_valid_messages() -> None:
    answer = long_answer()
    assert len(answer) > 10000

    parts = render_parts(answer)

    assert len(parts) >= 3
    for part in parts:
        assert_sendable(part)
    code_parts = [
        part for part in parts if any(entity.type == MessageEntity.PRE for entity in part.entities)
    ]
    assert len(code_parts) >= 2, "the long code block continues in a second message"
    for part in code_parts:
        (pre,) = [entity for entity in part.entities if entity.type == MessageEntity.PRE]
        assert pre.language == "python"
        assert covered(part, pre).startswith("value_")
        assert "```" not in part.text
    shown = "\n".join(part.text for part in parts)
    for i in range(260):
        assert shown.count(f"value_{i} = compute({i})  # 第{i}步") == 1
    assert parts[-1].text.endswith("The end. 完。")


def test_render_parts_splits_again_when_rendering_lengthens_a_part() -> None:
    # every "---" (3 units) renders as an 8-unit rule, so each source part grows
    answer = "---\n\n" * 1000
    parts = render_parts(answer, 1000)
    assert len(parts) > len(split_text(answer, 1000))
    for part in parts:
        assert_sendable(part, 1000)
    assert sum(part.text.count("————————") for part in parts) == 1000


def test_each_message_carries_a_plain_fallback_for_the_same_text() -> None:
    answer = "---\n\n" * 300 + long_answer()
    parts = render_message_parts(answer, 1000)
    assert [part.rendered for part in parts] == render_parts(answer, 1000)
    for part in parts:
        assert 1 <= utf16_len(part.plain) <= 1000
        assert part.plain == part.plain.strip()
    # the fallbacks together are the whole answer, fence lines added for the cuts aside
    plain = "".join(part.plain for part in parts).replace("```python\n", "").replace("```", "")
    source = answer.replace("```python\n", "").replace("```", "")
    assert "".join(plain.split()) == "".join(source.split())


def test_render_parts_on_generated_answers_gives_only_valid_messages() -> None:
    pieces = [
        "星火",
        "**粗体**",
        "*斜体*",
        "`code`",
        "[链接](https://example.com)",
        "😀",
        "> 引用\n",
        "\n- 项目\n",
        "\n# 标题\n",
        "\n```js\nlet x = 1;\n",
        "\n```\n",
        "\n\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n",
        "<div>",
        "\\(\\alpha\\)",
    ]
    rng = random.Random(7)
    for _ in range(30):
        answer = " ".join(rng.choice(pieces) for _ in range(rng.randint(50, 400)))
        limit = rng.choice([200, 500, 1000])
        parts = render_parts(answer, limit)
        assert parts
        for part in parts:
            assert_sendable(part, limit)


def test_plain_parts_are_the_split_source_trimmed() -> None:
    answer = long_answer()
    parts = plain_parts(answer)
    assert parts == [part.strip() for part in split_text(answer)]
    assert all(1 <= utf16_len(part) <= TELEGRAM_TEXT_LIMIT for part in parts)
    assert parts[1].startswith("```python\n") or parts[2].startswith("```python\n")
    assert plain_parts("  short  ") == ["short"]
    assert plain_parts("\n\n") == []


def test_preview_shows_the_part_being_written() -> None:
    assert preview_text("") == ""
    assert preview_text("  \n") == ""
    assert preview_text("Hello **wor") == "Hello **wor"
    answer = long_answer()
    assert preview_text(answer) == split_text(answer)[-1].strip()
    assert preview_text(answer).endswith("**The end.** 完。")
    streaming = answer[: answer.index("value_150")]
    assert preview_text(streaming).startswith("```python\n")


def test_rendered_is_immutable() -> None:
    rendered = render_markdown("**x**")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rendered.text = "y"  # type: ignore[misc]
