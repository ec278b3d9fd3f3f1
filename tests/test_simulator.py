"""The Spark simulator's handshake and request validation, driven by a raw aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from time import mktime
from urllib.parse import urlencode
from wsgiref.handlers import format_date_time

import aiohttp
import pytest

from bot.spark.auth import format_date, sign_url
from bot.spark.models import MODELS, SparkModel, get_model
from bot.spark.simulator import (
    Credentials,
    SimulatorOptions,
    SparkSimulator,
    answer_text,
    estimate_tokens,
)
from bot.spark.types import ChatMessage, GenerationOptions
from tests.support.spark_fixtures import (
    SimulatorFactory,
    ask,
    chat_request,
    exchange,
    signed_url,
)

MAX = get_model("max")
BAD_DATE = (
    "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC "
    "Authentication"
)
UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
}
MESSAGE_FORM = re.compile(r"^(?P<cls>\w+):\(\d\d:\d\d:\d\d\.\d{3}\) (?P<detail>.+)$")


async def handshake(
    session: aiohttp.ClientSession, url: str
) -> tuple[int, str | None, dict[str, str]]:
    """A websocket upgrade request over plain HTTP: status, Content-Type and JSON body."""
    async with session.get(url.replace("ws://", "http://", 1), headers=UPGRADE_HEADERS) as resp:
        body = json.loads(await resp.text()) if resp.status != 101 else {}
        return resp.status, resp.headers.get("Content-Type"), body


def official_sdk_url(simulator: SparkSimulator, model: SparkModel) -> str:
    """The URL spark-ai-python 0.4.5 builds: wsgiref date, 9 spaces before ``headers=``."""
    creds = simulator.credentials
    host = simulator.base_url.removeprefix("ws://")
    date = format_date_time(mktime(datetime.now().timetuple()))
    origin = f"host: {host}\ndate: {date}\nGET {model.path} HTTP/1.1"
    digest = hmac.new(creds.api_secret.encode(), origin.encode(), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    authorization_origin = (
        f'api_key="{creds.api_key}", algorithm="hmac-sha256",         '
        f'headers="host date request-line", signature="{signature}"'
    )
    authorization = base64.b64encode(authorization_origin.encode()).decode()
    query = urlencode({"authorization": authorization, "date": date, "host": host})
    return f"{simulator.url_for(model)}?{query}"


# -- every model answers ---------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.name)
async def test_every_model_path_answers(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession, model: SparkModel
) -> None:
    question = f"What is {model.title}?"
    result = await ask(http_session, spark_simulator, question, model)
    assert result.text == answer_text(question, model)
    served = spark_simulator.requests[-1].model
    assert served is not None
    assert served.title in result.text
    assert spark_simulator.answer_for_sid(result.sid) == result.text
    assert result.clean_close
    assert result.close_code == 1000
    record = spark_simulator.requests[-1]
    assert record.path == model.path
    assert record.handshake_status == 101
    assert record.model is not None
    assert record.model.domain == model.domain
    assert record.request is not None
    assert record.request["parameter"]["chat"]["domain"] == model.domain
    assert record.error_code is None


async def test_official_sdk_url_style_is_accepted(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    url = official_sdk_url(spark_simulator, MAX)
    result = await exchange(http_session, url, chat_request(spark_simulator, MAX, "hi"))
    assert result.text == answer_text("hi", MAX)


async def test_official_worked_example_date_format_round_trips(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    """The date string is used verbatim, ``+``-encoded, as in the reference example (§2.2)."""
    moment = datetime(2023, 5, 5, 10, 43, 39, tzinfo=UTC)
    simulator = await make_spark_simulator(clock=lambda: moment)
    url = sign_url(
        simulator.url_for(MAX),
        simulator.credentials.api_key,
        simulator.credentials.api_secret,
        "Fri, 05 May 2023 10:43:39 GMT",
    )
    assert "date=Fri%2C+05+May+2023+10%3A43%3A39+GMT" in url
    result = await exchange(http_session, url, chat_request(simulator, MAX, "hi"))
    assert result.text == answer_text("hi", MAX)


# -- handshake refusals ----------------------------------------------------------------------


def _authorization(api_key: str, signature: str, algorithm: str = "hmac-sha256") -> str:
    origin = (
        f'api_key="{api_key}", algorithm="{algorithm}", '
        f'headers="host date request-line", signature="{signature}"'
    )
    return base64.b64encode(origin.encode()).decode()


def _with_query(simulator: SparkSimulator, **params: str) -> str:
    return f"{simulator.url_for(MAX)}?{urlencode(params)}"


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("missing authorization", 401, "Unauthorized"),
        ("not base64", 401, "HMAC signature cannot be verified"),
        ("missing fields", 401, "HMAC signature cannot be verified"),
        ("wrong algorithm", 401, "HMAC signature cannot be verified"),
        ("unknown key", 401, "HMAC signature cannot be verified: fail to retrieve credential"),
        ("wrong secret", 401, "HMAC signature does not match"),
        ("signed for another path", 401, "HMAC signature does not match"),
        ("host param differs from Host header", 401, "HMAC signature does not match"),
        ("unparseable date", 403, BAD_DATE),
    ],
)
async def test_handshake_refusals(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    case: str,
    status: int,
    message: str,
) -> None:
    sim, creds = spark_simulator, spark_simulator.credentials
    host = sim.base_url.removeprefix("ws://")
    date = format_date(datetime.now(UTC))
    good = signed_url(sim, MAX)
    urls = {
        "missing authorization": _with_query(sim, date=date, host=host),
        "not base64": _with_query(sim, authorization="%%%not-base64", date=date, host=host),
        "missing fields": _with_query(
            sim,
            authorization=base64.b64encode(b'api_key="x", algorithm="hmac-sha256"').decode(),
            date=date,
            host=host,
        ),
        "wrong algorithm": _with_query(
            sim,
            authorization=_authorization(creds.api_key, "x", "hmac-sha1"),
            date=date,
            host=host,
        ),
        "unknown key": sign_url(sim.url_for(MAX), "some-other-key", creds.api_secret),
        "wrong secret": sign_url(sim.url_for(MAX), creds.api_key, "not-the-secret"),
        "signed for another path": sign_url(
            sim.url_for(get_model("lite")), creds.api_key, creds.api_secret
        ).replace("/v1.1/chat", MAX.path),
        "host param differs from Host header": sign_url(
            sim.url_for(MAX).replace("127.0.0.1", "localhost"), creds.api_key, creds.api_secret
        ).replace("localhost", "127.0.0.1", 1),
        "unparseable date": good.replace("GMT", "XYZ"),
    }
    got_status, content_type, body = await handshake(http_session, urls[case])
    assert (got_status, body) == (status, {"message": message})
    assert content_type == "text/plain; charset=utf-8"
    record = sim.requests[-1]
    assert (record.handshake_status, record.handshake_message) == (status, message)
    assert record.sid is None
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http_session.ws_connect(urls[case])
    assert refused.value.status == status


async def test_unknown_path_is_404(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    url = sign_url(
        spark_simulator.base_url + "/v9.9/chat",
        spark_simulator.credentials.api_key,
        spark_simulator.credentials.api_secret,
    )
    spark_simulator.inject("handshake-403-ip")
    status, _, body = await handshake(http_session, url)
    assert status == 404
    assert body == {"message": "no Route matched with those values"}
    # The injected fault waits for a connection to a real model path.
    status, _, body = await handshake(http_session, signed_url(spark_simulator, MAX))
    assert (status, body) == (403, {"message": "Your IP address is not allowed"})


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(-301, False), (-299, True), (0, True), (299, True), (301, False)],
)
async def test_clock_skew_window(
    make_spark_simulator: SimulatorFactory,
    http_session: aiohttp.ClientSession,
    skew: int,
    accepted: bool,
) -> None:
    server_now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    simulator = await make_spark_simulator(clock=lambda: server_now)
    url = signed_url(simulator, MAX, server_now + timedelta(seconds=skew))
    status, _, body = await handshake(http_session, url)
    if accepted:
        assert status == 101
    else:
        assert (status, body) == (403, {"message": BAD_DATE})


async def test_date_window_is_configurable(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    server_now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    simulator = await make_spark_simulator(
        options=SimulatorOptions(date_window=10), clock=lambda: server_now
    )
    late = signed_url(simulator, MAX, server_now - timedelta(seconds=11))
    assert (await handshake(http_session, late))[0] == 403
    fresh = signed_url(simulator, MAX, server_now - timedelta(seconds=9))
    assert (await handshake(http_session, fresh))[0] == 101


async def test_custom_credentials(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    creds = Credentials(app_id="app12345", api_key="k" * 32, api_secret="s" * 32)
    simulator = await make_spark_simulator(credentials=creds)
    assert simulator.credentials == creds
    result = await ask(http_session, simulator, "hello")
    assert result.text == answer_text("hello", MAX)
    demo_signed = sign_url(simulator.url_for(MAX), Credentials.demo().api_key, creds.api_secret)
    assert (await handshake(http_session, demo_signed))[0] == 401


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ("handshake-401", 401, "HMAC signature does not match"),
        ("handshake-403-date", 403, BAD_DATE),
        ("handshake-403-ip", 403, "Your IP address is not allowed"),
        ("unknown-key", 401, "HMAC signature cannot be verified: fail to retrieve credential"),
    ],
)
async def test_injected_handshake_faults_apply_to_the_next_connections_only(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    fault: str,
    status: int,
    message: str,
) -> None:
    spark_simulator.inject(fault, times=2)
    for _ in range(2):
        got = await handshake(http_session, signed_url(spark_simulator, MAX))
        assert (got[0], got[2]) == (status, {"message": message})
    result = await ask(http_session, spark_simulator, "after the fault")
    assert result.text == answer_text("after the fault", MAX)
    assert [r.fault for r in spark_simulator.requests] == [fault, fault, None]


async def test_close_before_upgrade_drops_the_connection_without_a_response(
    spark_simulator: SparkSimulator,
) -> None:
    spark_simulator.inject("close-before-upgrade")
    url = signed_url(spark_simulator, MAX)
    path_and_query = url.split(spark_simulator.base_url, 1)[1]
    host = spark_simulator.base_url.removeprefix("ws://")
    address, port = host.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(address, int(port))
    headers = "".join(f"{name}: {value}\r\n" for name, value in UPGRADE_HEADERS.items())
    writer.write(f"GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await writer.wait_closed()
    record = spark_simulator.requests[-1]
    assert record.closed_abruptly
    assert record.handshake_status is None


def test_inject_rejects_unknown_faults() -> None:
    simulator = SparkSimulator()
    with pytest.raises(ValueError, match="unknown simulator fault 'explode'"):
        simulator.inject("explode")


# -- request validation ----------------------------------------------------------------------


async def assert_error(
    session: aiohttp.ClientSession,
    simulator: SparkSimulator,
    request: dict[str, object] | str,
    code: int,
    error_class: str,
    detail: str,
    model: SparkModel = MAX,
) -> None:
    result = await exchange(session, signed_url(simulator, model), request)
    assert len(result.frames) == 1, result.raw
    frame = result.frames[0]
    assert set(frame) == {"header"}
    header = frame["header"]
    assert header["code"] == code
    assert header["status"] == 2
    assert re.fullmatch(r"cht[0-9a-f]{8}@dx[0-9a-f]{18}", header["sid"])
    match = MESSAGE_FORM.match(header["message"])
    assert match is not None, header["message"]
    assert match["cls"] == error_class
    assert detail in match["detail"]
    assert result.clean_close
    assert result.close_code == 1000
    record = simulator.requests[-1]
    assert (record.error_code, record.sid, record.answer_text) == (code, header["sid"], "")


def _request(simulator: SparkSimulator, model: SparkModel = MAX, **chat: object) -> dict:  # type: ignore[type-arg]
    request = chat_request(simulator, model, "hello")
    request["parameter"]["chat"].update(chat)
    return request


async def test_error_message_carries_the_server_clock(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    now = datetime(2024, 7, 9, 17, 27, 5, 718000, tzinfo=UTC)
    simulator = await make_spark_simulator(clock=lambda: now)
    url = signed_url(simulator, MAX, now)
    result = await exchange(http_session, url, _request(simulator, domain="lite"))
    message = result.frames[0]["header"]["message"]
    assert message == "ClientMsgError:(17:27:05.718) invalid model domain"


async def test_domain_must_match_the_path(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    request = _request(spark_simulator, domain="generalv3")
    await assert_error(
        http_session, spark_simulator, request, 10003, "ClientMsgError", "invalid model domain"
    )


async def test_legacy_domain_on_a_shared_path_is_served(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    legacy = get_model("v1.5")
    result = await ask(http_session, spark_simulator, "old", legacy)
    assert result.text == answer_text("old", legacy)
    assert spark_simulator.requests[-1].model == legacy


async def test_invalid_json_is_10003(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    await assert_error(
        http_session, spark_simulator, "{not json", 10003, "ClientMsgError", "not valid JSON"
    )


async def test_uid_longer_than_32_is_10004(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    ok = chat_request(spark_simulator, MAX, "hi", uid="u" * 32)
    assert (await exchange(http_session, signed_url(spark_simulator, MAX), ok)).text
    request = chat_request(spark_simulator, MAX, "hi", uid="u" * 33)
    await assert_error(
        http_session,
        spark_simulator,
        request,
        10004,
        "SchemaCheckError",
        "'$.header.uid' length must be less or equal than 32",
    )


async def test_missing_payload_is_a_schema_error(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    request = _request(spark_simulator)
    del request["payload"]
    await assert_error(
        http_session, spark_simulator, request, 10004, "SchemaCheckError", "$.payload"
    )


async def test_wrong_app_id_is_11200(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    request = _request(spark_simulator)
    request["header"]["app_id"] = "someone0"
    await assert_error(http_session, spark_simulator, request, 11200, "AppIdNoAuthError", "app_id")


def _messages_request(
    simulator: SparkSimulator, model: SparkModel, *pairs: tuple[str, str]
) -> dict:  # type: ignore[type-arg]
    request = chat_request(simulator, model, "x")
    request["payload"]["message"]["text"] = [{"role": r, "content": c} for r, c in pairs]
    return request


@pytest.mark.parametrize(
    ("model_name", "pairs", "detail"),
    [
        (
            "max",
            [("user", "a"), ("system", "s"), ("user", "b")],
            "system message must be the first",
        ),
        ("max", [("user", "a"), ("assistant", "b")], "last message must have role user"),
        ("max", [("tool", "a"), ("user", "b")], "'tool' is not one of"),
        ("v1.5", [("system", "s"), ("user", "b")], "role system is not supported by general"),
        ("v2", [("system", "s"), ("user", "b")], "role system is not supported by generalv2"),
    ],
)
async def test_message_roles_are_checked(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    model_name: str,
    pairs: list[tuple[str, str]],
    detail: str,
) -> None:
    model = get_model(model_name)
    request = _messages_request(spark_simulator, model, *pairs)
    await assert_error(
        http_session, spark_simulator, request, 10005, "ParamValueError", detail, model
    )


async def test_empty_message_list_is_rejected(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    request = _messages_request(spark_simulator, MAX)
    await assert_error(
        http_session, spark_simulator, request, 10004, "SchemaCheckError", "non-empty"
    )


@pytest.mark.parametrize("model_name", ["max", "lite", "x1"])
async def test_system_first_with_history_is_accepted(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession, model_name: str
) -> None:
    model = get_model(model_name)
    history = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "hello"),
    ]
    result = await ask(http_session, spark_simulator, "and now?", model, history=history)
    assert result.text == answer_text("and now?", model)
    usage = result.parsed[-1].usage
    assert usage is not None
    contents = ["Be brief.", "hi", "hello", "and now?"]
    assert usage.prompt_tokens == sum(estimate_tokens(text) for text in contents)
    assert usage.question_tokens == estimate_tokens("and now?")


@pytest.mark.parametrize(
    ("model_name", "chat", "detail"),
    [
        ("max", {"max_tokens": 0}, "max_tokens must be in [1, 8192]"),
        ("max", {"max_tokens": 8193}, "max_tokens must be in [1, 8192]"),
        ("lite", {"max_tokens": 4097}, "max_tokens must be in [1, 4096]"),
        ("max", {"max_tokens": "100"}, "max_tokens must be in"),
        ("max", {"temperature": 0}, "temperature must be in (0, 1.0]"),
        ("max", {"temperature": 1.01}, "temperature must be in (0, 1.0]"),
        ("x1", {"temperature": 2.5}, "temperature must be in (0, 2.0]"),
        ("max", {"top_k": 0}, "top_k must be in [1, 6]"),
        ("max", {"top_k": 7}, "top_k must be in [1, 6]"),
    ],
)
async def test_parameter_ranges_are_checked(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    model_name: str,
    chat: dict[str, object],
    detail: str,
) -> None:
    model = get_model(model_name)
    request = _request(spark_simulator, model, **chat)
    await assert_error(
        http_session, spark_simulator, request, 10005, "ParamValueError", detail, model
    )


@pytest.mark.parametrize(
    ("model_name", "chat"),
    [
        ("max", {"max_tokens": 1, "temperature": 1.0, "top_k": 1}),
        ("max", {"max_tokens": 8192, "temperature": 0.01, "top_k": 6}),
        ("lite", {"max_tokens": 4096}),
        ("x1", {"temperature": 2.0, "max_tokens": 32768}),
    ],
)
async def test_parameter_range_edges_are_accepted(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    model_name: str,
    chat: dict[str, object],
) -> None:
    model = get_model(model_name)
    request = _request(spark_simulator, model, **chat)
    result = await exchange(http_session, signed_url(spark_simulator, model), request)
    assert result.text == answer_text("hello", model)


async def test_too_many_tokens_is_10907(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    # Max: 8192-token context, max_tokens 4096 reserved -> 4096 tokens for the contents.
    options = GenerationOptions(max_tokens=4096)
    fits = "字" * 6144  # 4096 tokens
    result = await ask(http_session, spark_simulator, fits, options=options)
    assert result.parsed[-1].usage is not None
    assert result.parsed[-1].usage.prompt_tokens == 4096
    await assert_error(
        http_session,
        spark_simulator,
        chat_request(spark_simulator, MAX, fits + "字", options=options),
        10907,
        "TokenLimitError",
        "tokens exceed the limit: input 4097 > 4096",
    )


async def test_history_counts_towards_the_token_budget(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    history = [ChatMessage("user", "a" * 16000), ChatMessage("assistant", "b" * 400)]
    request = chat_request(spark_simulator, MAX, "short question", history=history)
    await assert_error(
        http_session, spark_simulator, request, 10907, "TokenLimitError", "exceed the limit"
    )


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好") == 2
    assert estimate_tokens("你好吗") == 2
    assert estimate_tokens("你好 hello") == 2 + 2
