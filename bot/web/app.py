"""The OpenAI-compatible HTTP API: its routes, and ``python -m bot web``, which serves them.

:class:`Gateway` answers ``POST /v1/chat/completions`` and ``GET /v1/models``; it mounts on
any aiohttp application, the bot's own web app included (``HTTP_API_ENABLED``). Each
request is, in order: authenticated (:mod:`bot.web.keys`), bounded (body size, message
count), checked and mapped (:mod:`bot.web.openai_request`), admitted by the service (prompt
budget, the key's rate, the user's quota and rate), and only then sent to Spark. Every
refusal and failure is OpenAI's error envelope (:mod:`bot.web.errors`).

The runner cancels a handler whose client hung up (``handler_cancellation``), which cancels
its Spark stream at once; the service stores that request's ledger row as abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from bot.config import Settings
from bot.health import healthz
from bot.service.completions import (
    Admitted,
    ApiCaller,
    CompletionRequest,
    CompletionService,
)
from bot.service.conversation import ConversationService
from bot.service.events import SparkCall
from bot.service.limits import UsageLimits
from bot.service.web_conversations import WebConversations
from bot.shared_state import SharedState, open_shared_state
from bot.spark.client import SparkClient
from bot.spark.models import get_model
from bot.startup_failures import database_failures, listen_failures
from bot.web.conversations_api import ConversationApi
from bot.web.demo import demo_settings
from bot.web.errors import SID_HEADER, ApiError, api_error
from bot.web.keys import Unauthorized, authenticate
from bot.web.metrics import Metrics
from bot.web.openai_request import (
    ChatRequest,
    InvalidRequest,
    model_not_found,
    parse_chat_request,
)
from bot.web.openai_stream import (
    ChunkFormat,
    CollectingSink,
    SseSink,
    completion_body,
    ends_as_answer,
    new_completion_id,
)
from bot.web.page import ChatPage
from bot.web.tickets import Tickets
from bot.web.ws import WebSocketApi
from storage.database import Database, create_database
from storage.migrate import upgrade

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHAT_ROUTE = "/v1/chat/completions"
MODELS_ROUTE = "/v1/models"
# How long shutdown waits for cancelled requests to store their ledger rows.
WAIT_CLOSED_SECONDS = 5.0


class Gateway:
    """The routes of the OpenAI-compatible API over the service."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        completions: CompletionService,
        metrics: Metrics,
        conversations: WebConversations | None = None,
        page: ChatPage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._conversations = conversations
        self._page = page
        self._shutdown_began: float | None = None
        self._api = settings.http_api
        self._db = database
        self._completions = completions
        self.metrics = metrics
        self._clock = clock
        # Requests being handled: shutdown waits for them to store their ledger rows before
        # the database closes (the runner may give up on a cancelled handler sooner).
        self._handling: set[asyncio.Task[Any]] = set()

    def mount(self, app: web.Application) -> None:
        """Add the API's routes (and ``/metrics``) to ``app``."""
        app.router.add_post(CHAT_ROUTE, self._counted(CHAT_ROUTE, self.chat_completions))
        app.router.add_get(MODELS_ROUTE, self._counted(MODELS_ROUTE, self.models))
        app.router.add_get("/metrics", self._counted("/metrics", self.metrics.handler))
        if self._conversations is not None:
            ConversationApi(
                settings=self._settings, database=self._db, conversations=self._conversations
            ).mount(app, self._counted)
            WebSocketApi(
                database=self._db, conversations=self._conversations, tickets=Tickets()
            ).mount(app, self._counted)
        if self._page is not None:
            self._page.mount(app)

    async def start(self) -> None:
        """Join the other processes serving the API, if any (the conversations' lanes)."""
        if self._conversations is not None:
            await self._conversations.start()

    def begin_shutdown(self) -> None:
        self._completions.begin_shutdown()
        if self._conversations is not None and self._shutdown_began is None:
            self._conversations.begin_shutdown()
            self._shutdown_began = time.monotonic()

    def telegram_call(self, method: str, status: int) -> None:
        self.metrics.telegram_call(method, status)

    def spark_call(self, call: SparkCall) -> None:
        """Count a Spark request another front end (Telegram) made."""
        self.metrics.spark_call(call)

    async def wait_closed(self, timeout: float = WAIT_CLOSED_SECONDS) -> None:  # noqa: ASYNC109
        """Wait for requests still being handled (after the server stopped serving), and for
        conversation answers, which get what is left of the shutdown grace."""
        if self._conversations is not None:
            began = self._shutdown_began or time.monotonic()
            grace = self._settings.telegram.shutdown_grace_seconds
            left = max(0.0, grace - (time.monotonic() - began))
            await self._conversations.shutdown(left)
        handling = [task for task in self._handling if task is not asyncio.current_task()]
        if handling:
            await asyncio.wait(handling, timeout=timeout)

    def _counted(self, route: str, handler: Handler) -> Handler:
        async def counted(request: web.Request) -> web.StreamResponse:
            status = 500
            task = asyncio.current_task()
            if task is not None:
                self._handling.add(task)
                task.add_done_callback(self._handling.discard)
            try:
                response = await handler(request)
                status = response.status
                return response
            except asyncio.CancelledError:
                status = 499  # the client closed the connection (nginx's convention)
                raise
            finally:
                self.metrics.request(route, status)

        return counted

    # -- GET /v1/models ----------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = await authenticate(self._db, request)
        except Unauthorized as exc:
            return _error_response(exc.error)
        data = []
        for name in self._settings.spark.enabled_models:
            model = get_model(name)
            if not caller.may_use(model):
                continue
            data.append(
                {
                    "id": model.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "iflytek",
                    "name": model.title,
                    "domain": model.domain,
                    "context_length": model.context_tokens,
                    "max_output_tokens": model.max_tokens_limit,
                    "supports_tools": model.supports_functions,
                    "reasoning": model.reasoning,
                }
            )
        return web.json_response({"object": "list", "data": data})

    # -- POST /v1/chat/completions -----------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        caller: ApiCaller | None = None
        try:
            caller = await authenticate(self._db, request)
            body = await self._read_json(request)
            chat = parse_chat_request(
                body,
                enabled_models=self._settings.spark.enabled_models,
                max_messages=self._api.max_messages,
            )
            if not caller.may_use(chat.model):
                raise model_not_found(str(body.get("model")))
            admitted = await self._completions.admit(
                caller,
                CompletionRequest(chat.model, chat.messages, chat.options, chat.user),
            )
        except Unauthorized as exc:
            return _error_response(exc.error)
        except Exception as exc:
            error = api_error(exc)
            name = caller.key_name if caller is not None else "?"
            level = logging.WARNING if error.status >= 500 else logging.INFO
            log.log(level, "api key %s: refused %d %s: %s", name, error.status, error.code, exc)
            return _error_response(error)
        if chat.stream:
            return await self._stream(request, admitted, chat)
        return await self._complete(admitted, chat)

    async def _read_json(self, request: web.Request) -> Any:
        limit = self._api.max_body_bytes
        too_large = InvalidRequest(
            f"The request body is over {limit} bytes.", code="request_too_large", status=413
        )
        if (request.content_length or 0) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            raise InvalidRequest("The request body is not valid JSON.") from None

    async def _complete(self, admitted: Admitted, chat: ChatRequest) -> web.StreamResponse:
        sink = CollectingSink()
        outcome = await self._completions.run(admitted, sink)
        ending = sink.ending
        headers = {SID_HEADER: outcome.sid} if outcome.sid else {}
        if ending is None or not ends_as_answer(ending, sink.started):
            error = (
                api_error(ending.error)
                if ending is not None and hasattr(ending, "error")
                else ApiError(502, "Spark gave no answer.", "server_error")
            )
            return _error_response(error)
        body = completion_body(
            sink,
            completion_id=new_completion_id(),
            created=int(self._clock()),
            model=chat.model.name,
            max_tokens=admitted.max_tokens,
        )
        return web.json_response(body, headers=headers, dumps=_dumps)

    async def _stream(
        self, request: web.Request, admitted: Admitted, chat: ChatRequest
    ) -> web.StreamResponse:
        fmt = ChunkFormat(
            new_completion_id(), int(self._clock()), chat.model.name, chat.include_usage
        )
        sink = SseSink(
            request, fmt, max_tokens=admitted.max_tokens, keepalive=self._api.keepalive_seconds
        )
        self.metrics.streams.inc()
        try:
            await self._completions.run(admitted, sink, on_sid=sink.name_session)
        finally:
            self.metrics.streams.dec()
            await sink.aclose()
        if sink.failure is not None:
            return _error_response(api_error(sink.failure.error))
        if sink.response is None:  # the client left before anything was written
            return web.Response(status=499)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await sink.response.write_eof()
        return sink.response


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _error_response(error: ApiError) -> web.Response:
    return web.json_response(
        error.body(), status=error.status, headers=error.headers(), dumps=_dumps
    )


