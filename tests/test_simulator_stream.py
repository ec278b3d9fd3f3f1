"""What the Spark simulator streams: frame sequence, special frames, markers, faults, limits."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.spark.auth import sign_url
from bot.spark.models import MODELS, SparkModel, get_model
from bot.spark.protocol import build_request
from bot.spark.simulator import (
    Credentials,
    SimulatorOptions,
    SparkSimulator,
    answer_text,
    estimate_tokens,
)
from bot.spark.simulator_content import MARKDOWN_ANSWER, long_answer
from bot.spark.types import ChatMessage, FunctionSpec, GenerationOptions, WebSearch
from tests.support.spark_fixtures import (
    Exchange,
    SimulatorFactory,
    ask,
    chat_request,
    exchange,
    signed_url,
)

MAX = get_model("max")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
WEATHER = FunctionSpec(
    name="天气查询",
    description="查询天气",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "城市"},
            "days": {"type": "integer", "description": "天数"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "detail": {"type": "boolean"},
        },
        "required": ["location", "days", "unit"],
    },
)
SEARCH = GenerationOptions(web_search=WebSearch(show_ref_label=True))


def assert_sequence(result: Exchange, first_status: int = 0) -> None:
    """status first/1.../2, seq 0.., one assistant text item, usage only on the last frame."""
    choices = [frame["payload"]["choices"] for frame in result.frames]
    headers = [frame["header"] for frame in result.frames]
    last = len(choices) - 1
    for index, (header, choice) in enumerate(zip(headers, choices, strict=True)):
        expected = 2 if index == last else (first_status if index == 0 else 1)
        assert (header["status"], choice["status"], choice["seq"]) == (expected, expected, index)
        assert (header["code"], header["message"]) == (0, "Success")
        assert header["sid"] == headers[0]["sid"]
        assert len(choice["text"]) == 1
        assert choice["text"][0]["role"] == "assistant"
        assert choice["text"][0]["index"] == 0
    usages = ["usage" in frame["payload"] for frame in result.frames]
    assert usages == [False] * last + [True]


async def test_frame_sequence_and_usage(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator(options=SimulatorOptions(chars_per_frame=5))
    question = "Tell me about frames, 请简短回答。"
    result = await ask(http_session, simulator, question)
    answer = answer_text(question, MAX)
    assert result.text == answer
    assert [len(frame.content) for frame in result.parsed[:-1]] == [5] * (len(result.raw) - 1)
    assert len(result.raw) == -(-len(answer) // 5)
    assert_sequence(result)
    usage = result.frames[-1]["payload"]["usage"]["text"]
    prompt = estimate_tokens(question)
    completion = estimate_tokens(answer)
    assert usage == {
        "question_tokens": prompt,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    assert simulator.requests[-1].usage is not None
    assert simulator.requests[-1].usage.total_tokens == prompt + completion


async def test_one_frame_answer_is_status_2_with_usage(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "[[answer:OK]]")
    assert result.text == "OK"
    assert len(result.frames) == 1
    assert_sequence(result)


async def test_empty_answer_still_ends_with_a_usage_frame(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "[[answer:]]")
    assert result.text == ""
    assert len(result.frames) == 1
    assert result.parsed[0].usage is not None


async def test_sids_are_unique_and_map_to_answers(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    results = [await ask(http_session, spark_simulator, f"question {n}") for n in range(5)]
    assert len({result.sid for result in results}) == 5
    for n, result in enumerate(results):
        assert spark_simulator.answer_for_sid(result.sid) == answer_text(f"question {n}", MAX)
    with pytest.raises(KeyError, match="no simulated stream has sid"):
        spark_simulator.answer_for_sid("cht-unknown")


async def test_x1_streams_reasoning_before_the_answer(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    x1 = get_model("x1")
    result = await ask(http_session, spark_simulator, "why is the sky blue?", x1)
    assert_sequence(result)
    parsed = result.parsed
    thinking = [frame for frame in parsed if frame.reasoning]
    assert thinking == parsed[: len(thinking)]
    assert all(frame.content == "" for frame in thinking)
    assert all(frame.reasoning == "" for frame in parsed[len(thinking) :])
    record = spark_simulator.requests[-1]
    assert "".join(frame.reasoning for frame in thinking) == record.reasoning
    assert "why is the sky blue?" in record.reasoning
    assert result.text == answer_text("why is the sky blue?", x1)
    assert parsed[-1].usage is not None
    expected = estimate_tokens(result.text) + estimate_tokens(record.reasoning)
    assert parsed[-1].usage.completion_tokens == expected


async def test_non_reasoning_models_send_no_reasoning(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "why?")
    assert all(
        "reasoning_content" not in frame["payload"]["choices"]["text"][0]
        for frame in result.frames
    )


# -- function calling --------------------------------------------------------------------------


async def test_function_call_is_one_frame(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    options = GenerationOptions(functions=(WEATHER,))
    result = await ask(http_session, spark_simulator, "合肥今天的天气查询", options=options)
    assert len(result.frames) == 1
    frame = result.frames[0]
    assert frame["header"]["status"] == 2
    choices = frame["payload"]["choices"]
    assert (choices["status"], choices["seq"]) == (2, 0)
    item = choices["text"][0]
    assert item["content"] == ""
    assert item["content_type"] == "text"
    assert item["role"] == "assistant"
    call = item["function_call"]
    assert call["name"] == "天气查询"
    assert isinstance(call["arguments"], str)
    arguments = json.loads(call["arguments"])
    assert set(arguments) == {"location", "days", "unit"}
    assert arguments["location"] == "合肥今天的"
    assert (arguments["days"], arguments["unit"]) == (1, "celsius")
    usage = frame["payload"]["usage"]["text"]
    assert usage["completion_tokens"] == 0
    assert usage["total_tokens"] == usage["prompt_tokens"] > 0
    record = spark_simulator.requests[-1]
    assert record.function_call == {"name": "天气查询", "arguments": call["arguments"]}
    assert spark_simulator.answer_for_sid(result.sid) == ""


async def test_question_without_a_function_name_is_answered(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    options = GenerationOptions(functions=(WEATHER,))
    result = await ask(http_session, spark_simulator, "hello", options=options)
    assert result.text == answer_text("hello", MAX)
    assert result.parsed[-1].function_call is None


async def test_models_without_functions_ignore_them(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    lite = get_model("lite")
    request = chat_request(spark_simulator, lite, "天气查询 please")
    request["payload"]["functions"] = {"text": [{"name": "天气查询", "parameters": {}}]}
    result = await exchange(http_session, signed_url(spark_simulator, lite), request)
    assert result.text == answer_text("天气查询 please", lite)
    assert all(frame.function_call is None for frame in result.parsed)


# -- web search --------------------------------------------------------------------------------


async def test_search_sends_a_plugins_frame_first(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "[[search]] spark release", options=SEARCH)
    first = result.frames[0]
    assert first["header"] == {
        "code": 0,
        "message": "Success",
        "sid": result.sid,
        "status": 1,
    }
    assert set(first["payload"]) == {"plugins"}
    plugin = first["payload"]["plugins"]["text"][0]
    assert {key: plugin[key] for key in plugin if key != "content"} == {
        "name": "ifly_search",
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
    sources = json.loads(plugin["content"])
    assert [source["index"] for source in sources] == [1, 2, 3]
    assert all(source["url"].startswith("https://") and source["title"] for source in sources)
    assert [s.url for s in result.parsed[0].sources] == [s["url"] for s in sources]
    answer = Exchange(result.raw[1:], result.close_code, result.clean_close)
    assert_sequence(answer)
    assert result.text == answer_text("spark release", MAX)
    assert spark_simulator.requests[-1].sources == sources


@pytest.mark.parametrize(
    ("model_name", "question", "options", "searched"),
    [
        ("4.0-ultra", "今天合肥天气怎么样", SEARCH, True),
        ("max", "any news today?", SEARCH, True),
        ("max", "[[search]] q", GenerationOptions(web_search=WebSearch()), False),
        ("max", "[[search]] q", GenerationOptions(), False),
        ("max", "[[search]] q", GenerationOptions(web_search=WebSearch(False, True)), False),
        ("max", "plain question", SEARCH, False),
        ("pro", "[[search]] q", SEARCH, False),
    ],
)
async def test_when_search_sources_are_sent(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    model_name: str,
    question: str,
    options: GenerationOptions,
    searched: bool,
) -> None:
    model = get_model(model_name)
    result = await ask(http_session, spark_simulator, question, model, options=options)
    assert ("plugins" in result.frames[0]["payload"]) is searched
    assert result.text == answer_text(question, model)


# -- question markers --------------------------------------------------------------------------


async def test_error_marker(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "hi [[error:10013]]")
    assert [frame["header"]["code"] for frame in result.frames] == [10013]
    assert "payload" not in result.frames[0]
    assert result.frames[0]["header"]["message"].startswith("InputAuditError:(")
    assert result.close_code == 1000
    assert spark_simulator.requests[-1].error_code == 10013


async def test_error_after_marker(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "hi [[error-after:10014:2]]")
    assert [frame["header"]["code"] for frame in result.frames] == [0, 0, 10014]
    assert result.frames[-1]["header"]["sid"] == result.sid
    assert result.text == answer_text("hi", MAX)[:16]
    assert spark_simulator.answer_for_sid(result.sid) == result.text
    assert result.clean_close


async def test_close_after_marker_drops_without_a_close_frame(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "hi [[close-after:2]]")
    assert len(result.frames) == 2
    assert result.text == answer_text("hi", MAX)[:16]
    assert not result.clean_close
    assert result.close_code == 1006
    record = spark_simulator.requests[-1]
    assert record.closed_abruptly
    assert record.answer_text == result.text


async def test_hang_marker_keeps_the_stream_open_until_the_client_leaves(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    url = signed_url(spark_simulator, MAX)
    async with http_session.ws_connect(url, autoping=False) as ws:
        await ws.send_json(chat_request(spark_simulator, MAX, "[[hang-after:2]] hi"))
        frames = [await ws.receive_str(timeout=2) for _ in range(2)]
        await _says_nothing_more(spark_simulator, ws)
        assert spark_simulator.open_streams == 1
        assert spark_simulator.requests[-1].hung
    assert [json.loads(frame)["header"]["status"] for frame in frames] == [0, 1]
    await _until(lambda: spark_simulator.open_streams == 0)


async def test_hang_marker_sends_nothing(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    async with http_session.ws_connect(signed_url(spark_simulator, MAX), autoping=False) as ws:
        await ws.send_json(chat_request(spark_simulator, MAX, "[[hang]]"))
        await _says_nothing_more(spark_simulator, ws)
    await _until(lambda: spark_simulator.open_streams == 0)
    assert spark_simulator.requests[-1].frames_sent == 0


async def test_slow_first_marker_delays_the_first_frame(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    result = await ask(http_session, spark_simulator, "[[slow-first:0.4]] hi")
    assert time.monotonic() - started >= 0.4
    assert result.text == answer_text("hi", MAX)


@pytest.mark.parametrize("length", [0, 1, 7, 100, 2000, 2001, 4096, 5000])
async def test_long_marker_gives_exactly_n_characters(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession, length: int
) -> None:
    result = await ask(http_session, spark_simulator, f"[[long:{length}]]")
    assert len(result.text) == length
    assert result.text == long_answer(length) == answer_text(f"[[long:{length}]]", MAX)
    assert ("```python\n" in result.text) is (length > 2000)
    if length > 2000:
        assert result.text.count("```") == 2
        assert "\n\n" in result.text
    if length:
        assert not result.text[-1].isspace()


def test_long_answers_vary_and_are_deterministic() -> None:
    text = long_answer(3000)
    assert text == long_answer(3000)
    paragraphs = text.split("\n\n")
    assert len(paragraphs) >= 5
    assert len({len(paragraph) for paragraph in paragraphs}) >= 4
    assert any("\u4e00" <= char <= "\u9fff" for char in text)


async def test_markdown_marker(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    result = await ask(http_session, spark_simulator, "format this [[markdown]]")
    assert result.text == MARKDOWN_ANSWER
    for needle in (
        "**bold text**",
        "*italic text*",
        "`inline code`",
        "\n- ",
        "](https://",
        "```python\n",
    ):
        assert needle in result.text


async def test_answer_marker(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    wanted = "Exactly this: a: b [x] 你好 🙂\nline two"
    result = await ask(http_session, spark_simulator, f"ignored [[answer:{wanted}]]")
    assert result.text == wanted


def test_markers_are_stripped_from_the_question() -> None:
    plain = answer_text("what now?", MAX)
    assert answer_text("[[slow-first:0.1]] what now? [[hang-after:3]]", MAX) == plain
    assert answer_text("[[bogus:1]] what now?", MAX) != plain


# -- server-side injection ---------------------------------------------------------------------


async def test_injected_errors_then_success(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    spark_simulator.inject("error:10110", times=2)
    codes = []
    for _ in range(3):
        result = await ask(http_session, spark_simulator, "retry me")
        codes.append(result.frames[-1]["header"]["code"])
    assert codes == [10110, 10110, 0]
    assert result.text == answer_text("retry me", MAX)
    messages = [r.error_message for r in spark_simulator.requests]
    assert messages[0] is not None
    assert messages[0].startswith("ServiceBusyError:(")
    assert messages[2] is None


async def test_injected_stream_faults(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    spark_simulator.inject("close-after:2")
    spark_simulator.inject("error-after:10014:1")
    spark_simulator.inject("slow-first:0.3")
    dropped = await ask(http_session, spark_simulator, "a")
    assert (len(dropped.frames), dropped.clean_close) == (2, False)
    blocked = await ask(http_session, spark_simulator, "b")
    assert [f["header"]["code"] for f in blocked.frames] == [0, 10014]
    started = time.monotonic()
    slow = await ask(http_session, spark_simulator, "c")
    assert time.monotonic() - started >= 0.3
    assert slow.text == answer_text("c", MAX)
    assert [r.fault for r in spark_simulator.requests] == [
        "close-after:2",
        "error-after:10014:1",
        "slow-first:0.3",
    ]


async def test_injected_hang(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    spark_simulator.inject("hang")
    async with http_session.ws_connect(signed_url(spark_simulator, MAX), autoping=False) as ws:
        await ws.send_json(chat_request(spark_simulator, MAX, "hi"))
        await _says_nothing_more(spark_simulator, ws)
    result = await ask(http_session, spark_simulator, "hi")
    assert result.text == answer_text("hi", MAX)


# -- pacing, limits, lifecycle -----------------------------------------------------------------


async def test_pacing_options(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    options = SimulatorOptions(first_frame_delay=0.2, frame_interval=0.05, chars_per_frame=100)
    simulator = await make_spark_simulator(options=options)
    url = signed_url(simulator, MAX)
    async with http_session.ws_connect(url) as ws:
        started = time.monotonic()
        await ws.send_json(chat_request(simulator, MAX, "[[long:400]]"))
        arrivals = []
        async for _ in ws:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 4
    assert arrivals[0] >= 0.2
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.04


async def test_client_leaving_mid_stream_ends_it(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator(options=SimulatorOptions(frame_interval=0.05))
    async with http_session.ws_connect(signed_url(simulator, MAX)) as ws:
        await ws.send_json(chat_request(simulator, MAX, "[[long:4000]]"))
        for _ in range(2):
            await ws.receive_str(timeout=2)
    # The server answered our close (a close never answered ends 1006, abnormal)...
    assert (ws.close_code, ws.exception()) == (aiohttp.WSCloseCode.OK, None)
    await _until(lambda: simulator.open_streams == 0)
    record = simulator.requests[-1]
    assert record.client_closed_early
    # ... and stopped writing within a few frames of it.
    assert 2 <= record.frames_sent < 10


async def test_max_concurrency(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator(options=SimulatorOptions(max_concurrency=1))
    async with http_session.ws_connect(signed_url(simulator, MAX)) as holder:
        await holder.send_json(chat_request(simulator, MAX, "[[hang]]"))
        await _until(lambda: simulator.requests[-1].hung)
        refused = await ask(http_session, simulator, "second")
        header = refused.frames[0]["header"]
        assert header["code"] == 11203
        assert "concurrency" in header["message"]
    await _until(lambda: simulator.open_streams == 0)
    assert (await ask(http_session, simulator, "third")).text == answer_text("third", MAX)


async def test_one_answer_per_uid_at_a_time(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator()
    async with http_session.ws_connect(signed_url(simulator, MAX)) as holder:
        await holder.send_json(chat_request(simulator, MAX, "[[hang]]", uid="alice"))
        await _until(lambda: simulator.requests[-1].hung)
        refused = await ask(http_session, simulator, "me again", uid="alice")
        header = refused.frames[0]["header"]
        assert header["code"] == 10007
        assert header["message"].startswith("UserFlowLimitError:")
        assert header["sid"]
        other = await ask(http_session, simulator, "someone else", uid="bob")
        assert other.text == answer_text("someone else", MAX)
    await _until(lambda: simulator.open_streams == 0)
    after = await ask(http_session, simulator, "now", uid="alice")
    assert after.text == answer_text("now", MAX)


async def test_max_qps(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator(options=SimulatorOptions(max_qps=2))
    results = [await ask(http_session, simulator, f"q{n}") for n in range(3)]
    codes = [result.frames[-1]["header"]["code"] for result in results]
    assert codes == [0, 0, 11202]
    assert "qps" in results[2].frames[0]["header"]["message"]
    await asyncio.sleep(1.05)
    assert (await ask(http_session, simulator, "later")).text == answer_text("later", MAX)


async def test_stop_closes_open_streams_going_away(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator(options=SimulatorOptions(frame_interval=0.05))
    hung = await http_session.ws_connect(signed_url(simulator, MAX))
    paced = await http_session.ws_connect(signed_url(simulator, MAX))
    await hung.send_json(chat_request(simulator, MAX, "[[hang]]"))
    await paced.send_json(chat_request(simulator, MAX, "[[long:3000]]"))
    await paced.receive_str(timeout=2)
    assert simulator.open_streams == 2

    async def drain(ws: aiohttp.ClientWebSocketResponse) -> tuple[aiohttp.WSMsgType, object]:
        message = await ws.receive(timeout=2)
        while message.type is aiohttp.WSMsgType.TEXT:
            message = await ws.receive(timeout=2)
        return message.type, message.data

    readers = [asyncio.create_task(drain(ws)) for ws in (hung, paced)]
    await simulator.stop()
    assert simulator.open_streams == 0
    # Both closed by the server as it went (1001), the hung one too: nothing waited it out.
    going_away = (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)
    assert await asyncio.gather(*readers) == [going_away] * 2
    for ws in (hung, paced):
        assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
        await ws.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await http_session.ws_connect(signed_url(simulator, MAX))


async def test_async_context_manager(http_session: aiohttp.ClientSession) -> None:
    async with SparkSimulator() as simulator:
        result = await ask(http_session, simulator, "hello")
        assert result.text == answer_text("hello", MAX)
    with pytest.raises(RuntimeError, match="already running"):
        async with simulator:
            await simulator.start()


async def test_many_concurrent_streams_are_isolated(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    models: list[SparkModel] = [get_model(name) for name in ("lite", "max", "x1", "pro-128k")]
    questions = [(f"question number {n} [[long:{200 + n}]]", models[n % 4]) for n in range(200)]
    results = await asyncio.gather(
        *(ask(http_session, spark_simulator, q, model) for q, model in questions)
    )
    for (question, model), result in zip(questions, results, strict=True):
        assert result.text == answer_text(question, model)
        assert spark_simulator.answer_for_sid(result.sid) == result.text
    assert len({result.sid for result in results}) == 200
    assert spark_simulator.open_streams == 0


async def test_max_recorded_bounds_the_history(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator(options=SimulatorOptions(max_recorded=2))
    results = [await ask(http_session, simulator, f"q{n}") for n in range(5)]
    assert len(simulator.requests) <= 4
    assert simulator.requests[-1].sid == results[-1].sid
    assert simulator.answer_for_sid(results[-1].sid) == answer_text("q4", MAX)
    with pytest.raises(KeyError):
        simulator.answer_for_sid(results[0].sid)


async def _says_nothing_more(
    simulator: SparkSimulator, ws: aiohttp.ClientWebSocketResponse
) -> None:
    """Once the stream has hung, a ping is the sentinel: the server answers it on the same
    connection, so anything it sent before would arrive before the pong."""
    await _until(lambda: simulator.requests[-1].hung)
    await ws.ping(b"sentinel")
    message = await ws.receive(timeout=2)
    assert (message.type, message.data) == (aiohttp.WSMsgType.PONG, b"sentinel")


async def _until(condition: Any, limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_cli_serves_until_terminated(http_session: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "simulator",
        "--port",
        "0",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner: list[str] = []
        async with asyncio.timeout(20):
            while not banner or not banner[-1].startswith("Press Ctrl-C"):
                line = await process.stdout.readline()
                assert line, "the simulator exited before printing its banner"
                banner.append(line.decode().rstrip())
        base_url = banner[0].rsplit(" ", 1)[1]
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", base_url)
        demo = Credentials.demo()
        text = "\n".join(banner)
        for value in (demo.app_id, demo.api_key, demo.api_secret):
            assert value in text
        for model in MODELS:
            assert f"{base_url}{model.path}  {model.domain}" in text
        url = sign_url(base_url + MAX.path, demo.api_key, demo.api_secret)
        request = build_request(
            MAX,
            app_id=demo.app_id,
            uid="cli",
            messages=[ChatMessage("user", "hello cli")],
            options=GenerationOptions(),
        )
        result = await exchange(http_session, url, request)
        assert result.text == answer_text("hello cli", MAX)
    finally:
        if process.returncode is None:
            process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, stderr.decode()
