"""SparkClient failure paths over real sockets: error frames, handshake refusals, timeouts,
retries and partial answers, malformed frames and the close handshake."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import ssl
import subprocess
from collections.abc import Sequence
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.spark.client import SparkClient
from bot.spark.errors import (
    SparkAPIError,
    SparkAuthError,
    SparkContentBlocked,
    SparkContextTooLong,
    SparkError,
    SparkProtocolError,
    SparkQuotaExceeded,
    SparkRateLimited,
    SparkRequestInvalid,
    SparkServiceError,
    SparkTimeout,
    SparkTransportError,
)
from bot.spark.retry import RetryPolicy, SparkTimeouts
from bot.spark.simulator import Credentials, SparkSimulator, answer_text
from bot.spark.types import StreamEvent, TextDelta
from tests.support.spark_fixtures import SimulatorFactory
from tests.test_spark_client import LITE, RecordingSleep, ask, make_client, text_of, wait_until

FAST = SparkTimeouts(connect=2, first_frame=2, idle=2, total=10)


async def stream_until_error(
    client: SparkClient, question: str, events: list[StreamEvent]
) -> SparkError:
    """Stream ``question``, appending events, and return the error it ends with."""
    try:
        async with aclosing(client.stream(ask(question), "u")) as stream:
            async for event in stream:
                events.append(event)
    except SparkError as exc:
        return exc
    raise AssertionError("the stream ended without an error")


@pytest.mark.parametrize(
    ("code", "error_class", "retryable"),
    [
        (10005, SparkRequestInvalid, False),
        (10907, SparkContextTooLong, False),
        (10013, SparkContentBlocked, False),
        (11201, SparkQuotaExceeded, False),
        (11202, SparkRateLimited, True),
        (10012, SparkServiceError, True),
        (10110, SparkServiceError, True),
        (12345, SparkServiceError, False),
    ],
)
async def test_error_frames_raise_their_class_with_context(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    code: int,
    error_class: type[SparkAPIError],
    retryable: bool,
) -> None:
    client = make_client(http_session, spark_simulator)
    with pytest.raises(error_class) as caught:
        await client.complete(ask(f"fail please [[error:{code}]]"), "u")
    error = caught.value
    record = spark_simulator.requests[-1]
    assert error.code == code
    assert error.retryable is retryable
    assert error.sid == record.sid
    assert error.sid
    assert error.model == "lite"
    assert error.server_message == record.error_message
    assert error.partial_text == ""
    assert f"Spark error {code}" in str(error)
    await wait_until(lambda: spark_simulator.open_streams == 0)


@pytest.mark.parametrize("code", [10005, 10013, 10014, 10019, 11200, 10907])
async def test_final_error_codes_are_not_retried(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession, code: int
) -> None:
    sleep = RecordingSleep()
    client = make_client(
        http_session, spark_simulator, retry=RetryPolicy(max_attempts=3), sleep=sleep
    )
    with pytest.raises(SparkAPIError) as caught:
        await client.complete(ask(f"q [[error:{code}]]"), "u")
    assert caught.value.code == code
    assert len(spark_simulator.requests) == 1
    assert sleep.delays == []


async def test_transient_errors_are_retried_with_jittered_backoff(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=8.0)
    client = make_client(http_session, spark_simulator, retry=policy, sleep=sleep, seed=11)
    spark_simulator.inject("error:10110", times=2)

    completion = await client.complete(ask("busy server?"), "u")

    assert completion.text == answer_text("busy server?", LITE)
    assert [record.error_code for record in spark_simulator.requests] == [10110, 10110, None]
    assert len(sleep.delays) == 2
    for retry, delay in enumerate(sleep.delays, start=1):
        low, high = policy.bounds(retry)
        assert low <= delay <= high
    assert policy.bounds(1) == (0.25, 0.5)
    assert policy.bounds(2) == (0.5, 1.0)
    rng = random.Random(11)
    assert sleep.delays == [policy.delay(1, rng), policy.delay(2, rng)]


async def test_retries_stop_after_max_attempts(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = make_client(
        http_session, spark_simulator, retry=RetryPolicy(max_attempts=3), sleep=sleep
    )
    spark_simulator.inject("error:11203", times=5)
    with pytest.raises(SparkRateLimited) as caught:
        await client.complete(ask("limited"), "u")
    assert caught.value.code == 11203
    assert caught.value.sid == spark_simulator.requests[2].sid
    assert len(spark_simulator.requests) == 3
    assert len(sleep.delays) == 2


def test_backoff_delays_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=8.0)
    rng = random.Random(3)
    for retry in range(1, 200):
        low, high = policy.bounds(retry)
        assert high <= 8.0
        assert low == high / 2
        assert low <= policy.delay(retry, rng) <= high
    assert policy.bounds(10) == (4.0, 8.0)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=2, max_delay=1)


async def test_no_retry_when_the_backoff_would_pass_the_total_budget(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = make_client(
        http_session,
        spark_simulator,
        retry=RetryPolicy(max_attempts=3, base_delay=5, max_delay=5),
        timeouts=SparkTimeouts(total=1.0),
        sleep=sleep,
    )
    spark_simulator.inject("error:10110", times=3)
    with pytest.raises(SparkServiceError):
        await client.complete(ask("q"), "u")
    assert sleep.delays == []
    assert len(spark_simulator.requests) == 1


async def test_failure_after_text_is_raised_with_the_partial_answer_not_retried(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = make_client(
        http_session, spark_simulator, retry=RetryPolicy(max_attempts=3), sleep=sleep
    )
    events: list[StreamEvent] = []
    error = await stream_until_error(client, "tell me [[error-after:10110:2]]", events)

    assert isinstance(error, SparkServiceError)
    assert error.retryable
    record = spark_simulator.requests[-1]
    assert error.partial_text == text_of(events) == record.answer_text
    assert len(error.partial_text) == 16
    assert error.sid == record.sid
    assert len(spark_simulator.requests) == 1
    assert sleep.delays == []


async def test_mid_stream_close_raises_transport_error_with_the_partial_answer(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = make_client(
        http_session, spark_simulator, retry=RetryPolicy(max_attempts=3), sleep=sleep
    )
    events: list[StreamEvent] = []
    error = await stream_until_error(client, "cut me off [[close-after:2]]", events)

    assert type(error) is SparkTransportError
    record = spark_simulator.requests[-1]
    assert record.closed_abruptly
    full = answer_text("cut me off", LITE)
    assert error.partial_text == full[:16] == text_of(events) == record.answer_text
    assert [event for event in events if isinstance(event, TextDelta)] == [
        TextDelta(full[:8]),
        TextDelta(full[8:16]),
    ]
    assert error.sid == record.sid
    assert error.model == "lite"
    assert "closed before the last frame" in str(error)
    assert len(spark_simulator.requests) == 1
    assert sleep.delays == []


@pytest.mark.parametrize("fault", ["close-after:0", "error:11202", "hang"])
async def test_failures_before_any_text_are_retried(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession, fault: str
) -> None:
    sleep = RecordingSleep()
    client = make_client(
        http_session,
        spark_simulator,
        retry=RetryPolicy(max_attempts=3),
        sleep=sleep,
        timeouts=SparkTimeouts(first_frame=0.2),
    )
    spark_simulator.inject(fault)
    completion = await client.complete(ask("second time lucky"), "u")
    assert completion.text == answer_text("second time lucky", LITE)
    assert len(spark_simulator.requests) == 2
    assert len(sleep.delays) == 1


async def test_a_connection_dropped_before_the_upgrade_is_tried_again(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    # aiohttp itself retries an idempotent request once when the server drops it unanswered;
    # the client's own retry covers the second drop.
    sleep = RecordingSleep()
    client = make_client(
        http_session, spark_simulator, retry=RetryPolicy(max_attempts=3), sleep=sleep
    )
    spark_simulator.inject("close-before-upgrade", times=2)
    completion = await client.complete(ask("still there?"), "u")
    assert completion.text == answer_text("still there?", LITE)
    assert [record.handshake_status for record in spark_simulator.requests] == [None, None, 101]
    assert len(sleep.delays) == 1


async def test_wrong_secret_is_refused_with_the_gateways_message(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    demo = Credentials.demo()
    sleep = RecordingSleep()
    client = make_client(
        http_session,
        spark_simulator,
        credentials=Credentials(demo.app_id, demo.api_key, "not-the-secret-0000000000000000"),
        retry=RetryPolicy(max_attempts=3),
        sleep=sleep,
    )
    with pytest.raises(SparkAuthError) as caught:
        await client.complete(ask("hello"), "u")
    error = caught.value
    assert error.status == 401
    assert error.server_message == "HMAC signature does not match"
    assert not error.retryable
    assert error.model == "lite"
    assert not error.is_clock_skew
    assert sleep.delays == []
    assert {record.handshake_status for record in spark_simulator.requests} == {401}


async def test_unknown_key_is_refused_with_the_gateways_message(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    demo = Credentials.demo()
    client = make_client(
        http_session,
        spark_simulator,
        credentials=Credentials(demo.app_id, "no-such-key", demo.api_secret),
    )
    with pytest.raises(SparkAuthError) as caught:
        await client.complete(ask("hello"), "u")
    assert caught.value.status == 401
    assert caught.value.server_message == (
        "HMAC signature cannot be verified: fail to retrieve credential"
    )


async def test_clock_skew_is_reported_as_such(
    make_spark_simulator: SimulatorFactory, http_session: aiohttp.ClientSession
) -> None:
    simulator = await make_spark_simulator(
        clock=lambda: datetime.now(UTC) + timedelta(seconds=400)
    )
    client = make_client(http_session, simulator)
    with pytest.raises(SparkAuthError) as caught:
        await client.complete(ask("what time is it?"), "u")
    error = caught.value
    assert error.status == 403
    assert error.is_clock_skew
    assert "a valid date or x-date header is required" in error.server_message


async def test_ip_refusal_is_reported_as_such(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    # aiohttp drops a refused handshake's body; the client reads the refusal back with one
    # more request, which the simulator scripts too.
    spark_simulator.inject("handshake-403-ip", times=2)
    with pytest.raises(SparkAuthError) as caught:
        await client.complete(ask("hello"), "u")
    assert caught.value.status == 403
    assert caught.value.is_ip_denied
    assert caught.value.server_message == "Your IP address is not allowed"


async def test_a_refusal_that_does_not_repeat_still_reports_its_status(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(http_session, spark_simulator)
    spark_simulator.inject("handshake-403-ip", times=1)
    with pytest.raises(SparkAuthError) as caught:
        await client.complete(ask("hello"), "u")
    assert caught.value.status == 403
    assert caught.value.server_message == "HTTP 403"


async def test_unknown_path_is_a_final_transport_error(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    client = make_client(
        http_session,
        spark_simulator,
        url_override=spark_simulator.base_url + "/v9/nowhere",
        retry=RetryPolicy(max_attempts=3),
    )
    with pytest.raises(SparkTransportError) as caught:
        await client.complete(ask("hello"), "u")
    assert "HTTP 404" in str(caught.value)
    assert not caught.value.retryable
    assert len(spark_simulator.requests) == 1


async def test_connect_timeout_on_a_server_that_never_answers(
    http_session: aiohttp.ClientSession,
) -> None:
    with socket.socket() as listener:
        # The kernel completes the TCP handshake; nobody ever reads the upgrade request.
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        client = make_client(
            http_session,
            None,
            url_override=f"ws://127.0.0.1:{port}",
            timeouts=SparkTimeouts(connect=0.3, first_frame=5, idle=5, total=10),
        )
        started = asyncio.get_running_loop().time()
        with pytest.raises(SparkTimeout) as caught:
            await client.complete(ask("anyone?"), "u")
        elapsed = asyncio.get_running_loop().time() - started
    assert caught.value.phase == "connect"
    assert caught.value.seconds == 0.3
    assert caught.value.retryable
    assert 0.25 < elapsed < 1.5


async def test_refused_connection_is_a_retryable_transport_error(
    http_session: aiohttp.ClientSession,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = RecordingSleep()
    client = make_client(
        http_session,
        None,
        url_override=f"ws://127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=2),
        sleep=sleep,
    )
    with pytest.raises(SparkTransportError) as caught:
        await client.complete(ask("anyone?"), "u")
    assert not isinstance(caught.value, SparkTimeout)
    assert "could not connect" in str(caught.value)
    assert caught.value.retryable
    assert len(sleep.delays) == 1


@pytest.mark.parametrize(
    ("question", "timeouts", "phase", "seconds", "partial_frames"),
    [
        (
            "slow [[slow-first:3]]",
            SparkTimeouts(connect=2, first_frame=0.2, idle=5, total=10),
            "first_frame",
            0.2,
            0,
        ),
        (
            "stall [[hang-after:2]]",
            SparkTimeouts(connect=2, first_frame=5, idle=0.2, total=10),
            "idle",
            0.2,
            2,
        ),
        (
            "stall [[hang-after:1]]",
            SparkTimeouts(connect=2, first_frame=5, idle=5, total=0.4),
            "total",
            0.4,
            1,
        ),
    ],
)
async def test_stream_timeouts_name_their_phase(
    spark_simulator: SparkSimulator,
    http_session: aiohttp.ClientSession,
    question: str,
    timeouts: SparkTimeouts,
    phase: str,
    seconds: float,
    partial_frames: int,
) -> None:
    client = make_client(http_session, spark_simulator, timeouts=timeouts)
    events: list[StreamEvent] = []
    started = asyncio.get_running_loop().time()
    error = await stream_until_error(client, question, events)
    elapsed = asyncio.get_running_loop().time() - started

    assert isinstance(error, SparkTimeout)
    assert error.phase == phase
    assert error.seconds == seconds
    assert seconds * 0.9 < elapsed < seconds + 1.0
    record = spark_simulator.requests[-1]
    # The sid is known once a frame named it.
    assert error.sid == (record.sid if partial_frames else None)
    assert error.partial_text == text_of(events) == record.answer_text
    assert len(error.partial_text) == 8 * partial_frames
    assert f"({phase}, {seconds:g} s)" in str(error)
    await wait_until(lambda: spark_simulator.open_streams == 0, within=1.0)


class ScriptedServer:
    """A bare WebSocket server that sends fixed frames and records how the client closes."""

    def __init__(self, frames: Sequence[str], *, close_after: bool = False) -> None:
        self.frames = list(frames)
        self.close_after = close_after
        self.client_close_codes: list[int | None] = []
        self.requests: list[str] = []
        self.app = web.Application()
        self.app.router.add_get("/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        first = await ws.receive()
        self.requests.append(str(first.data))
        for frame in self.frames:
            await ws.send_str(frame)
        if self.close_after:
            await ws.close(code=aiohttp.WSCloseCode.OK)
            return ws
        message = await ws.receive(timeout=5)
        if message.type is aiohttp.WSMsgType.CLOSE:
            self.client_close_codes.append(int(message.data))
            await ws.close()
        return ws


async def serve(server: ScriptedServer) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"ws://127.0.0.1:{port}"


def frame(status: int, seq: int, text: str) -> str:
    """A text frame shaped like Spark's (§4.1), with usage on the last one."""
    usage = (
        ',"usage":{"text":{"question_tokens":1,"prompt_tokens":1,"completion_tokens":2,'
        '"total_tokens":3}}'
        if status == 2
        else ""
    )
    return (
        f'{{"header":{{"code":0,"message":"Success","sid":"cht0001@dx1","status":{status}}},'
        f'"payload":{{"choices":{{"status":{status},"seq":{seq},"text":[{{"content":"{text}",'
        f'"role":"assistant","index":0}}]}}{usage}}}}}'
    )


