"""The frames the Spark simulator sends, serialised exactly as spark-protocol.md §4.1 shows them.

Text frames sit on the hot path of load benchmarks (a thousand streams of hundreds of frames),
so they are built from a string template with only the delta text JSON-encoded; the rarer
frames (last, error, plugins, function call) go through ``json.dumps`` for clarity.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import count
from typing import Any

from bot.spark.types import Usage

# Class names seen in real error messages (§4.1), plus plausible ones for the other codes.
ERROR_CLASSES: dict[int, str] = {
    10003: "ClientMsgError",
    10004: "SchemaCheckError",
    10005: "ParamValueError",
    10007: "UserFlowLimitError",
    10012: "EngineInternalError",
    10013: "InputAuditError",
    10014: "OutputAuditError",
    10019: "ConversationAuditError",
    10110: "ServiceBusyError",
    10907: "TokenLimitError",
    11200: "AppIdNoAuthError",
    11201: "AppIdDailyLimitError",
    11202: "AppIdQpsOverflowError",
    11203: "AppIdConcurrencyOverflowError",
}

ERROR_DETAILS: dict[int, str] = {
    10013: "the input contains sensitive content, please rephrase",
    10014: "the output contains sensitive content, the rest of the answer is withheld",
    10019: "the conversation tends towards sensitive content",
    10110: "service busy, please try again later",
    11200: "tokens.total",
    11201: "daily quota exceeded",
    11202: "qps over licensed limit",
    11203: "concurrency over licensed limit",
}

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class SidFactory:
    """Session ids shaped like ``cht000b806d@dx190d9c418f5b808560``, unique per connection."""

    def __init__(self, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self._counter = count(rng.getrandbits(24))
        self._tail = rng.getrandbits(28)

    def __call__(self) -> str:
        millis = time.time_ns() // 1_000_000
        return f"cht{next(self._counter) & 0xFFFFFFFF:08x}@dx{millis:011x}{self._tail:07x}"


def error_message(code: int, detail: str | None, moment: datetime) -> str:
    """``<Class>:(HH:MM:SS.mmm) detail``, the form real error frames carry (§4.1)."""
    name = ERROR_CLASSES.get(code, "EngineError")
    text = detail or ERROR_DETAILS.get(code, f"error {code}")
    return f"{name}:({moment:%H:%M:%S}.{moment.microsecond // 1000:03d}) {text}"


def error_frame(code: int, message: str, sid: str) -> str:
    """Header only, no payload, status 2."""
    header = {"code": code, "message": message, "sid": sid, "status": 2}
    return _encode({"header": header})


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "text": {
            "question_tokens": usage.question_tokens,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    }


def plugins_frame(sid: str, sources: list[dict[str, Any]]) -> str:
    """The search-sources frame: header.status 1 and no ``choices`` (§4.1)."""
    plugin = {
        "name": "ifly_search",
        "content": _encode(sources),
        "content_type": "text",
        "content_meta": None,
        "role": "tool",
        "status": "finished",
        "invoked": {
            "namespace": "ifly_search",
            "plugin_id": "ifly_search",
            "plugin_ver": "",
            "status_code": 200,
            "status_msg": "Success",
            "type": "local",
        },
    }
    return _encode(
        {
            "header": {"code": 0, "message": "Success", "sid": sid, "status": 1},
            "payload": {"plugins": {"text": [plugin]}},
        }
    )


def function_call_frame(sid: str, name: str, arguments: str, usage: Usage) -> str:
    """Exactly one status-2 frame with empty content and string ``arguments`` (§4.1)."""
    item = {
        "content": "",
        "role": "assistant",
        "content_type": "text",
        "function_call": {"arguments": arguments, "name": name},
        "index": 0,
    }
    return _encode(
        {
            "header": {"code": 0, "message": "Success", "sid": sid, "status": 2},
            "payload": {
                "choices": {"status": 2, "seq": 0, "text": [item]},
                "usage": usage_object(usage),
            },
        }
    )


def text_frames(
    sid: str, answer: str, reasoning: str, chars_per_frame: int, usage: Usage
) -> Iterator[tuple[str, int]]:
    """Yield ``(frame, answer characters in it)``: reasoning frames first, usage on the last.

    There is always at least one answer frame, so the last frame (status 2) carries usage even
    when the answer is empty.
    """
    size = max(1, chars_per_frame)
    pieces: list[tuple[bool, int]] = [(True, i) for i in range(0, len(reasoning), size)]
    pieces += [(False, i) for i in range(0, len(answer), size)] or [(False, 0)]
    last = len(pieces) - 1
    head = '{"header":{"code":0,"message":"Success","sid":"' + sid + '","status":'
    for seq, (is_reasoning, start) in enumerate(pieces):
        status = 2 if seq == last else (0 if seq == 0 else 1)
        if is_reasoning:
            piece = reasoning[start : start + size]
            item = '{"content":"","reasoning_content":' + _encode(piece)
            chars = 0
        else:
            piece = answer[start : start + size]
            item = '{"content":' + _encode(piece)
            chars = len(piece)
        tail = ',"usage":' + _encode(usage_object(usage)) if status == 2 else ""
        yield (
            (
                f'{head}{status}}},"payload":{{"choices":{{"status":{status},"seq":{seq},'
                f'"text":[{item},"role":"assistant","index":0}}]}}{tail}}}}}'
            ),
            chars,
        )
