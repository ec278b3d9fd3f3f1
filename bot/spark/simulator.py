"""A local Spark WebSocket server: the protocol of spark-protocol.md, answers made up on the spot.

Tests, demos and load benchmarks talk to :class:`SparkSimulator` over real sockets exactly as
they would talk to ``wss://spark-api.xf-yun.com``; any Spark client works, the official SDK
included (sign the ``ws://`` URL with the simulator's credentials). It serves every path in
:data:`bot.spark.models.DOMAINS_BY_PATH`, verifies the signed handshake (§2), validates the
request frame (§3) and streams a deterministic answer (§4): see :func:`answer_text`. Like
Spark, it answers one question per ``header.uid`` at a time: a request for a uid that is still
being answered gets error frame 10007.

Question markers, anywhere in the last user message, script one request; they are removed from
the question before it is answered. "Frames" counts every frame sent (plugins, reasoning and
answer frames alike); a cutoff at or beyond the answer's last frame fires after it.

``[[error:CODE]]``
    an error frame with ``CODE`` instead of an answer.
``[[error-after:CODE:N]]``
    the error frame after ``N`` frames (e.g. 10014 mid-answer).
``[[close-after:N]]``
    abort the TCP connection after ``N`` frames, without a close frame.
``[[hang]]`` / ``[[hang-after:N]]``
    accept the request and send nothing (more) until the client gives up.
``[[slow-first:SECONDS]]``
    wait that long before the first frame.
``[[long:N]]``
    an answer of exactly ``N`` characters: varied paragraphs, with a fenced code block
    when ``N`` > 2000.
``[[markdown]]``
    an answer with bold, italic, inline code, a list, a link and a fenced code block.
``[[answer:TEXT]]``
    the answer is exactly ``TEXT``.
``[[search]]``
    search this question: when the request enables ``web_search`` with ``show_ref_label``
    and the model returns sources (Max, 4.0 Ultra), a plugins frame of sources comes
    first. Questions about weather or news (天气, 新闻) search too.

Also scripted per request: a question naming a declared function (``payload.functions``, on a
model that supports functions) is answered by one function-call frame; X1 streams
``reasoning_content`` frames before its answer.

:meth:`SparkSimulator.inject` scripts the next connections from the server side, whatever they
ask: the markers above without brackets (``"error:10110"``, ``"close-after:2"``, ``"hang"``,
``"hang-after:2"``, ``"slow-first:2.5"``, ...) or a handshake fault: ``"handshake-401"``,
``"handshake-403-date"``, ``"handshake-403-ip"``, ``"unknown-key"``, ``"close-before-upgrade"``.

Limits (:class:`SimulatorOptions`): more open streams than ``max_concurrency`` earn 11203, more
accepted requests within the last second than ``max_qps`` earn 11202. The token budget check
(10907) is described at :func:`~bot.spark.simulator_requests.prompt_token_budget`.

After the last frame or an error frame the server closes with code 1000; a client's close
frame at any time ends the stream. Every task the server starts is cancelled by :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web

from bot.spark.models import DOMAINS_BY_PATH, MODELS, SparkModel
from bot.spark.simulator_content import (
    Script,
    answer_text,
    estimate_tokens,
    parse_fault,
    parse_markers,
)
from bot.spark.simulator_frames import SidFactory
from bot.spark.simulator_handshake import FORCED_REFUSALS, HandshakeRefusal, verify_handshake
from bot.spark.simulator_requests import RequestRejected, check_request, decode_request
from bot.spark.simulator_streams import Plan, RecordedRequest, Stream, error_plan, plan_answer

__all__ = [
    "Credentials",
    "RecordedRequest",
    "SimulatorOptions",
    "SparkSimulator",
    "answer_text",
    "banner",
    "estimate_tokens",
    "serve_forever",
]

logger = logging.getLogger("bot.spark.simulator")

CLOSE_BEFORE_UPGRADE: Final = "close-before-upgrade"
CLOSE_TIMEOUT: Final = 5.0  # how long a server-side close waits for the client's close frame
STOP_CLOSE_TIMEOUT: Final = 0.2  # stop() drops clients that do not answer its close sooner
NOT_FOUND: Final = "no Route matched with those values"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The app id and key pair the simulator accepts."""

    app_id: str
    api_key: str
    api_secret: str

    @classmethod
    def demo(cls) -> Credentials:
        """Fixed, well-known values for local use."""
        return cls(
            app_id="demo0001",
            api_key="demo-api-key-0000000000000000000",
            api_secret="demo-api-secret-0000000000000000",  # noqa: S106 (public demo value)
        )