@pytest.mark.parametrize(
    ("frames", "close_after", "error_class", "partial"),
    [
        (["not json at all"], False, SparkProtocolError, ""),
        ([frame(0, 0, "Hello"), '{"header": {"code": "x"}}'], False, SparkProtocolError, "Hello"),
        ([frame(0, 0, "Hel"), frame(1, 1, "lo")], True, SparkTransportError, "Hello"),
    ],
)
async def test_bad_frames_and_early_clean_close(
    http_session: aiohttp.ClientSession,
    frames: list[str],
    close_after: bool,
    error_class: type[Exception],
    partial: str,
) -> None:
    server = ScriptedServer(frames, close_after=close_after)
    runner, url = await serve(server)
    try:
        client = make_client(
            http_session,
            None,
            url_override=url,
            timeouts=FAST,
            retry=RetryPolicy(max_attempts=3),
        )
        events: list[StreamEvent] = []
        error = await stream_until_error(client, "hello", events)
    finally:
        await runner.cleanup()
    assert type(error) is error_class
    assert isinstance(error, SparkTransportError | SparkProtocolError)
    assert error.partial_text == partial == text_of(events)
    assert error.model == "lite"
    # A protocol error is final; a close after text is not retried either.
    assert len(server.requests) == 1
    if error_class is SparkProtocolError:
        assert server.client_close_codes == [1000]
        assert error.sid == ("cht0001@dx1" if partial else None)


