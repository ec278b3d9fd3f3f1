"""Markdown answers rendered for Telegram: text plus entities, and the plain-text fallback.

Owns how a finished answer looks in Telegram. Markdown is parsed by telegramify-markdown into
plain text plus entities (offsets in UTF-16 code units), which are then corrected for what
Telegram accepts and for what a chat answer should look like:

- raw HTML in the answer is kept as text (the library would silently drop `<div>` or
  `a <b> c` and everything inside an HTML block);
- headings get no emoji prefix (they stay bold/underlined), bullets are "•", an open task
  is "☐" (the library's default is a *checked* box);
- links Telegram cannot open (relative, `javascript:`) keep their text but lose the link,
  custom emoji are dropped (bots may not send them), nested quotes are flattened, because
  Telegram rejects quotes inside quotes;
- the text is trimmed of the edge whitespace Telegram would strip, entities clipped to it;
- text with no markup comes back exactly as written (the library would collapse blank lines
  and eat leading spaces).

While an answer streams it is shown as plain text (`preview_text`): half-written Markdown
would make Telegram answer 400 "can't parse entities".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyromark
import telegramify_markdown
from telegram import MessageEntity
from telegramify_markdown.config import RenderConfig
from telegramify_markdown.converter import STANDARD_OPTIONS

from bot.telegram.textsplit import MIN_SPLIT_LIMIT, TELEGRAM_TEXT_LIMIT, split_text, utf16_len

__all__ = [
    "TELEGRAM_TEXT_LIMIT",
    "MessagePart",
    "Rendered",
    "plain_parts",
    "preview_text",
    "render_markdown",
    "render_message_parts",
    "render_parts",
]

logger = logging.getLogger(__name__)

# What Telegram strips from both ends of a message; stripping only these ourselves keeps the
# text we store and compare equal to the text the user sees.
_EDGE_WHITESPACE = " \t\n\r\f\v"
_LINK_SCHEMES = ("http://", "https://", "tg://", "ton://")
_KEPT_TYPES = frozenset(
    {
        MessageEntity.BOLD,
        MessageEntity.ITALIC,
        MessageEntity.UNDERLINE,
        MessageEntity.STRIKETHROUGH,
        MessageEntity.SPOILER,
        MessageEntity.CODE,
        MessageEntity.PRE,
        MessageEntity.TEXT_LINK,
        MessageEntity.BLOCKQUOTE,
        MessageEntity.EXPANDABLE_BLOCKQUOTE,
    }
)
_QUOTES = frozenset({MessageEntity.BLOCKQUOTE, MessageEntity.EXPANDABLE_BLOCKQUOTE})
# Escaping one tag can reveal another (an HTML block turns into a paragraph with inline tags);
# each pass removes at least one, and real answers need two or three.
_MAX_HTML_PASSES = 64


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message ready for Telegram: text and its entities (UTF-16 offsets)."""

    text: str
    entities: tuple[MessageEntity, ...]


@dataclass(frozen=True, slots=True)
class MessagePart:
    """One message of a long answer: formatted, and the same message as plain text.

    `plain` is what to send instead when Telegram rejects `rendered`'s entities; it covers
    exactly the same stretch of the answer, so falling back never loses or repeats text.
    """

    rendered: Rendered
    plain: str


def render_markdown(markdown: str) -> Rendered:
    """Telegram text and entities for `markdown`; the text as written when it has no markup."""
    try:
        text, raw_entities = telegramify_markdown.convert(
            _keep_raw_html(markdown), latex_escape=True, config=_render_config()
        )
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        # The answer must still reach the user; the caller's plain fallback is the same text.
        logger.warning("markdown rendering failed, sending plain text: %r", exc)
        return Rendered(_trim(markdown), ())
    entities = [
        converted for entity in raw_entities if (converted := _to_telegram(entity)) is not None
    ]
    rendered = _trimmed(text, _without_nested_quotes(entities))
    if not rendered.entities and (not rendered.text or _visible(text) == _visible(markdown)):
        # Nothing to format, or Markdown that shows nothing (only link definitions, say):
        # the answer as written is what the user should get.
        return Rendered(_trim(markdown), ())
    return rendered