@dataclass(slots=True)
class SimulatorOptions:
    first_frame_delay: float = 0.0  # seconds before the first frame
    frame_interval: float = 0.0  # seconds between frames (0 = as fast as possible)
    chars_per_frame: int = 8  # answer characters per frame
    max_concurrency: int | None = None  # open streams over this -> error frame 11203
    max_qps: float | None = None  # requests/s over this -> error frame 11202
    date_window: float = 300.0  # allowed clock skew, seconds
    request_timeout: float = 60.0  # wait for the request frame, then close
    max_recorded: int | None = None  # keep only about this many RecordedRequests (long runs)
    # Spark answers one question per uid at a time: another request for a uid still being
    # answered gets error frame 10007 (UserFlowLimitError).
    one_answer_per_uid: bool = True


class SparkSimulator:
    """An in-process Spark server on a real socket; see the module docstring."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        options: SimulatorOptions | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.credentials = credentials or Credentials.demo()
        self.options = options or SimulatorOptions()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.requests: list[RecordedRequest] = []
        self._by_sid: dict[str, RecordedRequest] = {}
        self._faults: deque[tuple[str, Script | None]] = deque()
        self._sockets: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepted: deque[float] = deque()
        self._answering: dict[str, RecordedRequest] = {}  # uid -> the request answering it
        self._sid = SidFactory()
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self.app = web.Application()
        self.app.router.add_get("/{tail:.*}", self._handle)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host``:``port`` (0 picks a free port; see :attr:`base_url`)."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=STOP_CLOSE_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._host = host

    async def stop(self) -> None:
        """Cancel every stream, close every socket (1001) and the listening socket."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await self._cancel_streams()
        sockets = list(self._sockets)
        if sockets:
            await asyncio.wait([asyncio.create_task(self._going_away(ws)) for ws in sockets])
        await runner.cleanup()
        # A request that arrived while the sockets were closing may have started one more.
        await self._cancel_streams()

    async def _cancel_streams(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    @staticmethod
    async def _going_away(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), STOP_CLOSE_TIMEOUT)

    async def __aenter__(self) -> SparkSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- public helpers ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self._port}"

    def url_for(self, model: SparkModel) -> str:
        return self.base_url + model.path

    @property
    def open_streams(self) -> int:
        """Connections upgraded and not yet finished."""
        return len(self._sockets)

    def answer_for_sid(self, sid: str) -> str:
        """The answer text streamed for ``sid``; KeyError names the sid when it is unknown."""
        try:
            return self._by_sid[sid].answer_text
        except KeyError:
            raise KeyError(f"no simulated stream has sid {sid!r}") from None

    def request_for_sid(self, sid: str) -> RecordedRequest:
        """Everything recorded about the connection that used ``sid``."""
        return self._by_sid[sid]

    def inject(self, fault: str, times: int = 1) -> None:
        """Script the next ``times`` connections with ``fault`` (see the module docstring).

        aiohttp's client retries a GET once when the server drops a fresh connection before
        answering, so ``"close-before-upgrade"`` needs ``times=2`` to reach an aiohttp caller.
        """
        if fault in FORCED_REFUSALS or fault == CLOSE_BEFORE_UPGRADE:
            script = None
        else:
            script = parse_fault(fault)
            if script is None:
                raise ValueError(f"unknown simulator fault {fault!r}")
        for _ in range(times):
            self._faults.append((fault, script))

    # -- connection handling -----------------------------------------------------------------

    def _remember(self, record: RecordedRequest) -> None:
        self.requests.append(record)
        limit = self.options.max_recorded
        if limit is not None and len(self.requests) > 2 * limit:
            dropped, self.requests[:] = self.requests[:-limit], self.requests[-limit:]
            for old in dropped:
                if old.sid is not None:
                    self._by_sid.pop(old.sid, None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = RecordedRequest(path=request.path)
        self._remember(record)
        if request.path not in DOMAINS_BY_PATH:
            return self._refuse(record, HandshakeRefusal(404, NOT_FOUND))
        fault, script = self._faults.popleft() if self._faults else (None, None)
        record.fault = fault
        if fault == CLOSE_BEFORE_UPGRADE:
            record.closed_abruptly = True
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        refusal = FORCED_REFUSALS.get(fault or "") or self._verify(request)
        if refusal is not None:
            logger.info(
                "handshake refused on %s: %d %s", request.path, refusal.status, refusal.message
            )
            return self._refuse(record, refusal)
        ws = web.WebSocketResponse(compress=False, timeout=CLOSE_TIMEOUT)
        if not ws.can_prepare(request).ok:
            return self._refuse(record, HandshakeRefusal(400, "not a websocket upgrade"))
        await ws.prepare(request)
        record.handshake_status = 101
        self._sockets.add(ws)
        try:
            await self._converse(ws, request, record, script)
        finally:
            self._sockets.discard(ws)
        return ws

    def _verify(self, request: web.Request) -> HandshakeRefusal | None:
        now = self._clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return verify_handshake(
            dict(request.query),
            host_header=request.host,
            path=request.path,
            api_key=self.credentials.api_key,
            api_secret=self.credentials.api_secret,
            now=now,
            window=self.options.date_window,
        )

    @staticmethod
    def _refuse(record: RecordedRequest, refusal: HandshakeRefusal) -> web.Response:
        record.handshake_status = refusal.status
        record.handshake_message = refusal.message
        return web.Response(
            status=refusal.status,
            text=json.dumps({"message": refusal.message}),
            content_type="text/plain",
            charset="utf-8",
        )

    async def _converse(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        record: RecordedRequest,
        injected: Script | None,
    ) -> None:
        try:
            message = await ws.receive(timeout=self.options.request_timeout)
        except TimeoutError:
            await ws.close()
            return
        if message.type is WSMsgType.BINARY:
            raw: str | bytes = message.data
        elif message.type is WSMsgType.TEXT:
            raw = message.data
        else:
            return
        stream = Stream(ws, request, record)
        plan = self._plan(raw, record, injected)
        task = asyncio.create_task(
            stream.play(plan, frame_interval=self.options.frame_interval, clock=self._clock)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            async for _ in ws:
                pass  # frames after the request mean nothing to Spark
        finally:
            if not task.done() and not stream.closing:
                record.client_closed_early = True
                task.cancel()
            await asyncio.wait({task})
            self._release_uid(record)
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error

    def _plan(self, raw: str | bytes, record: RecordedRequest, injected: Script | None) -> Plan:
        record.sid = sid = self._sid()
        self._by_sid[sid] = record
        try:
            record.request = decode_request(raw)
            valid = check_request(record.request, record.path, self.credentials.app_id)
        except RequestRejected as exc:
            logger.info("request rejected on %s: %d %s", record.path, exc.code, exc.detail)
            record.model = exc.model
            return error_plan(exc.code, exc.detail)
        record.model = valid.model
        text, script = parse_markers(valid.question)
        if injected is not None:
            script = script.merged(injected)
        if not self._claim_uid(record):
            return error_plan(10007, "the previous question of this uid is still being answered")
        limited = self._over_limits()
        if limited is not None:
            return error_plan(limited)
        return plan_answer(
            valid,
            text,
            script,
            record,
            sid=sid,
            chars_per_frame=self.options.chars_per_frame,
            first_frame_delay=self.options.first_frame_delay,
        )

    def _claim_uid(self, record: RecordedRequest) -> bool:
        """False when the request's uid is already being answered (see ``one_answer_per_uid``)."""
        uid = _uid_of(record)
        if not self.options.one_answer_per_uid or uid is None:
            return True
        if uid in self._answering:
            logger.info("request refused on %s: uid busy (10007)", record.path)
            return False
        self._answering[uid] = record
        return True

    def _release_uid(self, record: RecordedRequest) -> None:
        uid = _uid_of(record)
        if uid is not None and self._answering.get(uid) is record:
            del self._answering[uid]

    def _over_limits(self) -> int | None:
        """11203 / 11202 when a licence limit is exceeded; counts the request otherwise."""
        options = self.options
        if options.max_concurrency is not None and len(self._sockets) > options.max_concurrency:
            return 11203
        now = asyncio.get_running_loop().time()
        accepted = self._accepted
        while accepted and now - accepted[0] >= 1.0:
            accepted.popleft()
        if options.max_qps is not None and len(accepted) >= options.max_qps:
            return 11202
        accepted.append(now)
        return None


def _uid_of(record: RecordedRequest) -> str | None:
    header = (record.request or {}).get("header") or {}
    uid = header.get("uid")
    return uid if isinstance(uid, str) else None


async def serve_forever(host: str, port: int, credentials: Credentials) -> None:
    """Serve until cancelled (Ctrl-C or SIGTERM), after printing the credentials and the URLs."""
    simulator = SparkSimulator(credentials, SimulatorOptions(max_recorded=1000))
    await simulator.start(host, port)
    try:
        print(banner(simulator), flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, stopped.set)
        except (NotImplementedError, RuntimeError):  # not on this platform / thread
            await asyncio.Future()
        try:
            await stopped.wait()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
    finally:
        await simulator.stop()


def banner(simulator: SparkSimulator) -> str:
    """What ``python -m bot simulator`` prints: address, credentials, one URL per model."""
    creds = simulator.credentials
    lines = [
        f"Spark simulator listening on {simulator.base_url}",
        f"  app_id:     {creds.app_id}",
        f"  api_key:    {creds.api_key}",
        f"  api_secret: {creds.api_secret}",
        "Point the bot at it with:",
        f"  SPARK_URL={simulator.base_url} SPARK_APP_ID={creds.app_id} "
        f"SPARK_API_KEY={creds.api_key} SPARK_API_SECRET={creds.api_secret}",
        "Models (URL, domain):",
    ]
    width = max(len(model.name) for model in MODELS)
    for model in MODELS:
        lines.append(f"  {model.name:<{width}}  {simulator.url_for(model)}  {model.domain}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)
