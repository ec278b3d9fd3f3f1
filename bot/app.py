"""Composition root: builds the bot's long-lived objects, runs it, and closes them in reverse.

One aiohttp ClientSession (Spark), one database engine, one python-telegram-bot Application,
created together under an AsyncExitStack. Production and tests wire the same objects: tests
point ``TELEGRAM_API_BASE_URL`` at a Bot API fake and ``SPARK_URL`` at the simulator.

Updates arrive by long polling, or by webhook when ``WEBHOOK_URL`` is set: then an aiohttp web
app on ``PORT`` receives them, checking ``X-Telegram-Bot-Api-Secret-Token``, and answers
``/healthz``: 200, or 503 with the reason while the database cannot be used.

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
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from telegram import Update
from telegram.ext import Application, ApplicationBuilder

from bot.access import AccessPolicy
from bot.addressing import BotIdentity
from bot.admin import AdminHandlers
from bot.concurrency import AnswerLanes, PerChatUpdateProcessor
from bot.config import Settings
from bot.conversation import ConversationService
from bot.flood import FloodControl
from bot.generation_stop import STOPPED_GENERATION
from bot.handlers import TelegramHandlers
from bot.limits import UsageLimits
from bot.spark.client import SparkClient
from storage.database import Database, create_database
from storage.migrate import upgrade

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
SETUP_HINT = """\
TELEGRAM_BOT_TOKEN is not set, so the Telegram bot cannot start.

Get a token from @BotFather and put it in the environment or in .env:
    TELEGRAM_BOT_TOKEN=123456:ABC...

Meanwhile you can talk to Spark in this terminal:
    python -m bot chat --simulate    (no credentials needed: a local Spark simulator)
    python -m bot chat               (real Spark: set SPARK_APP_ID, SPARK_API_KEY and
                                      SPARK_API_SECRET)
"""

AnyApplication = Application[Any, Any, Any, Any, Any, Any]
# Every type ptb knows, plus the drafts' stop button, which ptb 22.8 does not.
ALLOWED_UPDATES = [*Update.ALL_TYPES, STOPPED_GENERATION]


class BotRuntime:
    """Everything the running bot owns; ``async with`` builds it and tears it down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self._stop = asyncio.Event()
        self.lanes = AnswerLanes()
        self.flood = FloodControl()
        self.database: Database | None = None
        self.application: AnyApplication | None = None
        self.service: ConversationService | None = None
        self._web_runner: web.AppRunner | None = None
        self.webhook_secret = (
            settings.telegram.webhook_secret.get_secret_value()
            if settings.telegram.webhook_secret
            else secrets.token_urlsafe(32)
        )

    async def __aenter__(self) -> BotRuntime:
        try:
            await self._build()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _build(self) -> None:
        settings = self.settings
        token = settings.telegram.token
        if not token:
            raise RuntimeError("TELEGRAM_BOT_TOKEN is not set")
        # httpx logs every Bot API URL, token included, at INFO: keep it quiet even when the
        # runtime is embedded without configure_logging.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        # One session for every Spark connection; no pool cap (aiohttp defaults to 100), since
        # each streaming answer holds one WebSocket for its whole length.
        session = await self._stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        await upgrade(settings.database.url)
        database = create_database(settings.database.url)
        self._stack.push_async_callback(database.dispose)
        self.database = database
        spark = SparkClient.from_settings(session, settings.spark)
        telegram = settings.telegram
        limits = UsageLimits(database, settings.limits, admin_user_ids=telegram.admin_user_ids)
        service = ConversationService(
            database=database,
            spark=spark,
            spark_settings=settings.spark,
            group_scope=telegram.group_history_scope,
            admission=limits,
        )
        self.service = service
        await service.recover_interrupted()

        builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
            Application.builder()
            .token(token)
            .concurrent_updates(PerChatUpdateProcessor())
            # A second connection lets the final getUpdates of a shutdown go out while the
            # cancelled long poll is still closing.
            .get_updates_connection_pool_size(2)
            .connection_pool_size(64)
        )
        if settings.telegram.api_base_url:
            root = settings.telegram.api_base_url.rstrip("/")
            builder = builder.base_url(f"{root}/bot").base_file_url(f"{root}/file/bot")
        if settings.telegram.webhook_url:
            builder = builder.updater(None)
        application = builder.build()
        await application.initialize()
        self._stack.push_async_callback(application.shutdown)
        self.application = application

        identity = BotIdentity(user_id=application.bot.id, username=application.bot.username)
        access = AccessPolicy(
            allowed_user_ids=telegram.allowed_user_ids,
            allowed_chat_ids=telegram.allowed_chat_ids,
            admin_user_ids=telegram.admin_user_ids,
            group_action=telegram.unauthorized_group_action,
        )
        handlers = TelegramHandlers(
            service=service,
            lanes=self.lanes,
            flood=self.flood,
            settings=telegram,
            identity=identity,
            access=access,
        )
        admin = AdminHandlers(database=database, limits=limits, access=access, flood=self.flood)
        # Admin commands first: the generic handlers would otherwise take /stats as unknown.
        admin.register(application)
        handlers.register(application)
        application.add_error_handler(handlers.handler_failed)
        await handlers.publish_commands(application)
        await admin.publish_commands(application, telegram.admin_user_ids)
        log.info("bot @%s ready (model %s)", identity.username, settings.spark.model)

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self._stop.set()

    async def serve(self) -> None:
        """Take updates until :meth:`request_stop`, then shut down gracefully."""
        application = self.application
        assert application is not None
        assert self.service is not None
        telegram = self.settings.telegram
        await application.start()
        try:
            if telegram.webhook_url:
                await self._start_webhook(application)
            else:
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
            if self._web_runner is not None:
                await self._web_runner.cleanup()
            self.service.begin_shutdown()
            await self.lanes.shutdown(telegram.shutdown_grace_seconds)
        finally:
            if application.running:
                await application.stop()

    async def _start_webhook(self, application: AnyApplication) -> None:
        telegram = self.settings.telegram
        assert telegram.webhook_url is not None
        path = urlsplit(telegram.webhook_url).path or "/"
        web_app = web.Application()
        web_app.router.add_post(path, self._webhook_handler(application))
        web_app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, telegram.host, telegram.port).start()
        self._web_runner = runner
        await application.bot.set_webhook(
            telegram.webhook_url,
            secret_token=self.webhook_secret,
            allowed_updates=ALLOWED_UPDATES,
        )

    def _webhook_handler(self, application: AnyApplication) -> Any:
        expected = self.webhook_secret.encode()

        async def receive(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, expected):
                return web.Response(status=403, text="forbidden")
            try:
                data = await request.json()
                update = Update.de_json(data, application.bot)
            except (ValueError, KeyError, TypeError):
                return web.Response(status=400, text="not an update")
            await application.update_queue.put(update)
            return web.Response(text="ok")

        return receive

    async def _healthz(self, request: web.Request) -> web.Response:
        """200 while the database can be used, 503 with the reason while it cannot."""
        problem = await self.database.health() if self.database else "not open"
        if problem is not None:
            return web.Response(status=503, text=f"database unavailable: {problem}")
        return web.Response(text="ok")


async def run(settings: Settings) -> int:
    """``python -m bot``: run until SIGTERM / SIGINT."""
    if not settings.telegram.token:
        print(SETUP_HINT, file=sys.stderr)
        return 2
    settings.spark.require_credentials()
    async with BotRuntime(settings) as runtime:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, runtime.request_stop)
        await runtime.serve()
    return 0
