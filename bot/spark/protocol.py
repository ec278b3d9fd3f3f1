"""Spark's wire format: the request JSON we send and the frames we receive (§3, §4).

Frames are parsed exactly once, here, into :class:`Frame`; nothing else in the bot touches raw
JSON. Parsing is hand-written over ``json.loads`` because it sits on the hot path of every
streamed token (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from bot.spark.errors import SparkProtocolError
from bot.spark.models import SparkModel
from bot.spark.types import (
    ChatMessage,
    FunctionCall,
    GenerationOptions,
    SearchSource,
    Usage,
)

STATUS_FIRST = 0
STATUS_CONTINUE = 1
STATUS_LAST = 2

UID_MAX_LENGTH = 32


def build_request(
    model: SparkModel,
    *,
    app_id: str,
    uid: str,
    messages: Sequence[ChatMessage],
    options: GenerationOptions,
) -> dict[str, Any]:
    """The request object for one chat turn, with the model's defaults filled in."""
    chat: dict[str, Any] = {
        "domain": model.domain,
        "temperature": (
            options.temperature if options.temperature is not None else model.default_temperature
        ),
        "max_tokens": (
            options.max_tokens if options.max_tokens is not None else model.default_max_tokens
        ),
    }
    if options.top_k is not None:
        chat["top_k"] = options.top_k
    if options.chat_id is not None:
        chat["chat_id"] = options.chat_id
    if model.reasoning:
        for key in ("top_p", "presence_penalty", "frequency_penalty"):
            value = getattr(options, key)
            if value is not None:
                chat[key] = value
    if options.web_search is not None and model.supports_web_search:
        chat["tools"] = [
            {
                "type": "web_search",
                "web_search": {
                    "enable": options.web_search.enable,
                    "show_ref_label": options.web_search.show_ref_label,
                    "search_mode": options.web_search.search_mode,
                },
            }
        ]
    payload: dict[str, Any] = {
        "message": {"text": [{"role": m.role, "content": m.content} for m in messages]}
    }
    if options.functions and model.supports_functions:
        payload["functions"] = {
            "text": [
                {"name": f.name, "description": f.description, "parameters": f.parameters}
                for f in options.functions
            ]
        }
    return {
        "header": {"app_id": app_id, "uid": uid},
        "parameter": {"chat": chat},
        "payload": payload,
    }


class Frame(NamedTuple):
    """One server frame, reduced to what the client acts on.

    A named tuple rather than a frozen dataclass: it is built once per streamed frame, and a
    frozen dataclass's ``__init__`` costs several times more (see benchmarks/RESULTS.md).
    """

    code: int
    message: str
    sid: str
    status: int
    seq: int | None = None
    content: str = ""
    reasoning: str = ""
    function_call: FunctionCall | None = None
    sources: tuple[SearchSource, ...] = ()
    usage: Usage | None = None

    @property
    def is_error(self) -> bool:
        return self.code != 0

    @property
    def is_last(self) -> bool:
        return self.status == STATUS_LAST


def _fail(detail: str, raw: str | bytes) -> SparkProtocolError:
    preview = raw[:200] if isinstance(raw, str) else raw[:200].decode(errors="replace")
    return SparkProtocolError(f"malformed Spark frame: {detail}: {preview!r}")


def parse_frame(raw: str | bytes) -> Frame:
    """Parse one text frame; raises :class:`SparkProtocolError` when it is not Spark's shape."""
    try:
        data = json.loads(raw)
        header = data["header"]
        code = header["code"]
        sid = header.get("sid", "")
        status = header.get("status", STATUS_LAST if code else STATUS_CONTINUE)
        message = header.get("message", "")
    except (ValueError, TypeError, KeyError) as exc:
        raise _fail("no header", raw) from exc
    if not isinstance(code, int) or not isinstance(status, int):
        raise _fail("header code/status are not integers", raw)
    if code != 0:
        return Frame(code=code, message=str(message), sid=str(sid), status=STATUS_LAST)
    payload = data.get("payload")
    if payload is None:
        return Frame(code=0, message=str(message), sid=str(sid), status=status)
    try:
        return _parse_payload(payload, str(message), str(sid), status)
    except (TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
        raise _fail("unexpected payload", raw) from exc


def _parse_payload(payload: dict[str, Any], message: str, sid: str, status: int) -> Frame:
    content = ""
    reasoning = ""
    function_call: FunctionCall | None = None
    seq: int | None = None
    choices = payload.get("choices")
    if choices is not None:
        status = choices.get("status", status)
        seq = choices.get("seq")
        if not isinstance(status, int) or not (seq is None or isinstance(seq, int)):
            raise ValueError("choices status/seq are not integers")
        for item in choices.get("text") or ():
            content += item.get("content") or ""
            reasoning += item.get("reasoning_content") or ""
            call = item.get("function_call")
            if call:
                arguments = call.get("arguments", "")
                # Spark documents a JSON *string*; keep the type promise if an object arrives.
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments, ensure_ascii=False)
                function_call = FunctionCall(name=str(call["name"]), arguments=arguments)
    sources: tuple[SearchSource, ...] = ()
    plugins = payload.get("plugins")
    if plugins is not None:
        sources = _parse_sources(plugins.get("text") or ())
    usage = None
    usage_text = (payload.get("usage") or {}).get("text")
    if usage_text is not None:
        usage = Usage(
            prompt_tokens=int(usage_text.get("prompt_tokens", 0)),
            completion_tokens=int(usage_text.get("completion_tokens", 0)),
            total_tokens=int(usage_text.get("total_tokens", 0)),
            question_tokens=int(usage_text.get("question_tokens", 0)),
        )
    return Frame(
        code=0,
        message=message,
        sid=sid,
        status=status,
        seq=seq,
        content=content,
        reasoning=reasoning,
        function_call=function_call,
        sources=sources,
        usage=usage,
    )


def _parse_sources(items: Sequence[dict[str, Any]]) -> tuple[SearchSource, ...]:
    sources: list[SearchSource] = []
    for item in items:
        raw = item.get("content")
        if not raw:
            continue
        for entry in json.loads(raw):
            sources.append(
                SearchSource(
                    index=int(entry.get("index", len(sources) + 1)),
                    url=str(entry.get("url", "")),
                    title=str(entry.get("title", "")),
                )
            )
    return tuple(sources)