async def test_client_closes_with_1000_after_the_last_frame(
    http_session: aiohttp.ClientSession,
) -> None:
    server = ScriptedServer([frame(0, 0, "Hi"), frame(1, 1, " there"), frame(2, 2, "!")])
    runner, url = await serve(server)
    try:
        client = make_client(
            http_session,
            None,
            url_override=url,
            timeouts=FAST,
        )
        completion = await client.complete(ask("hello"), "u")
    finally:
        await runner.cleanup()
    assert completion.text == "Hi there!"
    assert completion.sid == "cht0001@dx1"
    assert completion.usage.total_tokens == 3
    assert server.client_close_codes == [1000]


async def test_client_closes_with_1000_after_an_error_frame(
    http_session: aiohttp.ClientSession,
) -> None:
    error_frame = (
        '{"header":{"code":10013,"message":"InputAuditError:(10:00:00.000) blocked",'
        '"sid":"cht0002@dx1","status":2}}'
    )
    server = ScriptedServer([error_frame])
    runner, url = await serve(server)
    try:
        client = make_client(
            http_session,
            None,
            url_override=url,
            timeouts=FAST,
        )
        with pytest.raises(SparkContentBlocked) as caught:
            await client.complete(ask("hello"), "u")
    finally:
        await runner.cleanup()
    assert caught.value.sid == "cht0002@dx1"
    assert caught.value.server_message == "InputAuditError:(10:00:00.000) blocked"
    assert server.client_close_codes == [1000]


