"""Thin Telegram callbacks: read the update, call the conversation service.

Access is checked once for every update before these run (:mod:`bot.telegram.access_gate`).

Handlers return quickly: a question is stored, then handed to its conversation's lane
(:class:`~bot.service.lanes.ConversationLanes`: in this process, or shared by every process of
the bot with ``REDIS_URL``), which writes answers one at a time per conversation, so ``/stop``
is handled while an answer streams, wherever it streams.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from dataclasses import dataclass

from telegram import Chat, Message, Update, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import CommandHandler, MessageHandler, filters

from bot.config import TelegramSettings
from bot.errors import ConversationError, SystemPromptTooLong
from bot.service.conversation import ConversationService, Participant, Place, QueuedQuestion
from bot.service.i18n import COMMANDS, Language, language_of, text
from bot.service.lanes import ConversationLanes
from bot.service.replies import describe_refusal
from bot.telegram.addressing import BotIdentity, addressed_question, command_argument
from bot.telegram.asked_in import DRAFT_FIELD, AskedIn
from bot.telegram.budgeted_reply import reply_budgeted
from bot.telegram.command_args import UsageError, parse_model, shorten
from bot.telegram.early_feedback import EarlyFeedback
from bot.telegram.generation_stop import (
    GenerationStopped,
    GenerationStoppedHandler,
    StoppableAnswers,
)
from bot.telegram.ptb_types import AnyApplication, AnyContext
from bot.telegram.send_scheduler import SendScheduler
from bot.telegram.streaming import ChatTarget, DraftSupport, StreamMode, TelegramAnswer
from bot.telegram.textsplit import split_text
from coordination.errors import CoordinationUnavailable
from storage.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

SYSTEM_CLEAR = ("clear", "off", "reset", "清除")
# How much of a long system prompt /system shows: well inside Telegram's 4096 UTF-16 units
# with the heading around it.
SHOWN_PROMPT_LIMIT = 3500


@dataclass(frozen=True, slots=True)
class _Incoming:
    message: Message
    chat: Chat
    user: User
    language: Language
    place: Place
    participant: Participant


class TelegramHandlers:
    """Registers the bot's handlers on an Application and owns nothing but references."""

    def __init__(
        self,
        *,
        service: ConversationService,
        lanes: ConversationLanes,
        scheduler: SendScheduler,
        settings: TelegramSettings,
        identity: BotIdentity,
        early: EarlyFeedback | None = None,
    ) -> None:
        self._early = early
        self._service = service
        self._lanes = lanes
        self._scheduler = scheduler
        self._settings = settings
        self._identity = identity
        self._drafts = DraftSupport()
        # Draft ids from a random start: several processes may write drafts in one chat.
        self._draft_ids = itertools.count(secrets.randbelow(2**30) + 1)
        self._stoppable = StoppableAnswers()

    def register(self, application: AnyApplication) -> None:
        fresh = filters.UpdateType.MESSAGE  # edited messages are not answered again
        commands = {
            "start": self.start,
            "help": self.help,
            "new": self.new,
            "retry": self.retry,
            "stop": self.stop,
            "model": self.model,
            "system": self.system,
        }
        for name, callback in commands.items():
            application.add_handler(CommandHandler(name, callback, filters=fresh))
        application.add_handler(
            MessageHandler(fresh & (filters.TEXT | filters.CAPTION), self.question)
        )
        application.add_handler(GenerationStoppedHandler(self.generation_stopped))
        application.add_handler(
            MessageHandler(
                fresh
                & (
                    filters.Sticker.ALL
                    | filters.PHOTO
                    | filters.VOICE
                    | filters.AUDIO
                    | filters.VIDEO
                    | filters.VIDEO_NOTE
                    | filters.Document.ALL
                    | filters.LOCATION
                    | filters.CONTACT
                ),
                self.not_text,
            )
        )

    async def publish_commands(self, application: AnyApplication) -> None:
        """setMyCommands in English (default) and Chinese."""
        for language, entries in COMMANDS.items():
            await application.bot.set_my_commands(
                entries, language_code=None if language == "en" else language
            )

    # -- helpers ------------------------------------------------------------------------------

    def _incoming(self, update: Update) -> _Incoming | None:
        message, chat, user = (
            update.effective_message,
            update.effective_chat,
            update.effective_user,
        )
        if message is None or chat is None or user is None or user.is_bot:
            return None
        thread_id = message.message_thread_id if message.is_topic_message else None
        return _Incoming(
            message=message,
            chat=chat,
            user=user,
            language=language_of(user.language_code),
            place=Place(
                chat_id=chat.id,
                chat_type=chat.type,
                title=chat.title or chat.full_name,
                thread_id=thread_id,
            ),
            participant=Participant(
                user_id=user.id,
                username=user.username,
                first_name=user.first_name,
                language_code=user.language_code,
            ),
        )

    async def _reply(self, incoming: _Incoming, body: str) -> None:
        """A short reply inside the chat's send budget (:mod:`bot.telegram.budgeted_reply`)."""
        await reply_budgeted(self._scheduler, incoming.message, body)

    def _is_group(self, chat: Chat) -> bool:
        return chat.type != ChatType.PRIVATE

    async def _may_configure(self, incoming: _Incoming, context: AnyContext) -> bool:
        """Private chats configure themselves; in groups only chat or bot admins may."""
        if not self._is_group(incoming.chat) or incoming.user.id in self._settings.admin_user_ids:
            return True
        try:
            member = await context.bot.get_chat_member(incoming.chat.id, incoming.user.id)
        except TelegramError:
            return False
        return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)

    def _sink(self, incoming: _Incoming, context: AnyContext, draft_id: int) -> TelegramAnswer:
        is_group = self._is_group(incoming.chat)
        transport = self._settings.stream_transport
        mode: StreamMode = "draft" if not is_group and transport != "edit" else "edit"
        return TelegramAnswer(
            context.bot,
            self._scheduler,
            ChatTarget(
                chat_id=incoming.chat.id,
                is_group=is_group,
                thread_id=incoming.place.thread_id,
                reply_to_message_id=incoming.message.message_id if is_group else None,
            ),
            mode=mode,
            drafts=self._drafts,
            draft_id=draft_id,
            typed_at=self._early.typed_at(incoming.chat.id) if self._early else None,
        )

    async def _enqueue(
        self, incoming: _Incoming, context: AnyContext, question: QueuedQuestion | None
    ) -> int:
        """Hand an answer to its conversation's lane; returns how many are ahead of it."""
        sink_factory = self._sink
        # Chosen now, so that the queue entry names the draft its stop button will name.
        draft_id = next(self._draft_ids)
        lane = self._service.lane_key(incoming.participant, incoming.place)

        async def job() -> None:
            queued = question
            if queued is None:  # /retry: find the question once earlier answers are done
                queued = await self._service.question_to_retry(
                    incoming.participant, incoming.place
                )
                if queued is None:
                    await self._reply(incoming, text(incoming.language, "nothing_to_retry"))
                    return
            sink = sink_factory(incoming, context, draft_id)
            chat_id = incoming.chat.id
            self._stoppable.add(chat_id, sink.draft_id, lane)  # the draft's stop button
            try:
                await self._service.answer(queued, sink)
            except DatabaseUnavailable as exc:  # logged once by storage, not per answer
                log.info("chat %s: answer not stored: %s", chat_id, exc)
                if not sink.message_ids:
                    await self._reply(incoming, text(incoming.language, "internal_error"))
            except Exception:
                # Spark's failures are answered inside; this is the rest (the database is
                # down, say). The user hears of it unless part of an answer is on screen.
                log.exception("chat %s: answer failed", chat_id)
                if not sink.message_ids:
                    await self._reply(incoming, text(incoming.language, "internal_error"))
            finally:
                self._stoppable.discard(chat_id, sink.draft_id)

        async def dropped() -> None:  # shutdown came first: say so, store it as unanswered
            if question is not None:
                await self._service.abandon(question)
            await self._reply(incoming, text(incoming.language, "dropped_at_shutdown"))

        asked = AskedIn(
            place=incoming.place,
            participant=incoming.participant,
            message_id=incoming.message.message_id,
            question_id=question.question_id if question is not None else None,
            draft_id=draft_id,
        )
        return await self._lanes.submit(lane, job, fields=asked.fields(), on_drop=dropped)

    # -- handlers -----------------------------------------------------------------------------

    async def question(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        addressed = addressed_question(incoming.message, self._identity)
        if addressed is None:
            return
        if not addressed.question:
            key = "ask_usage" if addressed.trigger == "command" else "help"
            await self._reply(incoming, text(incoming.language, key))
            return
        try:
            queued = await self._service.record_question(
                incoming.participant,
                incoming.place,
                addressed.question,
                telegram_message_id=incoming.message.message_id,
            )
        except ConversationError as exc:
            # The refusal names the chat's model ("too long for Spark Lite"), not just "Spark".
            settings = await self._service.chat_settings(incoming.place)
            await self._reply(
                incoming, describe_refusal(exc, incoming.language, settings.model_title)
            )
            return
        ahead = await self._enqueue(incoming, context, queued)
        if ahead:
            await self._reply(incoming, text(incoming.language, "queued", position=ahead))

    async def not_text(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        replied = incoming.message.reply_to_message
        to_bot = (
            replied is not None
            and replied.from_user is not None
            and (replied.from_user.id == self._identity.user_id)
        )
        if self._is_group(incoming.chat) and not to_bot:
            return
        await self._reply(incoming, text(incoming.language, "text_only"))

    async def start(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        settings = await self._service.chat_settings(incoming.place)
        await self._reply(incoming, text(incoming.language, "start", model=settings.model_title))

    async def help(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        await self._reply(incoming, text(incoming.language, "help"))

    async def new(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        await self._service.start_new_conversation(incoming.participant, incoming.place)
        await self._reply(incoming, text(incoming.language, "new_conversation"))

    async def retry(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        ahead = await self._enqueue(incoming, context, None)
        if ahead:
            await self._reply(incoming, text(incoming.language, "queued", position=ahead))

    async def stop(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        lane = self._service.lane_key(incoming.participant, incoming.place)
        if not await self._lanes.cancel_current(lane):
            await self._reply(incoming, text(incoming.language, "nothing_to_stop"))

    async def handler_failed(self, update: object, context: AnyContext) -> None:
        """Last line of defence for a failing handler (the database is down, say): one log line
        with the chat and no payload, and a short apology to the user who is waiting."""
        chat = update.effective_chat if isinstance(update, Update) else None
        # Storage and the shared counts log their loss once at ERROR: a line per chat here.
        unavailable = isinstance(context.error, DatabaseUnavailable | CoordinationUnavailable)
        if unavailable:
            log.info("chat %s: not answered: %s", chat.id if chat else None, context.error)
        else:
            log.error(
                "handler failed for chat %s", chat.id if chat else None, exc_info=context.error
            )
        if not isinstance(update, Update) or update.message is None:
            return  # nobody is waiting for an answer (edits, member updates, ...)
        incoming = self._incoming(update)
        if incoming is not None:
            key = (
                "temporarily_unavailable"
                if isinstance(context.error, CoordinationUnavailable)
                else "internal_error"
            )
            await self._reply(incoming, text(incoming.language, key))

    async def generation_stopped(self, stopped: GenerationStopped) -> None:
        """The stop button on a draft: like /stop, for the answer writing that draft. Written
        by another process, the draft is found in its conversation's queue (drafts are private
        chats' only), and only that answer is stopped, not the next one of the chat."""
        lane = self._stoppable.lane_of(stopped)
        only: dict[str, str] | None = None
        if lane is None:
            place = Place(
                chat_id=stopped.chat_id, chat_type=ChatType.PRIVATE, thread_id=stopped.thread_id
            )
            lane = self._service.lane_key(Participant(user_id=stopped.chat_id), place)
            only = {DRAFT_FIELD: str(stopped.draft_id)}
        if not await self._lanes.cancel_current(lane, only=only):
            log.info("chat %s: stop pressed on a finished draft", stopped.chat_id)
            return
        log.info("chat %s: answer stopped from its draft", stopped.chat_id)

    async def model(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        language = incoming.language
        choices = self._service.available_models()
        listing = ", ".join(choices)
        argument = command_argument(incoming.message)
        if not argument:
            settings = await self._service.chat_settings(incoming.place)
            await self._reply(
                incoming,
                text(language, "model_current", model=settings.model_title, choices=listing),
            )
            return
        if not await self._may_configure(incoming, context):
            await self._reply(incoming, text(language, "admin_only"))
            return
        try:
            wanted = parse_model(argument, choices)
        except UsageError:
            reply = text(language, "model_unknown", name=shorten(argument), choices=listing)
            await self._reply(incoming, reply)
            return
        try:
            chosen = await self._service.set_model(incoming.place, wanted.name)
        except SystemPromptTooLong as exc:
            reply = text(
                language,
                "model_system_too_long",
                model=wanted.title,
                tokens=exc.tokens,
                limit=exc.limit_tokens,
            )
            await self._reply(incoming, reply)
            return
        assert chosen is not None  # parse_model took it from the enabled models
        await self._reply(incoming, text(language, "model_set", model=chosen.title))

    async def system(self, update: Update, context: AnyContext) -> None:
        incoming = self._incoming(update)
        if incoming is None:
            return
        language = incoming.language
        argument = command_argument(incoming.message)
        settings = await self._service.chat_settings(incoming.place)
        if not argument:
            if settings.system_prompt:
                reply = _shown_system_prompt(language, settings.system_prompt)
            else:
                reply = text(language, "system_none")
            await self._reply(incoming, reply)
            return
        if not await self._may_configure(incoming, context):
            await self._reply(incoming, text(language, "admin_only"))
            return
        if argument.lower() in SYSTEM_CLEAR:
            await self._service.set_system_prompt(incoming.place, None)
            await self._reply(incoming, text(language, "system_cleared"))
            return
        if not settings.supports_system:
            await self._reply(
                incoming, text(language, "system_unsupported", model=settings.model_title)
            )
            return
        try:
            await self._service.set_system_prompt(incoming.place, argument)
        except SystemPromptTooLong as exc:
            log.info("chat %s: system prompt refused: %s", incoming.chat.id, exc)
            reply = text(
                language,
                "system_too_long",
                model=settings.model_title,
                tokens=exc.tokens,
                limit=exc.limit_tokens,
                words=exc.limit_words,
                chars=exc.limit_chars,
            )
            await self._reply(incoming, reply)
            return
        await self._reply(incoming, text(language, "system_set"))


def _shown_system_prompt(language: Language, prompt: str) -> str:
    """The prompt as /system shows it: whole when it fits a message, else its beginning."""
    head = split_text(prompt, SHOWN_PROMPT_LIMIT)[0]
    if head == prompt:
        return text(language, "system_current", prompt=prompt)
    return text(language, "system_current_long", prompt=head.rstrip(), length=f"{len(prompt):,}")
