"""The OpenAI-compatible API end to end: the official ``openai`` SDK over real HTTP, the
gateway (``python -m bot web``'s runtime), the Spark simulator over a real socket, SQLite.

Each test asserts what the client sees (text, usage, tool calls, the SDK's exception types)
and what was stored (the ledger row of every request that reached Spark).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from bot.spark.simulator import SimulatorOptions
from storage.database import create_database
from storage.dto import LEDGER_CLIENT_GONE, LEDGER_UNDELIVERED
from tests.support import db_rows
from tests.support.gateway import RunningGateway, start_gateway

GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    async with contextlib.AsyncExitStack() as resources:

        async def make(**groups: Any) -> RunningGateway:
            return await start_gateway(tmp_path, resources, **groups)

        yield make


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    return await make_gateway()


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city today",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city"}},
            "required": ["city"],
        },
    },
}


async def test_a_completion_is_the_simulated_answer_with_its_usage_and_ledger_row(
    gateway: RunningGateway,
) -> None:
    key = await gateway.create_key("app")
    raw = await gateway.client(key).chat.completions.with_raw_response.create(
        model="MAX", messages=[{"role": "user", "content": "Hello there"}]
    )
    completion = raw.parse()
    sid = raw.headers["x-spark-sid"]
    record = gateway.spark.request_for_sid(sid)
    assert completion.object == "chat.completion"
    assert completion.model == "max"
    assert completion.choices[0].message.content == record.answer_text
    assert completion.choices[0].finish_reason == "stop"
    assert record.usage is not None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == record.usage.prompt_tokens
    assert completion.usage.completion_tokens == record.usage.completion_tokens
    assert completion.usage.total_tokens == record.usage.total_tokens
    [row] = await gateway.wait_ledger(1)
    assert (row.user_id, row.model, row.sid) == (await gateway.key_user("app"), "max", sid)
    assert row.total_tokens == record.usage.total_tokens
    assert row.error_code is None
    assert row.chat_id is None


async def test_a_stream_has_one_id_the_role_first_the_deltas_a_finish_and_usage(
    gateway: RunningGateway,
) -> None:
    key = await gateway.create_key("app")
    stream = await gateway.client(key).chat.completions.create(
        model="generalv3.5",  # Spark's own domain name for Max
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Tell me [[long:300]]"}]},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    [record] = gateway.spark.requests
    assert text == record.answer_text
    assert len(text) == 300
    assert [m["role"] for m in record.request["payload"]["message"]["text"]] == [  # type: ignore[index]
        "system",
        "user",
    ]
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == "stop"
    assert reasons[:-1] == [None] * (len(reasons) - 1)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert record.usage is not None
    assert chunks[-1].usage.total_tokens == record.usage.total_tokens
    [row] = await gateway.wait_ledger(1)
    assert row.total_tokens == record.usage.total_tokens
    assert row.sid == record.sid


async def test_a_stream_names_sparks_session_in_its_headers(gateway: RunningGateway) -> None:
    key = await gateway.create_key("app")
    stream = await gateway.client(key).chat.completions.create(
        model="lite", messages=[{"role": "user", "content": "which session?"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks
    [record] = gateway.spark.requests
    assert stream.response.headers["x-spark-sid"] == record.sid
    [row] = await gateway.wait_ledger(1)
    assert row.sid == record.sid


async def test_a_stream_without_include_usage_sends_no_usage_chunk(
    gateway: RunningGateway,
) -> None:
    key = await gateway.create_key("app")
    stream = await gateway.client(key).chat.completions.create(
        model="max", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_function_call_round_trip_through_tool_calls(gateway: RunningGateway) -> None:
    client = gateway.client(await gateway.create_key("app"))
    question: Any = {"role": "user", "content": "Use get_weather for Hefei"}
    first = await client.chat.completions.create(
        model="max", messages=[question], tools=[WEATHER_TOOL]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city"}
    sent = gateway.spark.requests[0].request
    assert sent is not None
    assert sent["payload"]["functions"]["text"][0]["name"] == "get_weather"

    second = await client.chat.completions.create(
        model="max",
        messages=[
            question,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].finish_reason == "stop"
    record = gateway.spark.requests[1]
    assert second.choices[0].message.content == record.answer_text
    assert record.request is not None
    turns = record.request["payload"]["message"]["text"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]
    assert "get_weather" in turns[1]["content"]
    assert call.id in turns[1]["content"]
    assert '{"sky": "clear"}' in turns[2]["content"]


async def test_a_streamed_function_call_comes_as_tool_calls(gateway: RunningGateway) -> None:
    client = gateway.client(await gateway.create_key("app"))
    stream = await client.chat.completions.create(
        model="max",
        messages=[{"role": "user", "content": "get_weather please, for Hefei"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    [call] = calls
    assert call.index == 0
    assert call.function is not None
    assert call.function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_x1_streams_its_reasoning_as_reasoning_content(gateway: RunningGateway) -> None:
    client = gateway.client(await gateway.create_key("app"))
    stream = await client.chat.completions.create(
        model="x1", messages=[{"role": "user", "content": "Why is the sky blue?"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    reasoning = "".join(
        (delta.model_extra or {}).get("reasoning_content") or "" for delta in deltas
    )
    text = "".join(delta.content or "" for delta in deltas)
    [record] = gateway.spark.requests
    assert reasoning == record.reasoning
    assert reasoning
    assert text == record.answer_text

    completion = await client.chat.completions.create(
        model="spark-x1", messages=[{"role": "user", "content": "And the sunset?"}]
    )
    message = completion.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == gateway.spark.requests[
        1
    ].reasoning


async def test_a_bad_or_missing_key_is_an_authentication_error_and_costs_no_spark_call(
    gateway: RunningGateway,
) -> None:
    key = await gateway.create_key("app")
    for wrong in ("sk-spark-not-a-key", key[:-1], key + "x"):
        with pytest.raises(openai.AuthenticationError) as caught:
            await gateway.client(wrong).chat.completions.create(
                model="max", messages=[{"role": "user", "content": "Hi"}]
            )
        assert caught.value.code == "invalid_api_key"
    async with aiohttp.ClientSession() as session:
        url = gateway.base_url + "/v1/chat/completions"
        async with session.post(url, json={"model": "max", "messages": []}) as response:
            assert response.status == 401
            error = (await response.json())["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert "Authorization: Bearer" in error["message"]
    assert gateway.spark.requests == []
    assert await gateway.ledger() == []


async def test_a_revoked_key_is_refused_at_once(gateway: RunningGateway) -> None:
    key = await gateway.create_key("app")
    client = gateway.client(key)
    await client.chat.completions.create(model="max", messages=[{"role": "user", "content": "1"}])
    assert "app: revoked" in await gateway.keys("revoke app")
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "2"}]
        )
    assert len(gateway.spark.requests) == 1
    assert len(await gateway.ledger()) == 1


async def test_the_daily_quota_of_a_key_is_a_rate_limit_error_with_the_retry_time(
    gateway: RunningGateway,
) -> None:
    client = gateway.client(await gateway.create_key("small", "--daily-tokens 10"))
    await client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "Spend the quota [[long:200]]"}]
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "More"}]
        )
    assert caught.value.code == "insufficient_quota"
    assert int(caught.value.response.headers["retry-after"]) > 0
    assert len(gateway.spark.requests) == 1


async def test_the_rate_of_a_key_is_a_rate_limit_error_with_the_retry_time(
    gateway: RunningGateway,
) -> None:
    client = gateway.client(await gateway.create_key("slow", "--rate 1"))
    await client.chat.completions.create(model="max", messages=[{"role": "user", "content": "1"}])
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "2"}]
        )
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert len(gateway.spark.requests) == 1


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"logprobs": True}, "logprobs"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"temperature": 5}, "temperature"),
        ({"stop": ["\n"]}, "stop"),
        ({"tool_choice": "required", "tools": [WEATHER_TOOL]}, "tool_choice"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "y"},
                ]
            },
            "messages[1].role",
        ),
    ],
)
async def test_what_spark_cannot_honour_is_a_bad_request_naming_the_parameter(
    gateway: RunningGateway, extra: dict[str, Any], param: str
) -> None:
    client = gateway.client(await gateway.create_key("app"))
    arguments: dict[str, Any] = {
        "model": "max",
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(**arguments)
    assert caught.value.param == param
    assert gateway.spark.requests == []


async def test_ignored_knobs_are_accepted(gateway: RunningGateway) -> None:
    client = gateway.client(await gateway.create_key("app"))
    completion = await client.chat.completions.create(
        model="max",
        messages=[{"role": "user", "content": "Hi"}],
        top_p=0.5,
        presence_penalty=1,
        frequency_penalty=1,
        seed=7,
        temperature=0,
        user="alice",
    )
    assert completion.choices[0].message.content == gateway.spark.requests[0].answer_text


async def test_an_unknown_or_not_enabled_model_is_not_found(gateway: RunningGateway) -> None:
    client = gateway.client(await gateway.create_key("app", "--models max"))
    for model in ("gpt-4o", "lite", "x1"):  # unknown; not enabled; not for this key
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}]
            )
        assert caught.value.code == "model_not_found"
    assert gateway.spark.requests == []


async def test_a_prompt_over_the_budget_is_context_length_exceeded_before_spark(
    gateway: RunningGateway,
) -> None:
    client = gateway.client(await gateway.create_key("app"))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "word " * 20_000}]
        )
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert gateway.spark.requests == []


@pytest.mark.parametrize(
    ("fault", "error", "status", "code"),
    [
        ("error:10907", openai.BadRequestError, 400, "context_length_exceeded"),
        ("error:10013", openai.BadRequestError, 400, "content_filter"),
        ("error:11202", openai.RateLimitError, 429, "upstream_rate_limited"),
        ("error:11201", openai.RateLimitError, 429, "upstream_quota_exceeded"),
        ("error:10110", openai.InternalServerError, 502, "upstream_error"),
        ("close-after:0", openai.InternalServerError, 502, "upstream_unreachable"),
        ("handshake-401", openai.InternalServerError, 503, "upstream_refused"),
        ("error:11200", openai.InternalServerError, 503, "upstream_refused"),
        ("hang", openai.InternalServerError, 504, "upstream_timeout"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_spark_failures_reach_the_sdk_as_their_own_exception_types(
    make_gateway: GatewayFactory,
    fault: str,
    error: type[openai.APIStatusError],
    status: int,
    code: str,
    stream: bool,
) -> None:
    gateway = await make_gateway(spark={"first_frame_timeout": 0.5})
    client = gateway.client(await gateway.create_key("app"))
    gateway.spark.inject(fault)
    with pytest.raises(error) as caught:
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "Hi"}], stream=stream
        )
    assert caught.value.status_code == status
    assert caught.value.code == code
    if status == 429:
        assert int(caught.value.response.headers["retry-after"]) >= 1
    record = gateway.spark.requests[0]  # a refused handshake is read back with a second GET
    if fault.startswith("error:"):
        assert caught.value.response.headers["x-spark-sid"] == record.sid
    [row] = await gateway.wait_ledger(1)
    assert row.error_code is not None


async def test_an_error_after_the_stream_started_is_a_final_error_event(
    gateway: RunningGateway,
) -> None:
    client = gateway.client(await gateway.create_key("app"))
    gateway.spark.inject("error-after:10012:3")
    stream = await client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "Tell me [[long:200]]"}], stream=True
    )
    received: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError, match="Spark failed"):
        await read()
    [record] = gateway.spark.requests
    assert "".join(received) == record.answer_text
    assert received
    [row] = await gateway.wait_ledger(1)
    assert row.error_code == 10012
    assert row.sid == record.sid


async def test_an_answer_cut_by_spark_s_audit_finishes_with_content_filter(
    gateway: RunningGateway,
) -> None:
    client = gateway.client(await gateway.create_key("app"))
    gateway.spark.inject("error-after:10014:3")
    stream = await client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "Tell me [[long:200]]"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == gateway.spark.requests[0].answer_text
    [row] = await gateway.wait_ledger(1)
    assert row.error_code == 10014


async def test_a_client_that_hangs_up_mid_stream_cancels_spark_and_the_ledger_says_so(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(
        simulator_options=SimulatorOptions(frame_interval=0.05, chars_per_frame=4)
    )
    client = gateway.client(await gateway.create_key("app"))
    stream = await client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "Tell me [[long:4000]]"}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    [row] = await gateway.wait_ledger(1)
    assert row.error_code == LEDGER_CLIENT_GONE
    [record] = gateway.spark.requests
    assert record.client_closed_early
    assert record.answer_chars_sent < len(record.planned_answer)
    assert row.sid is None  # Spark never reached its last frame
    assert row.user_id == await gateway.key_user("app")


async def test_the_same_user_gets_a_stable_spark_uid_and_others_their_own(
    gateway: RunningGateway,
) -> None:
    client = gateway.client(await gateway.create_key("app"))
    for user in ("alice", "alice", "bob"):
        await client.chat.completions.create(
            model="max", messages=[{"role": "user", "content": "Hi"}], user=user
        )
    uids = [r.request["header"]["uid"] for r in gateway.spark.requests]  # type: ignore[index]
    assert uids[0] == uids[1] != uids[2]
    assert all(len(uid) <= 32 and "alice" not in uid for uid in uids)


async def _messages(gateway: RunningGateway) -> list[db_rows.Record]:
    return await db_rows.rows(gateway.database, "SELECT * FROM messages ORDER BY id")


async def test_no_question_or_answer_is_stored_by_default(gateway: RunningGateway) -> None:
    client = gateway.client(await gateway.create_key("app"))
    await client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "A secret question"}]
    )
    [row] = await gateway.wait_ledger(1)
    assert row.message_id is None
    assert await _messages(gateway) == []


async def test_an_operator_may_store_questions_and_answers(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(http_api={"store_bodies": True})
    client = gateway.client(await gateway.create_key("app"))
    await client.chat.completions.create(
        model="max",
        messages=[
            {"role": "user", "content": "Earlier"},
            {"role": "assistant", "content": "Reply"},
            {"role": "user", "content": "Keep this"},
        ],
    )
    [row] = await gateway.wait_ledger(1)
    question, answer = await _messages(gateway)
    assert (question.role, question.content) == ("user", "Keep this")
    assert (answer.role, answer.status) == ("assistant", "complete")
    assert answer.content == gateway.spark.requests[0].answer_text
    assert row.message_id == answer.id
    assert row.chat_id == row.user_id == await gateway.key_user("app")


async def test_bodies_and_message_counts_are_bounded_before_spark(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(http_api={"max_body_bytes": 4096, "max_messages": 3})
    key = await gateway.create_key("app")
    url = gateway.base_url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}] * 2
    async with aiohttp.ClientSession(headers=headers) as session:
        big = {"model": "max", "messages": [{"role": "user", "content": "x" * 5000}]}
        async with session.post(url, json=big) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "request_too_large"
        many = {"model": "max", "messages": [*turns, {"role": "user", "content": "q"}]}
        async with session.post(url, json=many) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "messages"
        async with session.post(url, data=b"{not json") as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]["message"]
    assert gateway.spark.requests == []


async def test_a_stream_still_open_at_shutdown_gets_the_grace_then_its_ledger_row(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(
        simulator_options=SimulatorOptions(frame_interval=0.05, chars_per_frame=4)
    )
    client = gateway.client(await gateway.create_key("app"))
    quick = await client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    slow = await client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "Tell me [[long:4000]]"}], stream=True
    )
    async for chunk in slow:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    gateway.runtime.request_stop()
    quick_text = "".join([c.choices[0].delta.content or "" async for c in quick if c.choices])
    await gateway.task
    await gateway.closing.aclose()  # the runtime waits its grace, then ends the rest
    await slow.close()
    database = create_database(gateway.settings.database.url)
    try:
        rows = await db_rows.ledger(database)
    finally:
        await database.dispose()
    assert quick_text == gateway.spark.requests[0].answer_text
    assert sorted(row.error_code or 0 for row in rows) == [LEDGER_UNDELIVERED, 0]
