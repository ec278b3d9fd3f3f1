"""Telegram commands about usage: /stats and /quota for admins, /usage for everyone.

Admins are ADMIN_USER_IDS. Anyone else asking for /stats or /quota is told the command is for
administrators and learns nothing else, not even whether a user exists. Reports are shown only
in private chats, so an admin cannot leak them into a group by accident. /usage shows users
their own tokens and quota, wherever they ask.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import html
import io
import logging
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from telegram import Bot, BotCommandScopeChat, Chat, InputFile, Message, Update, User
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import CommandHandler, filters

from bot.service.i18n import ADMIN_COMMANDS, COMMANDS, Language, language_of, text
from bot.service.limits import UsageLimits
from bot.telegram.access import AccessPolicy
from bot.telegram.budgeted_reply import reply_budgeted
from bot.telegram.command_args import UsageError, UserRef, parse_quota_args, parse_stats_args
from bot.telegram.ptb_types import AnyApplication, AnyContext
from bot.telegram.send_scheduler import SendScheduler
from bot.telegram.stats_format import compact, render_quota, render_report, render_usage
from storage.database import Database
from storage.dto import Clock, UserInfo, utc_now
from storage.stats import DAYS, EXPORT_COLUMNS, day_start, window_start

log = logging.getLogger(__name__)


EXPORT_PAGE = 5_000
# Telegram takes uploads up to 50 MB; a larger CSV goes out gzip-compressed.
UPLOAD_LIMIT = 49 * 1024 * 1024
ADMIN_MENU_GROUP = 1  # handler group of the admin menu's /start hook


@dataclass(frozen=True, slots=True)
class _Asker:
    message: Message
    chat: Chat
    user: User
    language: Language


def user_label(user: UserInfo) -> str:
    if user.username:
        return f"@{user.username}"
    return user.first_name or str(user.id)


class AdminHandlers:
    """/stats, /quota and /usage; register them before the generic text handler."""

    def __init__(
        self,
        *,
        database: Database,
        limits: UsageLimits,
        access: AccessPolicy,
        scheduler: SendScheduler,
        clock: Clock = utc_now,
    ) -> None:
        self._db = database
        self._limits = limits
        self._access = access
        self._scheduler = scheduler
        self._clock = clock

    def register(self, application: AnyApplication) -> None:
        fresh = filters.UpdateType.MESSAGE
        application.add_handler(CommandHandler("stats", self.stats, filters=fresh))
        application.add_handler(CommandHandler("quota", self.quota, filters=fresh))
        application.add_handler(CommandHandler("usage", self.usage, filters=fresh))
        # In a group of its own, so the usual /start greeting still answers.
        application.add_handler(
            CommandHandler("start", self.admin_started, filters=fresh & filters.ChatType.PRIVATE),
            group=ADMIN_MENU_GROUP,
        )

    async def publish_commands(
        self, application: AnyApplication, admin_user_ids: Iterable[int]
    ) -> None:
        """Each admin's private chat gets a menu with /stats and /quota too.

        Telegram refuses the scope of a user who never opened the bot ("chat not found"):
        that admin gets the menu on their first /start instead; the commands work anyway.
        """
        for admin_id in admin_user_ids:
            await self._publish_admin_menu(application.bot, admin_id)

    async def admin_started(self, update: Update, context: AnyContext) -> None:
        """An admin opening the bot (perhaps for the first time) gets the admin menu."""
        user = update.effective_user
        if user is not None and self._access.is_admin(user.id):
            await self._publish_admin_menu(context.bot, user.id)

    async def _publish_admin_menu(self, bot: Bot, admin_id: int) -> None:
        scope = BotCommandScopeChat(admin_id)
        try:
            for language, entries in COMMANDS.items():
                await bot.set_my_commands(
                    entries + ADMIN_COMMANDS[language],
                    scope=scope,
                    language_code=None if language == "en" else language,
                )
        except TelegramError as exc:
            log.info("admin %s: command menu not set: %s", admin_id, exc)

    # -- handlers -----------------------------------------------------------------------------

    async def stats(self, update: Update, context: AnyContext) -> None:
        asker = await self._admin(update)
        if asker is None:
            return
        try:
            request = parse_stats_args(_args(context))
        except UsageError as exc:
            log.info("user %s: /stats refused: %s", asker.user.id, exc)
            await self._reply(asker, text(asker.language, "stats_help"))
            return
        if request.kind == "user":
            assert request.user is not None
            await self._user_report(asker, request.user)
        elif request.kind == "chat":
            assert request.chat_id is not None
            await self._chat_report(asker, request.chat_id)
        elif request.kind == "export":
            await self._export(asker, context)
        else:
            await self._overview(asker)

    async def quota(self, update: Update, context: AnyContext) -> None:
        asker = await self._admin(update)
        if asker is None:
            return
        language = asker.language
        try:
            request = parse_quota_args(_args(context))
        except UsageError as exc:
            log.info("user %s: /quota refused: %s", asker.user.id, exc)
            await self._reply(asker, text(language, "quota_usage"))
            return
        user = await self._find_user(request.user)
        if user is None:
            await self._reply(asker, text(language, "stats_unknown_user", ref=request.user.lookup))
            return
        name = user_label(user)
        prefix = ""
        if request.change:
            value = request.tokens
            await self._db.users.set_daily_quota(user.id, value)
            log.info("daily quota of user %s set to %s", user.id, value)
            prefix = html.escape(self._quota_confirmation(language, name, value)) + "\n\n"
        state = await self._limits.quota_state(user.id)
        await self._reply(asker, prefix + render_quota(language, name, state), html=True)

    async def usage(self, update: Update, context: AnyContext) -> None:
        asker = _asker(update)
        if asker is None:
            return
        state = await self._limits.quota_state(asker.user.id)
        month = await self._limits.tokens_since(asker.user.id, self._clock().date().replace(day=1))
        body = render_usage(asker.language, today=state.used_today, month=month, quota=state)
        await self._reply(asker, body, html=True)

    def _quota_confirmation(self, language: Language, name: str, value: int | None) -> str:
        if value is None:
            default = self._limits.default_quota
            shown = compact(default) if default else text(language, "quota_unlimited")
            return text(language, "quota_default", name=name, quota=shown)
        if value == 0:
            return text(language, "quota_off", name=name)
        return text(language, "quota_set", name=name, tokens=f"{value:,}")

    # -- reports ------------------------------------------------------------------------------

    async def _overview(self, asker: _Asker) -> None:
        now = self._clock()
        report = await self._db.stats.overview(now.date())
        await self._reply(asker, render_report(report, asker.language, now=now), html=True)

    async def _user_report(self, asker: _Asker, reference: UserRef) -> None:
        user = await self._find_user(reference)
        if user is None:
            await self._reply(
                asker, text(asker.language, "stats_unknown_user", ref=reference.lookup)
            )
            return
        now = self._clock()
        report = await self._db.stats.for_user(user.id, now.date())
        state = await self._limits.quota_state(user.id)
        body = render_report(
            report, asker.language, now=now, subject=user_label(user), quota=state
        )
        await self._reply(asker, body, html=True)

    async def _chat_report(self, asker: _Asker, chat_id: int) -> None:
        now = self._clock()
        found = await self._db.stats.for_chat(chat_id, now.date())
        if found.report is None:
            await self._reply(asker, text(asker.language, "stats_unknown_chat", ref=chat_id))
            return
        subject = found.title or str(chat_id)
        body = render_report(found.report, asker.language, now=now, subject=subject)
        await self._reply(asker, body, html=True)

    async def _export(self, asker: _Asker, context: AnyContext) -> None:
        now = self._clock()
        since = day_start(window_start(now.date(), DAYS))
        with tempfile.TemporaryFile() as raw:
            rows = await self._write_csv(raw, since)
            if rows == 0:
                await self._reply(asker, text(asker.language, "stats_export_empty", days=DAYS))
                return
            name = f"usage-{since:%Y%m%d}-{now:%Y%m%d}.csv"
            with tempfile.TemporaryFile() as packed:
                upload: IO[bytes] = raw
                if raw.tell() > UPLOAD_LIMIT:
                    await asyncio.to_thread(_gzip, raw, packed)
                    upload, name = packed, name + ".gz"
                upload.seek(0)
                caption = text(
                    asker.language,
                    "stats_export_caption",
                    since=f"{since:%Y-%m-%d}",
                    until=f"{now:%Y-%m-%d %H:%M}",
                    rows=f"{rows:,}",
                )
                try:
                    await context.bot.send_document(
                        asker.chat.id,
                        InputFile(upload, filename=name),
                        caption=caption,
                    )
                except TelegramError as exc:
                    log.warning("chat %s: export upload failed: %s", asker.chat.id, exc)

    async def _write_csv(self, target: IO[bytes], since: datetime) -> int:
        """Write the ledger since ``since`` as UTF-8 CSV; returns the number of rows."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        rows = 0
        after: tuple[datetime, int] | None = None
        while True:
            # One short unit of work per page: no snapshot or connection held for the export.
            page = await self._db.stats.export_page(since, after, EXPORT_PAGE)
            for entry in page:
                writer.writerow(entry.values())
            rows += len(page)
            target.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
            if len(page) < EXPORT_PAGE:
                return rows
            after = (page[-1].created_at, page[-1].id)

    # -- helpers ------------------------------------------------------------------------------

    async def _find_user(self, reference: UserRef) -> UserInfo | None:
        return await self._db.stats.find_user(reference.lookup)

    async def _admin(self, update: Update) -> _Asker | None:
        """The asker if they are an admin in a private chat; otherwise say why not."""
        asker = _asker(update)
        if asker is None:
            return None
        if not self._access.is_admin(asker.user.id):
            log.info("user %s asked for admin statistics and was refused", asker.user.id)
            await self._reply(asker, text(asker.language, "admin_only"))
            return None
        if asker.chat.type != ChatType.PRIVATE:
            await self._reply(asker, text(asker.language, "stats_private_only"))
            return None
        return asker

    async def _reply(self, asker: _Asker, body: str, *, html: bool = False) -> None:
        """A short reply inside the chat's send budget (:mod:`bot.telegram.budgeted_reply`)."""
        await reply_budgeted(self._scheduler, asker.message, body, html=html)


def _args(context: AnyContext) -> list[str]:
    return [arg.strip() for arg in context.args or [] if arg.strip()]


def _asker(update: Update) -> _Asker | None:
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None or user is None or user.is_bot:
        return None
    return _Asker(message, chat, user, language_of(user.language_code))


def _gzip(source: IO[bytes], target: IO[bytes]) -> None:
    source.seek(0)
    with gzip.GzipFile(fileobj=target, mode="wb") as packed:
        shutil.copyfileobj(source, packed)
