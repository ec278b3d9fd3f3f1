"""Token estimates for Spark prompts, and their per-chat calibration against Spark's counts.

Spark publishes no tokenizer, only a rule of thumb (spark-protocol.md §3.4): one token is about
1.5 Chinese characters or 0.8 English words. :func:`estimate_text_tokens` applies it with
rounding up, counts digits, symbols and other scripts generously, and
:func:`estimate_messages_tokens` adds a per-message overhead for the role framing Spark counts.

That raw estimate is then scaled by a per-chat *ratio*, learnt from the ``prompt_tokens`` each
answer reports (:func:`update_ratio`: exponential smoothing, faster upwards than downwards,
clamped), and by :data:`SAFETY_MARGIN`, so that the figure compared with the model's budget
converges on Spark's real count from above rather than below: underestimating earns a 10907
error, overestimating only drops an old turn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from bot.spark.types import ChatMessage

CJK_CHARS_PER_TOKEN = 1.5
WORDS_PER_TOKEN = 0.8
# A long word is split into several tokens; count at least one per this many letters.
LETTERS_PER_TOKEN = 4.0
DIGITS_PER_TOKEN = 3.0
# Role framing around each message, and the frame around the whole prompt.
MESSAGE_OVERHEAD_TOKENS = 4
PROMPT_OVERHEAD_TOKENS = 3

DEFAULT_RATIO = 1.0
MIN_RATIO = 0.5
MAX_RATIO = 4.0
# Under-estimates are corrected quickly, over-estimates slowly: the conservative side wins.
SMOOTHING_UP = 0.5
SMOOTHING_DOWN = 0.2
SAFETY_MARGIN = 1.1

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_LETTERS = "A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff'"
_CJK_CHAR = re.compile(f"[{_CJK}]")
# Short words cost the rule-of-thumb 1.25 tokens; longer ones a token per 4 letters.
_WORD = re.compile(f"[{_LETTERS}]+")
_LONG_WORD = re.compile(f"[{_LETTERS}]{{{int(LETTERS_PER_TOKEN / WORDS_PER_TOKEN) + 1},}}")
_NUMBER = re.compile(r"[0-9]+")
_OTHER = re.compile(f"[^\\s0-9{_CJK}{_LETTERS}]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def estimate_text_tokens(text: str) -> int:
    """A conservative token count for ``text`` alone (no message overhead), rounded up.

    Counted with a few whole-string regex passes (C speed) rather than a Python loop over
    pieces: history of dozens of messages is estimated on every turn.
    """
    if not text:
        return 0
    total = len(_CJK_CHAR.findall(text)) / CJK_CHARS_PER_TOKEN
    total += len(_WORD.findall(text)) / WORDS_PER_TOKEN
    for word in _LONG_WORD.findall(text):
        total += len(word) / LETTERS_PER_TOKEN - 1.0 / WORDS_PER_TOKEN
    total += sum(math.ceil(len(run) / DIGITS_PER_TOKEN) for run in _NUMBER.findall(text))
    # Punctuation, emoji, other scripts: one token each, two outside the BMP.
    total += len(_OTHER.findall(text)) + len(_ASTRAL.findall(text))
    return math.ceil(total)


def estimate_message_tokens(message: ChatMessage) -> int:
    return MESSAGE_OVERHEAD_TOKENS + estimate_text_tokens(message.content)


def estimate_messages_tokens(messages: Iterable[ChatMessage]) -> int:
    """The raw (uncalibrated) estimate of a whole prompt."""
    return PROMPT_OVERHEAD_TOKENS + sum(estimate_message_tokens(m) for m in messages)


def clamp_ratio(ratio: float) -> float:
    if math.isnan(ratio):
        return DEFAULT_RATIO
    return min(MAX_RATIO, max(MIN_RATIO, ratio))


def calibrated_tokens(raw_tokens: int, ratio: float) -> int:
    """What a raw estimate is taken to cost, for budget checks: ratio and margin applied."""
    return math.ceil(raw_tokens * clamp_ratio(ratio) * SAFETY_MARGIN)


def update_ratio(current: float, raw_estimate: int, reported_prompt_tokens: int) -> float:
    """The chat's next ratio after Spark reported ``reported_prompt_tokens`` for a prompt we
    estimated at ``raw_estimate`` (raw, uncalibrated). Meaningless reports leave it unchanged."""
    current = clamp_ratio(current)
    if raw_estimate <= 0 or reported_prompt_tokens <= 0:
        return current
    sample = clamp_ratio(reported_prompt_tokens / raw_estimate)
    weight = SMOOTHING_UP if sample > current else SMOOTHING_DOWN
    return clamp_ratio(current + weight * (sample - current))