# -- python -m bot web -----------------------------------------------------------------------


class WebRuntime:
    """The HTTP front end alone: the gateway, ``/healthz`` and ``/metrics`` on HOST:PORT."""

    def __init__(self, gateway: Gateway, database: Database, runner: web.AppRunner) -> None:
        self.gateway = gateway
        self.database = database
        self.runner = runner
        self._stop = asyncio.Event()

    @property
    def port(self) -> int:
        return int(self.runner.addresses[0][1])

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        await self._stop.wait()
        self.gateway.begin_shutdown()


def build_gateway(
    settings: Settings,
    database: Database,
    spark: SparkClient,
    limits: UsageLimits,
    shared: SharedState | None = None,
    *,
    demo_key: str | None = None,
) -> Gateway:
    """The gateway, the conversation API and the chat page over parts built elsewhere (the
    bot's, when it serves the API too); with ``shared``, the conversations' answers take turns
    with every process serving the API."""
    metrics = Metrics()
    conversations = WebConversations(
        database=database,
        conversations=ConversationService(
            database=database,
            spark=spark,
            spark_settings=settings.spark,
            admission=limits,
            observer=metrics,
            front_end="web",
        ),
        resume_grace=settings.http_api.resume_grace_seconds,
        lanes=(lambda takeover: shared.lanes("web", takeover)) if shared is not None else None,
    )
    completions = CompletionService(
        database=database,
        spark=spark,
        admission=limits,
        store_bodies=settings.http_api.store_bodies,
        observer=metrics,
        shared=limits.shared,
    )
    return Gateway(
        settings=settings,
        database=database,
        completions=completions,
        metrics=metrics,
        conversations=conversations,
        page=ChatPage(demo_key=demo_key),
    )