async def test_a_slow_consumer_is_not_an_idle_server(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    # Only the wait for the next frame counts against the idle budget, never the time the
    # consumer spends between frames (rendering, Telegram calls).
    client = make_client(
        http_session,
        spark_simulator,
        timeouts=SparkTimeouts(connect=2, first_frame=0.2, idle=0.2, total=10),
    )
    received: list[str] = []
    async with aclosing(client.stream(ask("take your time [[long:40]]"), "u")) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                received.append(event.text)
                await asyncio.sleep(0.15)
    assert "".join(received) == answer_text("take your time [[long:40]]", LITE)
    assert len(received) == 5


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # noqa: S603 (fixed arguments)
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_certificates_are_verified(
    http_session: aiohttp.ClientSession, self_signed: tuple[Path, Path]
) -> None:
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ScriptedServer([frame(2, 0, "never")])
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        sleep = RecordingSleep()
        client = make_client(
            http_session,
            None,
            url_override=f"wss://127.0.0.1:{port}",
            timeouts=FAST,
            retry=RetryPolicy(max_attempts=3),
            sleep=sleep,
        )
        with pytest.raises(SparkTransportError) as caught:
            await client.complete(ask("hello"), "u")
    finally:
        await runner.cleanup()
    # A self-signed certificate is refused, and retrying would not change that.
    assert "TLS failure" in str(caught.value)
    assert not caught.value.retryable
    assert sleep.delays == []
    assert server.requests == []


async def test_a_timeout_is_a_timeout_error_with_its_context(
    spark_simulator: SparkSimulator, http_session: aiohttp.ClientSession
) -> None:
    """Code that knows nothing of Spark handles its timeouts with ``except TimeoutError``."""
    client = make_client(http_session, spark_simulator, timeouts=SparkTimeouts(first_frame=0.2))
    spark_simulator.inject("hang")
    with pytest.raises(TimeoutError) as caught:
        await client.complete(ask("are you there?"), "u")
    error = caught.value
    assert isinstance(error, SparkTimeout)
    assert (error.phase, error.seconds, error.model) == ("first_frame", 0.2, LITE.name)
    assert str(error) == "Spark timed out (first_frame, 0.2 s)"
