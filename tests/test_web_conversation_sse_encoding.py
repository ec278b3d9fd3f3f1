"""A text delta's fast framing says exactly what the general one says, for any text."""

from __future__ import annotations

import json

import pytest

from bot.service.answer_feed import FeedEntry
from bot.service.events import TextDelta
from bot.web.conversation_events import EventId, entry_event
from bot.web.sse import encode_entry, encode_event


@pytest.mark.parametrize(
    "text", ["plain", "黑洞", 'a "quote" and \\ backslash', "two\nlines\r\n", "\u2028\u2029\x00"]
)
def test_a_text_delta_is_framed_as_the_general_encoder_frames_it(text: str) -> None:
    entry = FeedEntry(7, 42, TextDelta(text))
    event = entry_event(3, entry)
    assert event is not None
    expected = encode_event(EventId(3, 7, 42), *event)
    encoded = encode_entry(3, entry)
    assert encoded == expected
    lines = encoded.decode().split("\n")
    assert lines[:2] == ["id: 3:7:42", "event: delta"]
    assert json.loads(lines[2].removeprefix("data: ")) == {"text": text}
    assert lines[3:] == ["", ""]
