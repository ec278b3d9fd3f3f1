"""SparkClient against the simulator over real sockets: answers, events, concurrency, cancel.

Error paths (error frames, handshake refusals, timeouts, retries) are in
test_spark_client_errors.py; both use the helpers defined here.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from contextlib import aclosing

import aiohttp
import pytest

from bot.config import load_settings
from bot.spark.client import LOCAL_VALIDATION_CODE, SparkClient, SparkOptions
from bot.spark.errors import SparkRequestInvalid
from bot.spark.models import MODELS, SparkModel, get_model, model_for_domain
from bot.spark.retry import RetryPolicy, SparkTimeouts
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator, answer_text
from bot.spark.types import (
    ChatMessage,
    Finished,
    FunctionCallDelta,
    FunctionSpec,
    GenerationOptions,
    ReasoningDelta,
    SearchSourcesDelta,
    StreamEvent,
    TextDelta,
    WebSearch,
)
from tests.support.spark_fixtures import SimulatorFactory

LITE = get_model("lite")
MAX = get_model("max")
X1 = get_model("x1")


class RecordingSleep:
    """The client's back-off sleep: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_client(
    session: aiohttp.ClientSession,
    simulator: SparkSimulator | None,
    *,
    model: SparkModel = LITE,
    credentials: Credentials | None = None,
    timeouts: SparkTimeouts | None = None,
    retry: RetryPolicy | None = None,
    sleep: RecordingSleep | None = None,
    seed: int = 7,
    url_override: str | None = None,
) -> SparkClient:
    """A client for ``simulator`` (or for ``url_override`` when there is none)."""
    credentials = credentials or Credentials.demo()
    if url_override is None:
        assert simulator is not None
        url_override = simulator.base_url
    options = SparkOptions(
        app_id=credentials.app_id,
        api_key=credentials.api_key,
        api_secret=credentials.api_secret,
        model=model,
        url=url_override,
        timeouts=timeouts or SparkTimeouts(),
        retry=retry or RetryPolicy(max_attempts=1),
    )
    return SparkClient(session, options, sleep=sleep or RecordingSleep(), rng=random.Random(seed))


def ask(question: str, history: Sequence[ChatMessage] = ()) -> list[ChatMessage]:
    return [*history, ChatMessage("user", question)]


async def collect(
    client: SparkClient,
    messages: Sequence[ChatMessage],
    *,
    model: SparkModel | None = None,
    options: GenerationOptions | None = None,
    uid: str = "user-1",
) -> list[StreamEvent]:
    async with aclosing(client.stream(messages, uid, model=model, options=options)) as events:
        return [event async for event in events]


def text_of(events: Sequence[StreamEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.name)
async def test_every_model_streams_and_completes_the_simulators_answer(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession, model: SparkModel
) -> None:
    client = make_client(http_session, spark_simulator, model=model)
    question = f"What is {model.title}?"

    # Legacy names share path and domain with a current model; Spark cannot tell them apart.
    served = model_for_domain(model.path, model.domain)
    assert served is not None

    events = await collect(client, ask(question))
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert not any(isinstance(event, Finished) for event in events[:-1])
    assert text_of(events) == spark_simulator.answer_for_sid(finished.sid)
    assert text_of(events) == answer_text(question, served)
    assert finished.usage.total_tokens == (
        finished.usage.prompt_tokens + finished.usage.completion_tokens
    )
    assert finished.usage.completion_tokens > 0

    completion = await client.complete(ask("And the second question?"), "user-1")
    assert completion.text == spark_simulator.answer_for_sid(completion.sid)
    assert completion.sid != finished.sid
    assert completion.usage.total_tokens > 0

    recorded = [spark_simulator.request_for_sid(sid) for sid in (finished.sid, completion.sid)]
    for record in recorded:
        assert record.path == model.path
        assert record.request is not None
        assert record.request["parameter"]["chat"]["domain"] == model.domain
        assert record.request["header"] == {"app_id": "demo0001", "uid": "user-1"}
        assert not record.closed_abruptly
        assert not record.client_closed_early


async def test_history_and_system_prompt_reach_spark_in_order(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator, model=MAX)
    history = [
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "Hello!"),
    ]
    completion = await client.complete(ask("what can you do?", history), "u")
    record = spark_simulator.request_for_sid(completion.sid)
    assert record.request is not None
    assert record.request["payload"]["message"]["text"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "what can you do?"},
    ]
    assert completion.text == answer_text("what can you do?", MAX)