def render_parts(markdown: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[Rendered]:
    """`markdown` split into messages of 1..`limit` UTF-16 units, each rendered.

    Rendering can lengthen a part (table padding, rules, list markers); such a part is split
    again more finely, and a part that cannot be made to fit is sent as its plain source.
    """
    return [part.rendered for part in render_message_parts(markdown, limit)]


def render_message_parts(markdown: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[MessagePart]:
    """Like `render_parts`, each message paired with its plain-text fallback (1..limit)."""
    parts: list[MessagePart] = []
    for part in split_text(markdown, limit):
        parts += _render_within(part, limit)
    return parts


def plain_parts(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """The plain-text fallback: `text` split as `split_text` does, edge whitespace trimmed."""
    return [_trim(part) for part in split_text(text, limit)]


def preview_text(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> str:
    """What to show while an answer streams: the part being written now, as plain text.

    Empty when there is nothing visible yet. Trimmed like Telegram trims, so comparing two
    previews tells whether an edit would change anything.
    """
    parts = split_text(text, limit)
    return _trim(parts[-1]) if parts else ""


def _render_within(part: str, limit: int) -> list[MessagePart]:
    rendered = render_markdown(part)
    plain = _trim(part)
    size = utf16_len(rendered.text)
    if size <= limit:
        return [MessagePart(rendered, plain)]
    source_size = utf16_len(part)
    smaller = min(source_size - 1, source_size * limit // size - limit // 16)
    pieces = split_text(part, smaller) if smaller >= MIN_SPLIT_LIMIT else []
    if len(pieces) < 2:
        return [MessagePart(Rendered(plain, ()), plain)]
    rendered_pieces: list[MessagePart] = []
    for piece in pieces:
        rendered_pieces += _render_within(piece, limit)
    return rendered_pieces


def _render_config() -> RenderConfig:
    config = RenderConfig.isolated()
    symbols = config.markdown_symbol
    symbols.heading_level_1 = ""
    symbols.heading_level_2 = ""
    symbols.heading_level_3 = ""
    symbols.heading_level_4 = ""
    symbols.unordered_list_item = "•"
    symbols.task_uncompleted = "☐"
    return config


def _keep_raw_html(markdown: str) -> str:
    """`markdown` with every `<` that would open raw HTML escaped, so it shows as text."""
    text = markdown
    for _ in range(_MAX_HTML_PASSES):
        offsets = _html_starts(text)
        if not offsets:
            return text
        source = text.encode()
        pieces: list[bytes] = []
        done = 0
        for offset in offsets:
            pieces += [source[done:offset], b"\\"]
            done = offset
        pieces.append(source[done:])
        text = b"".join(pieces).decode()
    return text


def _html_starts(text: str) -> list[int]:
    """UTF-8 byte offsets of the `<` opening each piece of raw HTML the parser sees."""
    source = text.encode()
    offsets: list[int] = []
    for event, span in pyromark.events_with_range(text, options=STANDARD_OPTIONS):
        if not isinstance(event, dict):
            continue
        if "InlineHtml" in event:
            offsets.append(span["start"])
        elif event.get("Start") == "HtmlBlock":
            opening = source.find(b"<", span["start"], span["end"])
            if opening >= 0:
                offsets.append(opening)
    return sorted(set(offsets))


def _to_telegram(entity: telegramify_markdown.MessageEntity) -> MessageEntity | None:
    kind: str = entity.type
    offset: int = entity.offset
    length: int = entity.length
    if kind not in _KEPT_TYPES:
        return None
    if kind == MessageEntity.TEXT_LINK:
        url: str = entity.url or ""
        if not url.lower().startswith(_LINK_SCHEMES):
            return None
        return MessageEntity(kind, offset, length, url=url)
    if kind == MessageEntity.PRE:
        return MessageEntity(kind, offset, length, language=entity.language or None)
    return MessageEntity(kind, offset, length)


def _without_nested_quotes(entities: list[MessageEntity]) -> list[MessageEntity]:
    ordered = sorted(entities, key=lambda entity: (entity.offset, -entity.length))
    kept: list[MessageEntity] = []
    quote_end = -1
    for entity in ordered:
        if entity.type in _QUOTES:
            if entity.offset < quote_end:
                continue
            quote_end = entity.offset + entity.length
        kept.append(entity)
    return kept


def _trimmed(text: str, entities: list[MessageEntity]) -> Rendered:
    """`text` without edge whitespace, entities moved and clipped to what remains."""
    body = text.strip(_EDGE_WHITESPACE)
    if not body:
        return Rendered("", ())
    shift = utf16_len(text[: len(text) - len(text.lstrip(_EDGE_WHITESPACE))])
    end = utf16_len(body)
    clipped: list[MessageEntity] = []
    for entity in entities:
        start = max(entity.offset - shift, 0)
        stop = min(entity.offset + entity.length - shift, end)
        if stop <= start:
            continue
        clipped.append(
            MessageEntity(
                entity.type,
                start,
                stop - start,
                url=entity.url,
                language=entity.language,
            )
        )
    return Rendered(body, tuple(clipped))


def _trim(text: str) -> str:
    return text.strip(_EDGE_WHITESPACE)


def _visible(text: str) -> str:
    return "".join(text.split())
