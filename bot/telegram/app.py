"""Composition root: builds the bot's long-lived objects, runs it, and closes them in reverse.

One aiohttp ClientSession (Spark), one Database (its repositories and the runner of their units
of work), one python-telegram-bot Application, created together under an AsyncExitStack.
Production and tests wire the same objects: tests point ``TELEGRAM_API_BASE_URL`` at a Bot API
fake and ``SPARK_URL`` at the simulator.

Updates arrive by long polling, or by webhook when ``WEBHOOK_URL`` is set: then an aiohttp web
app on ``PORT`` receives them, checking ``X-Telegram-Bot-Api-Secret-Token`` and refusing
bodies that are not updates (:mod:`bot.telegram.webhook_input`), and answers ``/healthz``: 200,
or 503 with the reason while the database cannot be used. With ``HTTP_API_ENABLED`` the same web
app also serves the HTTP API, built by the command line (:data:`WebRoutesFactory`), in polling
mode too. A setting that cannot work stops the start with a
:class:`~bot.errors.StartupError` (:mod:`bot.startup_failures`).

Shutdown (SIGTERM / SIGINT): stop taking updates, give answers in flight
``SHUTDOWN_GRACE_SECONDS`` to finish, then interrupt the rest, which end with a visible note and
are stored as partial.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from telegram import Update
from telegram.ext import Application, ApplicationBuilder

from bot.config import Settings, TelegramSettings
from bot.health import healthz
from bot.service.clock import SYSTEM_CLOCK, Clock
from bot.service.conversation import ConversationService
from bot.service.events import NO_OBSERVER, SparkCallObserver
from bot.service.lanes import ConversationLanes, LocalLanes
from bot.service.limits import UsageLimits
from bot.shared_state import SharedState, open_shared_state
from bot.spark.client import SparkClient
from bot.startup_failures import database_failures, listen_failures
from bot.telegram.access import AccessPolicy
from bot.telegram.access_gate import AccessGate
from bot.telegram.addressing import BotIdentity
from bot.telegram.admin import AdminHandlers
from bot.telegram.bot_api_request import AiohttpRequest
from bot.telegram.call_counting import CountingRequest
from bot.telegram.dedup import UpdateDeduplicator
from bot.telegram.early_feedback import EarlyFeedback
from bot.telegram.generation_stop import STOPPED_GENERATION
from bot.telegram.handlers import TelegramHandlers
from bot.telegram.ptb_types import AnyApplication
from bot.telegram.send_budgets import SendBudgets
from bot.telegram.send_scheduler import SendScheduler
from bot.telegram.shared_send_budget import shared_send_budget
from bot.telegram.startup_failures import telegram_failures, webhook_failures
from bot.telegram.takeover import OrphanedQuestions
from bot.telegram.update_order import PerChatUpdateProcessor
from bot.telegram.webhook_input import MAX_UPDATE_BYTES, NotAnUpdate, parse_update
from storage.database import Database, create_database
from storage.migrate import upgrade

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
SETUP_HINT = """\
TELEGRAM_BOT_TOKEN is not set, so the Telegram bot cannot start.

Get a token from @BotFather and put it in the environment or in .env:
    TELEGRAM_BOT_TOKEN=123456:ABC...

Meanwhile you can talk to Spark without Telegram:
    make run                         (the web chat in a browser; on a local Spark
                                      simulator when there are no Spark credentials)
    python -m bot web --simulate     (the same web chat, the simulator always)
    python -m bot chat --simulate    (in this terminal, no credentials needed)
    python -m bot chat               (real Spark: set SPARK_APP_ID, SPARK_API_KEY and
                                      SPARK_API_SECRET)
"""


class WebRoutes(SparkCallObserver, Protocol):
    """Routes another front end serves from the bot's web app (the HTTP API); it also counts
    the bot's own Spark requests for its ``/metrics``."""

    def mount(self, app: web.Application) -> None: ...

    async def start(self) -> None:
        """Begin taking part beside other processes (before the first request)."""

    def begin_shutdown(self) -> None: ...

    def telegram_call(self, method: str, status: int) -> None:
        """Count one Bot API call (for ``/metrics``)."""

    async def wait_closed(self) -> None:
        """Wait for requests still being handled once the web app stopped."""