async def test_long_answer_arrives_whole_and_in_order(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    events = await collect(client, ask("essay [[long:5000]]"))
    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert len(deltas) == 5000 // 8
    assert text_of(events) == answer_text("essay [[long:5000]]", LITE)
    assert len(text_of(events)) == 5000


async def test_per_call_model_overrides_the_default(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator, model=LITE)
    completion = await client.complete(ask("which model?"), "u", model=MAX)
    assert completion.text == answer_text("which model?", MAX)
    assert spark_simulator.request_for_sid(completion.sid).path == MAX.path


async def test_url_override_with_a_path_is_used_verbatim(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    pro = get_model("pro")
    client = make_client(
        http_session, spark_simulator, model=pro, url_override=spark_simulator.url_for(pro)
    )
    assert client.endpoint(MAX) == spark_simulator.url_for(pro)
    completion = await client.complete(ask("verbatim?"), "u")
    assert spark_simulator.request_for_sid(completion.sid).path == pro.path
    assert make_client(http_session, spark_simulator).endpoint(X1) == (
        spark_simulator.base_url + "/v1/x1"
    )


async def test_reasoning_deltas_precede_the_answer_on_x1(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator, model=X1)
    events = await collect(client, ask("Why is the sky blue?"))
    kinds = [type(event).__name__ for event in events]
    first_text = kinds.index("TextDelta")
    assert kinds[0] == "ReasoningDelta"
    assert "ReasoningDelta" not in kinds[first_text:]
    reasoning = "".join(event.text for event in events if isinstance(event, ReasoningDelta))
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert reasoning == spark_simulator.request_for_sid(finished.sid).reasoning
    assert reasoning
    completion = await client.complete(ask("Why is the sky blue?"), "u")
    assert completion.reasoning == reasoning
    assert completion.text == answer_text("Why is the sky blue?", X1)


WEATHER = FunctionSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "city name"},
            "days": {"type": "integer", "description": "forecast days"},
        },
        "required": ["city", "days"],
    },
)


async def test_function_call_is_one_event_then_finished(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator, model=MAX)
    options = GenerationOptions(functions=(WEATHER,))
    events = await collect(client, ask("get_weather Hefei"), options=options)
    assert [type(event) for event in events] == [FunctionCallDelta, Finished]
    call = events[0]
    assert isinstance(call, FunctionCallDelta)
    assert call.call.name == "get_weather"
    assert json.loads(call.call.arguments) == {"city": "Hefei", "days": 1}
    completion = await client.complete(ask("get_weather Hefei"), "u", options=options)
    assert completion.function_call == call.call
    assert completion.text == ""
    record = spark_simulator.request_for_sid(completion.sid)
    assert record.request is not None
    assert record.request["payload"]["functions"]["text"][0]["name"] == "get_weather"


async def test_functions_are_not_sent_to_a_model_without_them(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator, model=LITE)
    options = GenerationOptions(functions=(WEATHER,))
    completion = await client.complete(ask("get_weather Hefei"), "u", options=options)
    assert completion.function_call is None
    assert completion.text == answer_text("get_weather Hefei", LITE)


async def test_search_sources_come_before_the_answer(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator, model=MAX)
    options = GenerationOptions(web_search=WebSearch(show_ref_label=True))
    events = await collect(client, ask("latest on Spark [[search]]"), options=options)
    sources = events[0]
    assert isinstance(sources, SearchSourcesDelta)
    assert not any(isinstance(event, SearchSourcesDelta) for event in events[1:])
    finished = events[-1]
    assert isinstance(finished, Finished)
    record = spark_simulator.request_for_sid(finished.sid)
    assert record.sources is not None
    assert [(s.index, s.url, s.title) for s in sources.sources] == [
        (item["index"], item["url"], item["title"]) for item in record.sources
    ]
    assert text_of(events) == answer_text("latest on Spark [[search]]", MAX)
    completion = await client.complete(ask("latest on Spark [[search]]"), "u", options=options)
    assert completion.sources == sources.sources


async def test_three_hundred_concurrent_streams_are_isolated(
    make_spark_simulator: SimulatorFactory,
) -> None:
    # Several frames per answer, but few enough that the test stays fast on two cores.
    spark_simulator = await make_spark_simulator(options=SimulatorOptions(chars_per_frame=24))
    # aiohttp's default pool holds 100 connections; the bot's session lifts the limit.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        client = make_client(session, spark_simulator, model=MAX)
        questions = [f"question number {index}, answer it alone" for index in range(300)]

        async def one(index: int, question: str) -> tuple[str, list[StreamEvent]]:
            # One uid each: Spark answers one question per uid at a time.
            return question, await collect(client, ask(question), uid=f"u{index}")

        results = await asyncio.gather(*(one(n, question) for n, question in enumerate(questions)))

    sids = set()
    for question, events in results:
        finished = events[-1]
        assert isinstance(finished, Finished)
        sids.add(finished.sid)
        assert text_of(events) == answer_text(question, MAX)
        assert text_of(events) == spark_simulator.answer_for_sid(finished.sid)
        assert spark_simulator.request_for_sid(finished.sid).question == question
    assert len(sids) == 300
    assert spark_simulator.open_streams == 0


async def wait_until(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Poll simulator state, which offers no event to wait on."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_cancelling_the_consumer_closes_the_socket(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    received: list[str] = []
    two_frames = asyncio.Event()

    async def consume() -> None:
        async with aclosing(client.stream(ask("stop me [[hang-after:2]]"), "u")) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    received.append(event.text)
                    if len(received) == 2:
                        two_frames.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(two_frames.wait(), 2)
    assert spark_simulator.open_streams == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: spark_simulator.open_streams == 0, within=1.0)
    record = spark_simulator.requests[-1]
    assert record.hung
    assert "".join(received) == record.answer_text


