"""Telegram's HTML parse mode turned into text + entities, and the output both parsers share.

The parser follows the Bot API's "Formatting options" rules and Telegram's error wording
("Unsupported start tag "br" at byte offset N", offsets in UTF-8 bytes of the source) so that
formatting bugs surface in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.support.fake_telegram_entities import UserLookup, utf16_len
from tests.support.fake_telegram_errors import BotApiError, JsonDict

_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")
_HTML_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
}
_HTML_TAGS = frozenset(
    {*_HTML_SIMPLE, "span", "a", "code", "pre", "blockquote", "tg-emoji", "tg-time"}
)
_MENTION_URL = re.compile(r"^tg://user\?id=([0-9]{1,20})$")
_EMOJI_URL = re.compile(r"^tg://emoji\?id=([0-9]{1,20})$")


def byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8"))


def parse_error(detail: str) -> BotApiError:
    return BotApiError.cant_parse_entities(detail)


@dataclass
class MarkupOutput:
    """Text being produced, with its length in UTF-16 units for entity offsets."""

    users: UserLookup
    parts: list[str] = field(default_factory=list)
    units: int = 0
    entities: list[JsonDict] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.units += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: object) -> None:
        if self.units > start:
            self.entities.append({"type": kind, "offset": start, "length": self.units - start})
            self.entities[-1].update(extra)

    def link(self, start: int, url: str) -> None:
        url = url.strip()
        if mention := _MENTION_URL.match(url):
            user_id = int(mention.group(1))
            user = self.users(user_id) or {"id": user_id, "is_bot": False, "first_name": ""}
            self.entity("text_mention", start, user=user)
        elif emoji := _EMOJI_URL.match(url):
            self.entity("custom_emoji", start, custom_emoji_id=emoji.group(1))
        elif "://" in url or "." in url:
            self.entity("text_link", start, url=url)

    def result(self) -> tuple[str, list[JsonDict]]:
        return "".join(self.parts), self.entities


@dataclass
class _OpenTag:
    name: str
    start: int
    attrs: dict[str, str]
    language: str | None = None


def _read_attributes(source: str, i: int, tag: str, tag_at: int) -> tuple[dict[str, str], int]:
    """Attributes of a start tag beginning at `i`; returns them and the index after '>'."""
    attrs: dict[str, str] = {}
    n = len(source)
    while True:
        while i < n and source[i].isspace():
            i += 1
        if i >= n:
            raise parse_error(f"Unclosed start tag at byte offset {byte_offset(source, tag_at)}")
        if source[i] == ">":
            return attrs, i + 1
        match = re.compile(r"[a-zA-Z0-9_-]+").match(source, i)
        if match is None:
            raise parse_error(
                f'Empty attribute name in the tag "{tag}" at byte offset {byte_offset(source, i)}'
            )
        name = match.group(0).lower()
        i = match.end()
        while i < n and source[i].isspace():
            i += 1
        if i < n and source[i] != "=":
            attrs[name] = ""
            continue
        i += 1
        while i < n and source[i].isspace():
            i += 1
        if i < n and source[i] in "\"'":
            end = source.find(source[i], i + 1)
            if end == -1:
                raise parse_error(
                    f'Unclosed end of an attribute value of the tag "{tag}" at byte offset '
                    f"{byte_offset(source, i)}"
                )
            attrs[name] = _decode_html_text(source[i + 1 : end])
            i = end + 1
        else:
            value = re.compile(r"[^\s>]*").match(source, i)
            assert value is not None
            attrs[name] = _decode_html_text(value.group(0))
            i = value.end()


def _decode_html_text(raw: str) -> str:
    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body.startswith("#x"):
            return chr(int(body[2:], 16))
        if body.startswith("#"):
            return chr(int(body[1:]))
        return _HTML_NAMED.get(body, match.group(0))

    return _HTML_ENTITY.sub(replace, raw)


def parse_html(source: str, users: UserLookup) -> tuple[str, list[JsonDict]]:
    out = MarkupOutput(users)
    stack: list[_OpenTag] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "&":
            match = _HTML_ENTITY.match(source, i)
            out.add(_decode_html_text(match.group(0)) if match else "&")
            i = match.end() if match else i + 1
        elif char != "<":
            nxt = source.find("<", i)
            nxt = n if nxt == -1 else nxt
            amp = source.find("&", i, nxt)
            stop = nxt if amp == -1 else amp
            out.add(source[i:stop])
            i = stop
        elif source.startswith("</", i):
            end = source.find(">", i)
            if end == -1:
                raise parse_error(f"Unclosed end tag at byte offset {byte_offset(source, i)}")
            name = source[i + 2 : end].strip().lower()
            if not stack:
                raise parse_error(f"Unexpected end tag at byte offset {byte_offset(source, i)}")
            top = stack.pop()
            if name != top.name:
                raise parse_error(
                    f"Unmatched end tag at byte offset {byte_offset(source, i)}, expected "
                    f'"</{top.name}>", found "</{name}>"'
                )
            _close_html(out, top, stack)
            i = end + 1
        else:
            match = re.compile(r"[a-zA-Z0-9-]*").match(source, i + 1)
            assert match is not None
            name = match.group(0).lower()
            if name not in _HTML_TAGS:
                raise parse_error(
                    f'Unsupported start tag "{name}" at byte offset {byte_offset(source, i)}'
                )
            attrs, after = _read_attributes(source, match.end(), name, i)
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise parse_error(
                    f'Tag "span" must have class "tg-spoiler" at byte offset '
                    f"{byte_offset(source, i)}"
                )
            stack.append(_OpenTag(name, out.units, attrs))
            i = after
    if stack:
        raise parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return out.result()


def _close_html(out: MarkupOutput, tag: _OpenTag, stack: list[_OpenTag]) -> None:
    if tag.name in _HTML_SIMPLE or tag.name == "span":
        out.entity(_HTML_SIMPLE.get(tag.name, "spoiler"), tag.start)
    elif tag.name == "a":
        out.link(tag.start, tag.attrs.get("href", ""))
    elif tag.name == "code":
        language = tag.attrs.get("class", "")
        parent = stack[-1] if stack else None
        if parent is not None and parent.name == "pre" and parent.start == tag.start:
            # <pre><code class="language-x"> is one pre entity carrying the language.
            if language.startswith("language-"):
                parent.language = language.removeprefix("language-")
        else:
            out.entity("code", tag.start)
    elif tag.name == "pre":
        if tag.language:
            out.entity("pre", tag.start, language=tag.language)
        else:
            out.entity("pre", tag.start)
    elif tag.name == "blockquote":
        expandable = "expandable" in tag.attrs
        out.entity("expandable_blockquote" if expandable else "blockquote", tag.start)
    elif tag.name == "tg-emoji":
        emoji_id = tag.attrs.get("emoji-id", "")
        if emoji_id:
            out.entity("custom_emoji", tag.start, custom_emoji_id=emoji_id)
    elif tag.name == "tg-time" and tag.attrs.get("unix", "").isdigit():
        out.entity("date_time", tag.start, unix_time=int(tag.attrs["unix"]))