@asynccontextmanager
async def open_web_runtime(
    settings: Settings, *, demo_key: str | None = None
) -> AsyncIterator[WebRuntime]:
    """Build the HTTP front end, listen, and close everything in reverse on the way out;
    streams still open at the end get ``SHUTDOWN_GRACE_SECONDS`` to finish."""
    telegram = settings.telegram
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        with database_failures(settings.database.url):
            await upgrade(settings.database.url)
            database = create_database(settings.database.url)
        stack.push_async_callback(database.dispose)
        spark = SparkClient(session, settings.spark.client_options())
        shared = await stack.enter_async_context(open_shared_state(settings.redis))
        limits = UsageLimits(
            database,
            settings.limits,
            admin_user_ids=telegram.admin_user_ids,
            shared=shared.limits if shared is not None else None,
        )
        gateway = build_gateway(settings, database, spark, limits, shared, demo_key=demo_key)
        await gateway.start()
        app = web.Application()  # bodies are read under HTTP_API_MAX_BODY_BYTES instead
        gateway.mount(app)
        app.router.add_get("/healthz", healthz(database, shared))
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=telegram.shutdown_grace_seconds,
        )
        await runner.setup()
        stack.push_async_callback(gateway.wait_closed)  # after the runner, before the database
        stack.push_async_callback(runner.cleanup)
        with listen_failures(telegram.host, telegram.port):
            await web.TCPSite(runner, telegram.host, telegram.port).start()
        runtime = WebRuntime(gateway, database, runner)
        log.info(
            "HTTP API on %s:%d (models %s)",
            telegram.host,
            runtime.port,
            ", ".join(settings.spark.enabled_models),
        )
        yield runtime
        gateway.begin_shutdown()


def freeze_startup_heap() -> None:
    """Leave what start-up built (modules, settings, the application) out of every later
    garbage collection. A full collection walks every object tracked, and with hundreds of
    open streams it came every few seconds and paused every stream for 50–100 ms at once
    (benchmarks/RESULTS.md); what start-up built lives as long as the process anyway."""
    gc.collect()
    gc.freeze()


async def serve(settings: Settings, *, simulate: bool = False, out: TextIO = sys.stdout) -> int:
    """``python -m bot web [--simulate]``: serve until SIGTERM / SIGINT."""
    if simulate:
        async with demo_settings(settings) as demo:
            return await _serve(demo.settings, out, demo_key=demo.key)
    settings.spark.require_credentials()
    return await _serve(settings, out)


async def _serve(settings: Settings, out: TextIO, *, demo_key: str | None = None) -> int:
    async with open_web_runtime(settings, demo_key=demo_key) as runtime:
        freeze_startup_heap()
        host = settings.telegram.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        print(f"Chat page: http://{shown}:{runtime.port}/", file=out)
        if demo_key is not None:
            print(
                "Spark simulator (no credentials); history in a temporary file. "
                f"Demo key (this machine only): {demo_key}",
                file=out,
            )
        out.flush()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, runtime.request_stop)
        await runtime.serve()
    return 0
