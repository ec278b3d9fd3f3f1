"""parse_frame and build_request on the reference's sample frames (spark-protocol.md §3, §4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.spark.errors import SparkProtocolError
from bot.spark.models import get_model
from bot.spark.protocol import STATUS_LAST, build_request, parse_frame
from bot.spark.types import (
    ChatMessage,
    FunctionCall,
    FunctionSpec,
    GenerationOptions,
    SearchSource,
    Usage,
    WebSearch,
)

SID = "cht000cb087@dx18793cd421fb894542"

STREAM = [
    '{"header":{"code":0,"message":"Success","sid":"@SID@","status":0},'
    '"payload":{"choices":{"status":0,"seq":0,"text":[{"content":"Yes","role":"assistant",'
    '"index":0}]}}}'.replace("@SID@", SID),
    '{"header":{"code":0,"message":"Success","sid":"@SID@","status":1},'
    '"payload":{"choices":{"status":1,"seq":1,"text":[{"content":", indeed","role":"assistant",'
    '"index":0}]}}}'.replace("@SID@", SID),
    '{"header":{"code":0,"message":"Success","sid":"@SID@","status":2},'
    '"payload":{"choices":{"status":2,"seq":2,"text":[{"content":".","role":"assistant",'
    '"index":0}]},"usage":{"text":{"question_tokens":4,"prompt_tokens":5,'
    '"completion_tokens":9,"total_tokens":14}}}}'.replace("@SID@", SID),
]

FUNCTION_CALL = (
    '{"header":{"code":0,"message":"Success","sid":"cht000b41d5@dx18b851e6931b894550",'
    '"status":2},"payload":{"choices":{"status":2,"seq":0,"text":[{"content":"",'
    '"role":"assistant","content_type":"text","function_call":{"arguments":'
    '"{\\"datetime\\":\\"今天\\",\\"location\\":\\"合肥\\"}","name":"天气查询"},"index":0}]},'
    '"usage":{"text":{"question_tokens":3,"prompt_tokens":3,"completion_tokens":0,'
    '"total_tokens":3}}}}'
)

SOURCES_CONTENT = json.dumps(
    [
        {"index": 1, "url": "https://example.com/a", "title": "合肥天气"},
        {"index": 2, "url": "https://example.com/b", "title": "Weather"},
    ],
    ensure_ascii=False,
)
SEARCH = json.dumps(
    {
        "header": {
            "code": 0,
            "message": "Success",
            "sid": "cht000b79a4@dx190da456b5db80a560",
            "status": 1,
        },
        "payload": {
            "plugins": {
                "text": [
                    {
                        "name": "ifly_search",
                        "content": SOURCES_CONTENT,
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
                ]
            }
        },
    },
    ensure_ascii=False,
)

ERROR = (
    '{"header":{"code":11200,"message":"AppIdNoAuthError:(17:27:05.718) tokens.total",'
    '"sid":"cht000b806d@dx190d9c418f5b808560","status":2}}'
)


def test_stream_frames_concatenate_to_the_answer_with_usage_only_last() -> None:
    frames = [parse_frame(raw) for raw in STREAM]
    assert "".join(frame.content for frame in frames) == "Yes, indeed."
    assert [frame.status for frame in frames] == [0, 1, 2]
    assert [frame.seq for frame in frames] == [0, 1, 2]
    assert {frame.sid for frame in frames} == {SID}
    assert [frame.usage for frame in frames[:2]] == [None, None]
    assert frames[2].usage == Usage(
        prompt_tokens=5, completion_tokens=9, total_tokens=14, question_tokens=4
    )
    assert frames[2].is_last
    assert not frames[0].is_last
    assert not any(frame.is_error for frame in frames)


def test_bytes_frames_parse_like_text() -> None:
    assert parse_frame(STREAM[1].encode()) == parse_frame(STREAM[1])


def test_function_call_frame() -> None:
    frame = parse_frame(FUNCTION_CALL)
    assert frame.is_last
    assert frame.content == ""
    assert frame.function_call == FunctionCall(
        name="天气查询", arguments='{"datetime":"今天","location":"合肥"}'
    )
    assert json.loads(frame.function_call.arguments) == {"datetime": "今天", "location": "合肥"}
    assert frame.usage is not None
    assert frame.usage.total_tokens == 3


def test_function_call_arguments_sent_as_an_object_stay_a_string() -> None:
    raw = FUNCTION_CALL.replace(
        '"arguments":"{\\"datetime\\":\\"今天\\",\\"location\\":\\"合肥\\"}"',
        '"arguments":{"location":"合肥"}',
    )
    frame = parse_frame(raw)
    assert frame.function_call is not None
    assert json.loads(frame.function_call.arguments) == {"location": "合肥"}


def test_search_sources_frame_has_no_choices() -> None:
    frame = parse_frame(SEARCH)
    assert frame.status == 1
    assert frame.content == ""
    assert frame.sources == (
        SearchSource(index=1, url="https://example.com/a", title="合肥天气"),
        SearchSource(index=2, url="https://example.com/b", title="Weather"),
    )


def test_error_frame_is_header_only() -> None:
    frame = parse_frame(ERROR)
    assert frame.is_error
    assert frame.is_last
    assert frame.code == 11200
    assert frame.message == "AppIdNoAuthError:(17:27:05.718) tokens.total"
    assert frame.sid == "cht000b806d@dx190d9c418f5b808560"
    assert frame.status == STATUS_LAST


def test_reasoning_content_is_separate_from_the_answer() -> None:
    raw = json.dumps(
        {
            "header": {"code": 0, "message": "Success", "sid": "cht1", "status": 1},
            "payload": {
                "choices": {
                    "status": 1,
                    "seq": 3,
                    "text": [
                        {
                            "content": "",
                            "reasoning_content": "Let me think",
                            "role": "assistant",
                            "index": 0,
                        }
                    ],
                }
            },
        }
    )
    frame = parse_frame(raw)
    assert frame.reasoning == "Let me think"
    assert frame.content == ""


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        "{}",
        '{"header": "x"}',
        '{"header": {"message": "no code"}}',
        '{"header": {"code": "0", "status": 1}}',
        '{"header": {"code": 0, "status": "1"}}',
        '{"header": {"code": 0, "status": 1}, "payload": []}',
        '{"header": {"code": 0, "status": 1}, "payload": {"choices": {"text": [1]}}}',
        '{"header": {"code": 0, "status": 1}, "payload": {"choices": {"status": "2"}}}',
        '{"header": {"code": 0, "status": 1}, "payload": {"plugins": {"text": '
        '[{"content": "not json"}]}}}',
        '{"header": {"code": 0, "status": 2}, "payload": {"usage": {"text": '
        '{"total_tokens": "many"}}}}',
    ],
)
def test_malformed_frames_raise_protocol_errors(raw: str) -> None:
    with pytest.raises(SparkProtocolError, match="malformed Spark frame"):
        parse_frame(raw)


def test_malformed_frame_error_quotes_a_bounded_preview() -> None:
    with pytest.raises(SparkProtocolError) as caught:
        parse_frame("x" * 10_000)
    assert len(str(caught.value)) < 400


MESSAGES = (
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "hi"),
    ChatMessage("assistant", "Hello!"),
    ChatMessage("user", "what can you do?"),
)
WEATHER = FunctionSpec(
    name="weather",
    description="Query weather",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string", "description": "city"}},
        "required": ["location"],
    },
)


def test_build_request_matches_the_reference_example() -> None:
    request = build_request(
        get_model("max"),
        app_id="12345",
        uid="12345",
        messages=MESSAGES,
        options=GenerationOptions(
            temperature=0.5, max_tokens=1024, top_k=4, web_search=WebSearch(), functions=(WEATHER,)
        ),
    )
    expected: dict[str, Any] = {
        "header": {"app_id": "12345", "uid": "12345"},
        "parameter": {
            "chat": {
                "domain": "generalv3.5",
                "temperature": 0.5,
                "max_tokens": 1024,
                "top_k": 4,
                "tools": [
                    {
                        "type": "web_search",
                        "web_search": {
                            "enable": True,
                            "show_ref_label": False,
                            "search_mode": "normal",
                        },
                    }
                ],
            }
        },
        "payload": {
            "message": {"text": [{"role": m.role, "content": m.content} for m in MESSAGES]},
            "functions": {
                "text": [
                    {
                        "name": "weather",
                        "description": "Query weather",
                        "parameters": WEATHER.parameters,
                    }
                ]
            },
        },
    }
    assert request == expected
    assert json.loads(json.dumps(request, ensure_ascii=False)) == expected


def test_build_request_fills_model_defaults() -> None:
    lite = get_model("lite")
    request = build_request(
        lite,
        app_id="a",
        uid="u",
        messages=[ChatMessage("user", "hi")],
        options=GenerationOptions(),
    )
    chat = request["parameter"]["chat"]
    assert chat == {
        "domain": "lite",
        "temperature": lite.default_temperature,
        "max_tokens": lite.default_max_tokens,
    }


def test_build_request_drops_tools_the_model_lacks() -> None:
    request = build_request(
        get_model("lite"),
        app_id="a",
        uid="u",
        messages=[ChatMessage("user", "hi")],
        options=GenerationOptions(web_search=WebSearch(), functions=(WEATHER,), top_p=0.5),
    )
    assert "tools" not in request["parameter"]["chat"]
    assert "top_p" not in request["parameter"]["chat"]
    assert "functions" not in request["payload"]


def test_build_request_sends_x1_sampling_knobs_only_to_x1() -> None:
    options = GenerationOptions(top_p=0.9, presence_penalty=0.5, frequency_penalty=0.1)
    x1 = build_request(
        get_model("x1"), app_id="a", uid="u", messages=[ChatMessage("user", "q")], options=options
    )["parameter"]["chat"]
    assert (x1["top_p"], x1["presence_penalty"], x1["frequency_penalty"]) == (0.9, 0.5, 0.1)
    assert x1["domain"] == "x1"
    assert x1["temperature"] == 1.2
    pro = build_request(
        get_model("pro"), app_id="a", uid="u", messages=[ChatMessage("user", "q")], options=options
    )["parameter"]["chat"]
    assert not {"top_p", "presence_penalty", "frequency_penalty"} & pro.keys()
