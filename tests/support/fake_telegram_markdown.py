"""Telegram's MarkdownV2 and legacy Markdown parse modes turned into text + entities.

MarkdownV2 follows the Bot API rules: every reserved character outside an entity must be
escaped, code and pre only need '`' and '\\' escaped, "__" is taken greedily as underline, and
">" / "**>" start (expandable) block quotes. Errors use Telegram's wording ("Character '.' is
reserved...", "Can't find end of Bold entity at byte offset N").
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.fake_telegram_entities import UserLookup
from tests.support.fake_telegram_errors import BotApiError, JsonDict
from tests.support.fake_telegram_markup import MarkupOutput, byte_offset, parse_error

MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "link": "TextUrl",
    "emoji": "CustomEmoji",
}


@dataclass
class _OpenMark:
    kind: str
    start: int
    source_index: int
    language: str | None = None
    part_index: int = 0
    end: int = 0


def parse_markdown_v2(source: str, users: UserLookup) -> tuple[str, list[JsonDict]]:
    out = MarkupOutput(users)
    stack: list[_OpenMark] = []
    quote: _OpenMark | None = None
    i, n = 0, len(source)
    at_line_start = True
    while i < n:
        top = stack[-1] if stack else None
        in_code = top is not None and top.kind in ("code", "pre")
        if at_line_start and not in_code:
            at_line_start = False
            expandable = source.startswith("**>", i)
            if expandable or source[i] == ">":
                if quote is None:
                    kind = "expandable_blockquote" if expandable else "blockquote"
                    quote = _OpenMark(kind, out.units, i)
                i += 3 if expandable else 1
                continue
            if quote is not None:
                _close_quote(out, quote)
                quote = None
        char = source[i]
        if char == "\n":
            if quote is not None:
                quote.end = out.units
            out.add(char)
            at_line_start = not in_code
            i += 1
            continue
        if char == "\\" and i + 1 < n and 1 <= ord(source[i + 1]) <= 126:
            out.add(source[i + 1])
            i += 2
            continue
        if in_code and top is not None:
            if top.kind == "pre" and source.startswith("```", i):
                _close_mark(out, stack.pop())
                i += 3
            elif top.kind == "code" and char == "`":
                _close_mark(out, stack.pop())
                i += 1
            else:
                out.add(char)
                i += 1
            continue
        if char not in MARKDOWN_V2_RESERVED:
            out.add(char)
            i += 1
            continue
        if _ends_expandable_quote(source, i, quote, top.kind if top else None):
            assert quote is not None
            quote.end = out.units
            _close_quote(out, quote)
            quote = None
            i += 2
            continue
        i = _markdown_v2_mark(source, i, out, stack)
    if stack:
        top = stack[-1]
        raise parse_error(
            f"Can't find end of {_V2_NAMES[top.kind]} entity at byte offset "
            f"{byte_offset(source, top.source_index)}"
        )
    if quote is not None:
        if not source.endswith("\n"):
            quote.end = out.units
        _close_quote(out, quote)
    return out.result()


def _ends_expandable_quote(source: str, i: int, quote: _OpenMark | None, top: str | None) -> bool:
    after = i + 2
    return (
        quote is not None
        and quote.kind == "expandable_blockquote"
        and top is None
        and source.startswith("||", i)
        and (after == len(source) or source[after] == "\n")
    )


def _close_quote(out: MarkupOutput, quote: _OpenMark) -> None:
    if quote.end > quote.start:
        out.entities.append(
            {"type": quote.kind, "offset": quote.start, "length": quote.end - quote.start}
        )


def _reserved(source: str, i: int) -> BotApiError:
    return parse_error(
        f"Character '{source[i]}' is reserved and must be escaped with the preceding '\\'"
    )


def _markdown_v2_mark(source: str, i: int, out: MarkupOutput, stack: list[_OpenMark]) -> int:
    """Handle the reserved character at `i` outside code; return the next index."""
    char = source[i]
    top = stack[-1].kind if stack else None
    double = source.startswith(char * 2, i)
    if char == "_":
        if top == "underline" and double:
            _close_mark(out, stack.pop())
            return i + 2
        if top == "italic" and not double:
            _close_mark(out, stack.pop())
            return i + 1
        stack.append(_OpenMark("underline" if double else "italic", out.units, i))
        return i + (2 if double else 1)
    if char in "*~":
        kind = "bold" if char == "*" else "strikethrough"
        if top == kind:
            _close_mark(out, stack.pop())
        else:
            stack.append(_OpenMark(kind, out.units, i))
        return i + 1
    if char == "|" and double:
        if top == "spoiler":
            _close_mark(out, stack.pop())
        else:
            stack.append(_OpenMark("spoiler", out.units, i))
        return i + 2
    if char == "[" or (char == "!" and source.startswith("![", i)):
        kind = "link" if char == "[" else "emoji"
        stack.append(_OpenMark(kind, out.units, i, part_index=len(out.parts)))
        return i + (1 if char == "[" else 2)
    if char == "]" and top in ("link", "emoji"):
        mark = stack.pop()
        url, after = _read_v2_url(source, i + 1)
        if url is None:
            # "[text]" without "(url)": Telegram uses the text itself as the URL.
            url = "".join(out.parts[mark.part_index :])
        out.link(mark.start, url)
        return after
    if char == "`":
        if source.startswith("```", i):
            j = i + 3
            newline = source.find("\n", j)
            closing = source.find("```", j)
            mark = _OpenMark("pre", out.units, i)
            if newline != -1 and (closing == -1 or newline < closing):
                mark.language = source[j:newline].strip() or None
                j = newline + 1
            stack.append(mark)
            return j
        stack.append(_OpenMark("code", out.units, i))
        return i + 1
    raise _reserved(source, i)


def _read_v2_url(source: str, i: int) -> tuple[str | None, int]:
    if i >= len(source) or source[i] != "(":
        return None, i
    chars: list[str] = []
    j = i + 1
    while j < len(source):
        char = source[j]
        if char == "\\" and j + 1 < len(source) and 1 <= ord(source[j + 1]) <= 126:
            chars.append(source[j + 1])
            j += 2
            continue
        if char == ")":
            return "".join(chars), j + 1
        chars.append(char)
        j += 1
    raise parse_error(f"Can't find end of a url at byte offset {byte_offset(source, i)}")


def _close_mark(out: MarkupOutput, mark: _OpenMark) -> None:
    if mark.kind == "pre" and mark.language:
        out.entity("pre", mark.start, language=mark.language)
    else:
        out.entity(mark.kind, mark.start)


def parse_markdown(source: str, users: UserLookup) -> tuple[str, list[JsonDict]]:
    """Legacy Markdown: *bold* _italic_ `code` ```pre``` [text](url), no nesting."""
    out = MarkupOutput(users)
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "\\" and i + 1 < n and source[i + 1] in "_*`[":
            out.add(source[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        not_closed = parse_error(
            f"Can't find end of the entity starting at byte offset {byte_offset(source, i)}"
        )
        start = out.units
        if source.startswith("```", i):
            end = source.find("```", i + 3)
            if end == -1:
                raise not_closed
            body = source[i + 3 : end]
            language, _, rest = body.partition("\n")
            if rest and language.strip() and " " not in language.strip():
                body = rest
            out.add(body)
            if rest and language.strip() and " " not in language.strip():
                out.entity("pre", start, language=language.strip())
            else:
                out.entity("pre", start)
            i = end + 3
        elif char == "[":
            close = source.find("]", i + 1)
            if close == -1 or not source.startswith("(", close + 1):
                raise not_closed
            url_end = source.find(")", close + 2)
            if url_end == -1:
                raise not_closed
            out.add(source[i + 1 : close])
            out.link(start, source[close + 2 : url_end])
            i = url_end + 1
        else:
            end = source.find(char, i + 1)
            if end == -1:
                raise not_closed
            out.add(source[i + 1 : end])
            out.entity(kinds[char], start)
            i = end + 1
    return out.result()