async def test_leaving_the_stream_early_closes_the_socket(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    async with aclosing(client.stream(ask("first words only [[hang-after:3]]"), "u")) as events:
        async for event in events:
            assert isinstance(event, TextDelta)
            break
        assert spark_simulator.open_streams == 1
    await wait_until(lambda: spark_simulator.open_streams == 0, within=1.0)


@pytest.mark.parametrize(
    ("model", "messages", "uid", "options", "detail"),
    [
        (LITE, ask("hi"), "u" * 33, GenerationOptions(), "uid must be 1..32"),
        (LITE, ask("hi"), "", GenerationOptions(), "uid must be 1..32"),
        (LITE, [], "u", GenerationOptions(), "no messages"),
        (
            LITE,
            [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")],
            "u",
            GenerationOptions(),
            "last message must be the user's",
        ),
        (
            MAX,
            [ChatMessage("user", "hi"), ChatMessage("system", "late"), ChatMessage("user", "q")],
            "u",
            GenerationOptions(),
            "system message at position 1",
        ),
        (
            LITE,
            [ChatMessage("system", "be nice"), ChatMessage("user", "q")],
            "u",
            GenerationOptions(),
            "Spark Lite does not accept a system message",
        ),
        (
            LITE,
            [ChatMessage("user", "hi"), ChatMessage("assistant", ""), ChatMessage("user", "q")],
            "u",
            GenerationOptions(),
            "message 1 (assistant) is empty",
        ),
        (LITE, ask("hi"), "u", GenerationOptions(max_tokens=4097), "max_tokens 4097"),
        (MAX, ask("hi"), "u", GenerationOptions(max_tokens=0), "max_tokens 0"),
        (MAX, ask("hi"), "u", GenerationOptions(temperature=0), "temperature 0"),
        (MAX, ask("hi"), "u", GenerationOptions(temperature=1.5), "temperature 1.5"),
        (MAX, ask("hi"), "u", GenerationOptions(top_k=7), "top_k 7"),
        (X1, ask("hi"), "u", GenerationOptions(top_p=1.5), "top_p 1.5"),
    ],
)
async def test_invalid_requests_are_refused_without_a_round_trip(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    model: SparkModel,
    messages: list[ChatMessage],
    uid: str,
    options: GenerationOptions,
    detail: str,
) -> None:
    client = make_client(http_session, spark_simulator, model=model)
    with pytest.raises(SparkRequestInvalid) as caught:
        await client.complete(messages, uid, options=options)
    error = caught.value
    assert detail in str(error)
    assert error.code == LOCAL_VALIDATION_CODE
    assert error.model == model.name
    assert not error.retryable
    assert spark_simulator.requests == []


async def test_x1_accepts_its_wider_temperature_range(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator, model=X1)
    completion = await client.complete(
        ask("warm"), "u", options=GenerationOptions(temperature=1.8)
    )
    record = spark_simulator.request_for_sid(completion.sid)
    assert record.request is not None
    assert record.request["parameter"]["chat"]["temperature"] == 1.8


async def test_client_options_carry_the_operators_configuration(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    demo = Credentials.demo()
    settings = load_settings(
        env_file=None,
        spark={
            "app_id": demo.app_id,
            "api_key": demo.api_key,
            "api_secret": demo.api_secret,
            "model": "max",
            "url": spark_simulator.base_url,
            "temperature": 0.9,
            "max_tokens": 8000,
            "top_k": 3,
            "max_retries": 4,
            "idle_timeout": 7,
        },
    ).spark
    client = SparkClient(http_session, settings.client_options())
    assert client.model == MAX
    assert client.retry_policy.max_attempts == 5
    assert client.timeouts.idle == 7
    completion = await client.complete(ask("configured?"), "u")
    assert completion.text == answer_text("configured?", MAX)
    record = spark_simulator.request_for_sid(completion.sid)
    assert record.request is not None
    chat = record.request["parameter"]["chat"]
    assert (chat["temperature"], chat["max_tokens"], chat["top_k"]) == (0.9, 8000, 3)
    # The defaults are fitted to a model with a smaller range instead of making it fail.
    lite = await client.complete(ask("configured?"), "u", model=LITE)
    lite_record = spark_simulator.request_for_sid(lite.sid)
    assert lite_record.request is not None
    assert lite_record.request["parameter"]["chat"]["max_tokens"] == LITE.max_tokens_limit


async def test_the_session_id_is_told_before_the_first_event(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    heard: list[str] = []
    seen_before_first_event: list[list[str]] = []
    stream = client.stream(ask("who am I talking to?"), "u", on_sid=heard.append)
    async with aclosing(stream) as events:
        async for event in events:
            if not seen_before_first_event:
                seen_before_first_event.append(list(heard))
            if isinstance(event, Finished):
                assert heard == [event.sid]
    assert seen_before_first_event == [heard]