# Builds them over the bot's own parts; given by the command line, which knows both sides.
WebRoutesFactory = Callable[
    [Settings, Database, SparkClient, UsageLimits, SharedState | None], WebRoutes
]

# Updates handled at once. Handlers only wait on storage, but a question waiting for a place
# here gets no "typing…" either: room for a thousand people asking in the same second.
MAX_CONCURRENT_UPDATES = 4096

# Beside other processes, an answer left streaming this long without a checkpoint is taken as
# abandoned at start-up, in case its conversation's shared queue was lost with Redis.
STALE_ANSWER = timedelta(minutes=10)

# Every type ptb knows, plus the drafts' stop button, which ptb 22.8 does not.
ALLOWED_UPDATES = [*Update.ALL_TYPES, STOPPED_GENERATION]


class BotRuntime:
    """The running bot: the parts :func:`open_bot_runtime` built together, and how it serves."""

    def __init__(
        self,
        settings: Settings,
        *,
        database: Database,
        service: ConversationService,
        application: AnyApplication,
        lanes: ConversationLanes,
        scheduler: SendScheduler,
        webhook_secret: str,
        gateway: WebRoutes | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.shared = shared
        self.service = service
        self.application = application
        self.lanes = lanes
        self.scheduler = scheduler
        self.webhook_secret = webhook_secret
        self.gateway = gateway  # the HTTP API beside Telegram (HTTP_API_ENABLED)
        self._stop = asyncio.Event()
        self._web_runner: web.AppRunner | None = None

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self._stop.set()

    async def serve(self) -> None:
        """Take updates until :meth:`request_stop`, then shut down gracefully."""
        application = self.application
        telegram = self.settings.telegram
        await application.start()
        try:
            if telegram.webhook_url:
                await self._start_webhook(application)
            else:
                if self.gateway is not None:
                    await self._start_web_app(None)
                assert application.updater is not None
                await application.updater.start_polling(
                    allowed_updates=ALLOWED_UPDATES, poll_interval=0.0, timeout=10
                )
            log.info("taking updates by %s", "webhook" if telegram.webhook_url else "polling")
            await self._stop.wait()
            log.info(
                "shutting down: %d answers in flight, %d queued",
                self.lanes.running_count(),
                self.lanes.queued_count(),
            )
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if self.gateway is None:
                await self._close_webhook_server()
                self.service.begin_shutdown()
                await self.lanes.shutdown(telegram.shutdown_grace_seconds)
            else:  # API streams and Telegram answers share one grace period
                self.gateway.begin_shutdown()
                self.service.begin_shutdown()
                await asyncio.gather(
                    self._close_webhook_server(),
                    self.lanes.shutdown(telegram.shutdown_grace_seconds),
                )
        finally:
            await self._close_webhook_server()  # also when start-up failed half-way
            if application.running:
                await application.stop()

    async def _start_webhook(self, application: AnyApplication) -> None:
        telegram = self.settings.telegram
        assert telegram.webhook_url is not None
        await self._start_web_app(application)
        with webhook_failures(telegram.webhook_url, telegram.api_base_url):
            await application.bot.set_webhook(
                telegram.webhook_url,
                secret_token=self.webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
                max_connections=telegram.webhook_max_connections,
            )

    async def _start_web_app(self, application: AnyApplication | None) -> None:
        """The web app on HOST:PORT: the webhook (with ``application``), /healthz, and the
        HTTP API when enabled; then a handler whose client hung up is cancelled, which ends
        an API stream's Spark request at once."""
        telegram = self.settings.telegram
        # The API reads its bodies under a limit of its own (HTTP_API_MAX_BODY_BYTES).
        web_app = web.Application(client_max_size=MAX_UPDATE_BYTES)
        if application is not None and telegram.webhook_url:
            path = urlsplit(telegram.webhook_url).path or "/"
            web_app.router.add_post(path, self._webhook_handler(application))
        web_app.router.add_get("/healthz", healthz(self.database, self.shared))
        if self.gateway is not None:
            self.gateway.mount(web_app)
        api = self.gateway is not None
        runner = web.AppRunner(
            web_app,
            access_log=None,
            handler_cancellation=api,
            # API streams still open at shutdown get the grace Telegram answers get.
            shutdown_timeout=telegram.shutdown_grace_seconds if api else 60.0,
        )
        await runner.setup()
        self._web_runner = runner
        with listen_failures(telegram.host, telegram.port):
            await web.TCPSite(runner, telegram.host, telegram.port).start()

    async def _close_webhook_server(self) -> None:
        runner, self._web_runner = self._web_runner, None
        if runner is not None:
            await runner.cleanup()
            if self.gateway is not None:
                await self.gateway.wait_closed()

    def _webhook_handler(self, application: AnyApplication) -> Any:
        expected = self.webhook_secret.encode()

        async def receive(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, expected):
                return web.Response(status=403, text="forbidden")
            try:
                update = parse_update(await request.read(), application.bot)
            except web.HTTPRequestEntityTooLarge:
                log.warning("webhook refused a body too large (over %d bytes)", MAX_UPDATE_BYTES)
                return web.Response(status=413, text="too large")
            except NotAnUpdate as exc:
                log.warning("webhook refused a body that is not an update: %s", exc)
                return web.Response(status=400, text="not an update")
            # Handled up to its question's place in its conversation's queue before Telegram
            # hears "ok": Telegram sends a chat's next update only then, so a chat's questions
            # keep their order even when each lands on another process.
            await application.update_processor.process_update(
                update, application.process_update(update)
            )
            return web.Response(text="ok")

        return receive


@asynccontextmanager
async def open_bot_runtime(
    settings: Settings,
    *,
    web_routes: WebRoutesFactory | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> AsyncIterator[BotRuntime]:
    """Build every part of the bot, in order, and close them in reverse on the way out.

    One aiohttp session for every Spark connection, one Database (its repositories and the
    runner of their units of work), one python-telegram-bot Application; the database is
    migrated and answers a crash left streaming are marked partial before the first update is
    taken. With
    ``HTTP_API_ENABLED``, ``web_routes`` builds the HTTP API served beside Telegram.
    ``clock`` is what the send scheduler, lane shutdowns and rate windows count and wait on
    (:mod:`bot.service.clock`).
    """
    token = settings.telegram.token
    if not token:
        raise RuntimeError("TELEGRAM_BOT_TOKEN is not set")
    # httpx logs every Bot API URL, token included, at INFO: keep it quiet even when the
    # runtime is embedded without configure_logging.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
    telegram = settings.telegram
    async with AsyncExitStack() as stack:
        # One session for every Spark connection; no pool cap (aiohttp defaults to 100), since
        # each streaming answer holds one WebSocket for its whole length.
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
            monotonic=clock.now,
            shared=shared.limits if shared is not None else None,
        )
        gateway = (
            web_routes(settings, database, spark, limits, shared)
            if web_routes is not None and settings.http_api.enabled
            else None
        )
        if gateway is not None:
            await gateway.start()
        service = ConversationService(
            database=database,
            spark=spark,
            spark_settings=settings.spark,
            group_scope=telegram.group_history_scope,
            admission=limits,
            observer=gateway or NO_OBSERVER,
        )
        with database_failures(settings.database.url):  # the first write: a read-only file
            # Alone, every answer left streaming is this process's own from before; beside
            # other processes only long-silent ones are (the others' are theirs to finish).
            await service.recover_interrupted(STALE_ANSWER if shared is not None else timedelta(0))
        application, requests = _application(settings, token, gateway)
        try:
            with telegram_failures(telegram.api_base_url):
                await application.initialize()  # getMe: the token and the Bot API's address
        except BaseException:
            # ptb opened the requests' sessions before getMe failed; it closes them only
            # after a start that succeeded.
            for request in requests:
                await request.shutdown()
            raise
        stack.push_async_callback(application.shutdown)

        # One scheduler owns every send budget of the process (bot.telegram.send_scheduler);
        # with Redis, the budget is counted for every process serving this bot.
        shared_budget = shared_send_budget(shared, application.bot.id) if shared else None
        scheduler = SendScheduler(send_budgets(telegram), clock, shared=shared_budget)
        stack.push_async_callback(scheduler.aclose)
        lanes: ConversationLanes = LocalLanes(clock)
        if shared is not None:
            orphaned = OrphanedQuestions(application.bot, service, scheduler)
            shared_lanes = shared.lanes("telegram", orphaned, clock)
            stack.push_async_callback(shared_lanes.aclose)
            lanes = shared_lanes
        await lanes.start()
        identity = BotIdentity(user_id=application.bot.id, username=application.bot.username)
        access = AccessPolicy(
            allowed_user_ids=telegram.allowed_user_ids,
            allowed_chat_ids=telegram.allowed_chat_ids,
            admin_user_ids=telegram.admin_user_ids,
            group_action=telegram.unauthorized_group_action,
        )
        early = EarlyFeedback(identity, scheduler)
        handlers = TelegramHandlers(
            service=service,
            lanes=lanes,
            scheduler=scheduler,
            settings=telegram,
            identity=identity,
            early=early,
        )
        admin = AdminHandlers(database=database, limits=limits, access=access, scheduler=scheduler)
        # Access first, for every update (group -100); then a re-delivered update stops in its
        # own group, before any handler sees it; then admin commands, which the generic
        # handlers would otherwise take as unknown.
        AccessGate(access, identity, scheduler).register(application)
        early.register(application)  # "typing…" before the claim and the question are stored
        UpdateDeduplicator(database, application.bot.id).register(application)
        admin.register(application)
        handlers.register(application)
        application.add_error_handler(handlers.handler_failed)
        await handlers.publish_commands(application)
        await admin.publish_commands(application, telegram.admin_user_ids)
        log.info("bot @%s ready (model %s)", identity.username, settings.spark.model)
        yield BotRuntime(
            settings,
            database=database,
            service=service,
            application=application,
            lanes=lanes,
            scheduler=scheduler,
            webhook_secret=(
                telegram.webhook_secret.get_secret_value()
                if telegram.webhook_secret
                else secrets.token_urlsafe(32)
            ),
            gateway=gateway,
            shared=shared,
        )


def send_budgets(telegram: TelegramSettings) -> SendBudgets:
    """The send scheduler's budgets from the ``SEND_*`` settings."""
    return SendBudgets(
        private_interval=telegram.send_private_interval,
        group_interval=telegram.send_group_interval,
        group_per_minute=telegram.send_group_per_minute,
        global_per_second=telegram.send_global_per_second,
        draft_interval=telegram.send_draft_interval,
        drafts_count_global=telegram.send_drafts_count_global,
        actions_count_global=telegram.send_actions_count_global,
        learn_seconds=telegram.send_learn_seconds,
    )


def _application(
    settings: Settings, token: str, counted: WebRoutes | None = None
) -> tuple[AnyApplication, tuple[AiohttpRequest, AiohttpRequest]]:
    """The Application, and its two Bot API requests (calls; getUpdates)."""
    builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
        Application.builder()
        .token(token)
        .concurrent_updates(PerChatUpdateProcessor(MAX_CONCURRENT_UPDATES))
    )

    # Bot API calls over aiohttp (bot.telegram.bot_api_request), each counted for /metrics
    # when the HTTP API is served; a second connection lets the final getUpdates of a
    # shutdown go out while the cancelled long poll is still closing.
    def request(connections: int) -> AiohttpRequest:
        if counted is None:
            return AiohttpRequest(connections)
        return CountingRequest(counted.telegram_call, connection_limit=connections)

    requests = (request(64), request(2))
    builder = builder.request(requests[0]).get_updates_request(requests[1])
    if settings.telegram.api_base_url:
        root = settings.telegram.api_base_url.rstrip("/")
        builder = builder.base_url(f"{root}/bot").base_file_url(f"{root}/file/bot")
    if settings.telegram.webhook_url:
        builder = builder.updater(None)
    return builder.build(), requests


async def run(settings: Settings, web_routes: WebRoutesFactory | None = None) -> int:
    """``python -m bot``: run until SIGTERM / SIGINT."""
    if not settings.telegram.token:
        print(SETUP_HINT, file=sys.stderr)
        return 2
    settings.spark.require_credentials()
    async with open_bot_runtime(settings, web_routes=web_routes) as runtime:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, runtime.request_stop)
        await runtime.serve()
    return 0
