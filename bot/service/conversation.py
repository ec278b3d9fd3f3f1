"""The use case: a question in, an answer streamed out, both stored.

``record_question`` runs in update order: it stores the user and chat, checks the question against
the model's budget and the user's limits, and commits the question before Spark is called.
``answer`` runs later in the conversation's lane: it builds the context from stored history,
streams Spark into an :class:`~bot.service.events.AnswerSink` (Telegram or the terminal),
checkpoints the partial text beside the stream (never holding it up), and stores the answer,
its usage row and the chat's token calibration as one unit of work. Each step of a turn is one
unit of work of the database's repositories (``database.conversations``,
``database.messages``); nothing is held open while an answer streams.

Whatever happens, nothing is lost: a stopped answer is stored as ``cancelled``, a failed one as
``failed`` or ``partial`` with Spark's error code and sid, one interrupted by shutdown as
``partial``, and one the process died in is marked ``partial`` by ``recover_interrupted`` at
the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from bot.config import GroupHistoryScope, SparkSettings
from bot.errors import ConversationError, QuestionTooLong
from bot.service.budget import (
    CALIBRATION,
    ContextBuilder,
    Prompt,
    PromptSettings,
    check_system_prompt,
    load_prompt,
    ratio_of,
)
from bot.service.checkpoints import Checkpoints
from bot.service.events import (
    NO_OBSERVER,
    AnswerSink,
    Delivery,
    Ending,
    Failed,
    Finished,
    FunctionCalled,
    ReasoningDelta,
    SourcesFound,
    SparkCall,
    SparkCallObserver,
    TextDelta,
)
from bot.service.i18n import Language, language_of, text
from bot.service.lanes import interrupted
from bot.service.replies import describe_failure
from bot.service.visible_text import is_blank
from bot.spark import types as spark_events
from bot.spark.client import SparkClient
from bot.spark.errors import SparkAPIError, SparkError
from bot.spark.handshake import Handshake
from bot.spark.models import SparkModel, find_model, get_model
from bot.spark.tokens import estimate_text_tokens
from bot.spark.types import SearchSource, Usage
from coordination.errors import CoordinationUnavailable
from storage.database import Database
from storage.dto import (
    LEDGER_NO_SPARK_CODE,
    LEDGER_UNDELIVERED,
    Calibration,
    ChatInfo,
    ConversationInfo,
    LedgerEntry,
    MessageStatus,
    StoredMessage,
    TokenUsage,
)
from storage.errors import AnswerNotStreaming
from storage.repositories.conversations import Arrival
from storage.repositories.messages import Finish

log = logging.getLogger(__name__)

# How long an answer interrupted by shutdown may spend delivering its final text and note;
# part of the fixed margin the whole shutdown may take beyond SHUTDOWN_GRACE_SECONDS.
SHUTDOWN_DELIVERY_TIMEOUT = 1.5


@dataclass(frozen=True, slots=True)
class Place:
    """Where a question was asked."""

    chat_id: int
    chat_type: str  # Telegram's chat type, or "terminal"
    title: str | None = None
    thread_id: int | None = None

    @property
    def is_group(self) -> bool:
        return self.chat_type in ("group", "supergroup")


@dataclass(frozen=True, slots=True)
class Participant:
    """Who asked."""

    user_id: int
    username: str | None = None
    first_name: str | None = None
    language_code: str | None = None

    @property
    def language(self) -> Language:
        return language_of(self.language_code)


@dataclass(frozen=True, slots=True)
class ChatSettingsView:
    model: SparkModel
    system_prompt: str | None

    @property
    def model_title(self) -> str:
        return self.model.title

    @property
    def supports_system(self) -> bool:
        return self.model.supports_system


@dataclass(frozen=True, slots=True)
class QueuedQuestion:
    """A stored question waiting for its answer."""

    conversation: ConversationInfo
    question_id: int
    text: str
    participant: Participant
    place: Place
    ticket: AdmissionTicket | None = None
    # The chat as stored when the question was taken: what the prompt's history is read for
    # (the prompt itself is built for the chat as it is when the answer's turn comes).
    chat: ChatInfo | None = None


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    status: MessageStatus
    text: str
    sid: str | None
    usage: Usage | None
    error: SparkError | None
    delivery: Delivery
    sources: tuple[SearchSource, ...] = ()
    message_id: int | None = None  # the answer's row, when one was written


class AdmissionTicket(Protocol):
    """What an admitted question holds until its answer is stored (e.g. reserved tokens)."""

    def release(self) -> None:
        """Called once, after the answer and its usage row are stored (or it never ran)."""


class Admission(Protocol):
    """Per-user limits checked before a question is accepted (quotas, rate limits)."""

    async def admit(
        self, participant: Participant, model: SparkModel, reserve_tokens: int
    ) -> AdmissionTicket:
        """Admit a question that may cost up to ``reserve_tokens`` more tokens, or raise a
        :class:`~bot.errors.ConversationError` to refuse it."""


class ConversationService:
    """Questions and answers for every front end (Telegram, the terminal)."""

    def __init__(
        self,
        *,
        database: Database,
        spark: SparkClient,
        spark_settings: SparkSettings,
        group_scope: GroupHistoryScope = "chat",
        admission: Admission | None = None,
        checkpoint_interval: float = 3.0,
        shutdown_delivery_timeout: float = SHUTDOWN_DELIVERY_TIMEOUT,
        observer: SparkCallObserver = NO_OBSERVER,
        front_end: str = "telegram",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._spark = spark
        self._observer = observer
        self._front_end = front_end
        self._settings = spark_settings
        self._group_scope: GroupHistoryScope = group_scope
        self._admission = admission
        self._checkpoint_interval = checkpoint_interval
        self._shutdown_delivery_timeout = shutdown_delivery_timeout
        self._monotonic = monotonic
        self._shutting_down = False

    # -- settings per chat -------------------------------------------------------------------

    def available_models(self) -> tuple[str, ...]:
        return self._settings.enabled_models

    def default_model(self) -> str:
        """The model of a chat that chose none."""
        return self._settings.model_info.name

    def _model_of(self, chat: ChatInfo | None) -> SparkModel:
        if chat is not None and chat.model in self._settings.enabled_models:
            return get_model(chat.model)
        return self._settings.model_info

    def _system_prompt_of(self, chat: ChatInfo | None) -> str | None:
        if chat is not None and chat.system_prompt:
            return chat.system_prompt
        return self._settings.system_prompt

    def _max_tokens(self, model: SparkModel) -> int:
        return self._spark.options_for(model).max_tokens or model.default_max_tokens

    def _scope(self, place: Place) -> GroupHistoryScope:
        return self._group_scope if place.is_group else "chat"

    def _scoped_user(self, participant: Participant, place: Place) -> int:
        """The user a conversation belongs to in this place; 0 when the chat shares one."""
        return participant.user_id if self._scope(place) == "user" else 0

    def lane_key(self, participant: Participant, place: Place) -> str:
        """Answers with the same key are written one at a time (one conversation); the same
        in every process."""
        return f"{place.chat_id}:{place.thread_id or 0}:{self._scoped_user(participant, place)}"

    async def chat_settings(self, place: Place) -> ChatSettingsView:
        chat = await self._db.chats.get(place.chat_id)
        return ChatSettingsView(self._model_of(chat), self._system_prompt_of(chat))

    async def set_model(self, place: Place, name: str) -> SparkModel | None:
        """Switch the chat's model; None when the name is unknown or not enabled.

        Raises :class:`~bot.errors.SystemPromptTooLong` when the chat's own system prompt
        takes more of the new model's budget than it may (the chat keeps its model then):
        otherwise every later question would be refused.
        """
        model = find_model(name)
        if model is None or model.name not in self._settings.enabled_models:
            return None
        chat = await self._db.chats.get(place.chat_id)
        if chat is not None and chat.system_prompt:
            self._check_system_prompt(model, chat.system_prompt, chat.token_ratio)
        await self._db.chats.set_model(
            place.chat_id, model.name, type=place.chat_type, title=place.title
        )
        return model

    async def set_system_prompt(self, place: Place, prompt: str | None) -> None:
        """Set (or with None clear) the chat's system prompt; raises
        :class:`~bot.errors.SystemPromptTooLong` when it is over its share of the chat
        model's budget, and stores nothing then."""
        prompt = (prompt or "").strip() or None
        if prompt is not None:
            chat = await self._db.chats.get(place.chat_id)
            self._check_system_prompt(self._model_of(chat), prompt, ratio_of(chat))
        await self._db.chats.set_system_prompt(
            place.chat_id, prompt, type=place.chat_type, title=place.title
        )

    def _check_system_prompt(self, model: SparkModel, prompt: str, ratio: float) -> None:
        check_system_prompt(model, prompt, max_tokens=self._max_tokens(model), ratio=ratio)

    # -- conversations -----------------------------------------------------------------------

    async def start_new_conversation(self, participant: Participant, place: Place) -> None:
        await self._db.conversations.start_new(self._arrival(participant, place))

    async def record_question(
        self,
        participant: Participant,
        place: Place,
        question: str,
        *,
        telegram_message_id: int | None = None,
        arrived: tuple[ChatInfo, ConversationInfo] | None = None,
    ) -> QueuedQuestion:
        """Store the question (committed before Spark is called) or refuse it.

        A refused question is stored too, with a ``failed`` answer marker, so the record is
        complete; then the :class:`ConversationError` is raised for the front end to explain.
        ``arrived``: the chat and its open conversation, stored as they are, when the front
        end has just read them itself (then they are not read again).
        """
        if arrived is None:
            arrived = await self._arrive(participant, place)
        chat, conversation = arrived
        model = self._model_of(chat)
        refusal: ConversationError | CoordinationUnavailable | None = None
        ticket: AdmissionTicket | None = None
        try:
            ContextBuilder(
                model,
                question,
                system_prompt=self._system_prompt_of(chat),
                max_tokens=self._max_tokens(model),
                ratio=chat.token_ratio,
            )
            ticket = await self._admit(participant, model)
        except (ConversationError, CoordinationUnavailable) as exc:
            # Stored all the same, marked unanswered, then told to the front end.
            refusal = exc
        try:
            stored = await self._db.messages.add_question(
                conversation,
                question,
                tokens=estimate_text_tokens(question),
                user_id=participant.user_id,
                telegram_message_id=telegram_message_id,
            )
        except BaseException:
            if ticket is not None:  # the question never got in: give its reservation back
                ticket.release()
            raise
        if refusal is not None:
            await self._store_unanswered(conversation, stored.id, model, participant.user_id)
            log.info(
                "chat %s user %s: question refused: %s",
                place.chat_id,
                participant.user_id,
                refusal,
            )
            raise refusal
        return QueuedQuestion(conversation, stored.id, question, participant, place, ticket, chat)

    async def _arrive(
        self, participant: Participant, place: Place
    ) -> tuple[ChatInfo, ConversationInfo]:
        """The chat and its open conversation; stored or refreshed first only when something
        is new or changed (most questions read one row and write nothing here)."""
        return await self._db.conversations.arrive(self._arrival(participant, place))

    def _arrival(self, participant: Participant, place: Place) -> Arrival:
        return Arrival(
            user_id=participant.user_id,
            username=participant.username,
            first_name=participant.first_name,
            language_code=participant.language_code,
            chat_id=place.chat_id,
            chat_type=place.chat_type,
            title=place.title,
            thread_id=place.thread_id or 0,
            scope_user_id=self._scoped_user(participant, place),
        )

    async def _admit(self, participant: Participant, model: SparkModel) -> AdmissionTicket | None:
        if self._admission is None:
            return None
        return await self._admission.admit(participant, model, self._max_tokens(model))

    async def question_to_retry(
        self, participant: Participant, place: Place
    ) -> QueuedQuestion | None:
        """For /retry: set the last answer aside and return its question to ask again.

        A retry costs tokens like a question, so it passes the same admission first.
        """
        chat = await self._db.chats.get(place.chat_id)
        ticket = await self._admit(participant, self._model_of(chat))
        try:
            conversation, turn = await self._db.messages.supersede_last_answer(
                self._arrival(participant, place)
            )
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        if turn is None:
            if ticket is not None:
                ticket.release()
            return None
        return QueuedQuestion(
            conversation,
            turn.question.id,
            turn.question.content,
            participant,
            place,
            ticket,
            chat,
        )

    async def recover_interrupted(self, idle_for: timedelta = timedelta(0)) -> int:
        """At start: answers left ``streaming`` by a dead process become ``partial``. With
        other processes serving the bot, only those idle for ``idle_for``: the others may
        still be writing theirs (a dead one's conversations are taken over one by one)."""
        count = await self._db.messages.recover_interrupted(idle_for)
        if count:
            log.warning("marked %d answers interrupted by the last shutdown as partial", count)
        return count

    async def interrupt_taken_over(
        self, participant: Participant, place: Place
    ) -> StoredMessage | None:
        """The answer streaming in this conversation, whose process died while writing it,
        becomes ``partial``; it as stored (its text is the last checkpoint), or None when it
        was finished after all (nothing to tell anyone)."""
        stored = await self._db.messages.interrupt_answer(
            place.chat_id, place.thread_id or 0, self._scoped_user(participant, place)
        )
        if stored is not None:
            log.warning(
                "chat %s: answer %d interrupted (its process is gone); stored as partial "
                "with %d characters",
                place.chat_id,
                stored.id,
                len(stored.content),
            )
        return stored

    async def mark_taken_over_unanswered(self, question_id: int, place: Place) -> None:
        """A stored question whose process went before its turn: marked unanswered."""
        settings = await self.chat_settings(place)
        if await self._db.messages.mark_unanswered(question_id, settings.model.name):
            log.warning(
                "chat %s: question %d dropped (its process went before its turn)",
                place.chat_id,
                question_id,
            )

    async def abandon(self, queued: QueuedQuestion) -> None:
        """A stored question that will not be answered (the bot is shutting down first): its
        answer is stored as ``failed`` and its reservation returned, so nothing dangles."""
        try:
            settings = await self.chat_settings(queued.place)
            await self._store_unanswered(
                queued.conversation, queued.question_id, settings.model, queued.participant.user_id
            )
            log.info("chat %s: queued question dropped at shutdown", queued.place.chat_id)
        finally:
            if queued.ticket is not None:
                queued.ticket.release()

    async def _store_unanswered(
        self, conversation: ConversationInfo, question_id: int, model: SparkModel, user_id: int
    ) -> None:
        """The ``failed`` answer marker of a question that gets no answer from Spark."""
        messages = self._db.messages
        marker = await messages.start_answer(
            conversation, question_id=question_id, model=model.name, user_id=user_id
        )
        await messages.finish_answer(
            marker.id, Finish(status=MessageStatus.FAILED, text="", tokens=0)
        )

    def begin_shutdown(self) -> None:
        """From now on a cancelled answer was interrupted, not stopped by its user."""
        self._shutting_down = True

    # -- answering ---------------------------------------------------------------------------

    async def answer(self, queued: QueuedQuestion, sink: AnswerSink) -> AnswerOutcome:
        """Stream the answer to ``queued`` into ``sink`` and store it, whatever happens."""
        try:
            return await self._answer(queued, sink)
        finally:
            if queued.ticket is not None:
                queued.ticket.release()

    async def _answer(self, queued: QueuedQuestion, sink: AnswerSink) -> AnswerOutcome:
        # Spark's socket opens while the history is read and the answer's row written; the
        # request goes out on it only once both are done (bot.spark.handshake).
        ahead = self._spark.open_ahead(self._model_of(queued.chat))
        try:
            return await self._answer_on(queued, sink, ahead)
        finally:
            await ahead.aclose()  # nothing once the stream took its socket

    async def _answer_on(
        self, queued: QueuedQuestion, sink: AnswerSink, ahead: Handshake
    ) -> AnswerOutcome:
        language = queued.participant.language
        conversation = queued.conversation
        messages = self._db.messages
        user_id = queued.participant.user_id
        try:
            prompt = await load_prompt(
                messages,
                conversation.id,
                conversation.chat_id,
                queued.text,
                self._prompt_settings,
                known=queued.chat,
            )
        except QuestionTooLong as exc:  # the chat switched to a smaller model while this waited
            await ahead.aclose()
            model = (await self.chat_settings(queued.place)).model
            reason = describe_failure(exc, language, model.title)
            await sink.start()
            note = text(language, "footer_error", error=reason)
            delivery = await sink.finish(Failed("", exc, note))
            await self._store_unanswered(conversation, queued.question_id, model, user_id)
            return AnswerOutcome(MessageStatus.FAILED, "", None, None, None, delivery)
        model = prompt.settings.model
        answer_row = await messages.start_answer(
            conversation, question_id=queued.question_id, model=model.name, user_id=user_id
        )
        checkpoints = Checkpoints(
            lambda partial: self._checkpoint(answer_row.id, partial),
            interval=self._checkpoint_interval,
            monotonic=self._monotonic,
        )
        async with checkpoints:
            return await self._stream(
                queued, sink, prompt, answer_row.id, language, checkpoints, ahead
            )

    def _prompt_settings(self, chat: ChatInfo | None) -> PromptSettings:
        """What the prompt is built for, decided from the chat."""
        model = self._model_of(chat)
        return PromptSettings(model, self._system_prompt_of(chat), self._max_tokens(model))

    async def _stream(
        self,
        queued: QueuedQuestion,
        sink: AnswerSink,
        prompt: Prompt,
        answer_id: int,
        language: Language,
        checkpoints: Checkpoints,
        ahead: Handshake,
    ) -> AnswerOutcome:
        place = queued.place
        model = prompt.settings.model
        context = prompt.context
        started = self._monotonic()
        first_token_at: float | None = None
        answer = ""
        sources: tuple[SearchSource, ...] = ()
        usage: Usage | None = None
        sid: str | None = None
        error: SparkError | None = None
        cancelled: asyncio.CancelledError | None = None
        await sink.start()
        try:
            stream = self._spark.stream(
                context.messages, queued.conversation.spark_uid, model=model, ahead=ahead
            )
            async with aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, spark_events.TextDelta):
                        answer += event.text
                        if first_token_at is None:
                            first_token_at = self._monotonic()
                        sink.event(TextDelta(event.text))
                    elif isinstance(event, spark_events.ReasoningDelta):
                        if first_token_at is None:
                            first_token_at = self._monotonic()
                        sink.event(ReasoningDelta(event.text))
                    elif isinstance(event, spark_events.SearchSourcesDelta):
                        sources += event.sources
                        sink.event(SourcesFound(event.sources))
                    elif isinstance(event, spark_events.FunctionCallDelta):
                        sink.event(FunctionCalled(event.call))
                    else:
                        usage, sid = event.usage, event.sid
                    if sink.gone:
                        break
                    if answer:  # beside the stream: a slow database never holds a delta up
                        checkpoints.due(answer)
        except asyncio.CancelledError as exc:
            cancelled = exc
        except SparkError as exc:
            error, sid = exc, exc.sid
            answer = answer or exc.partial_text
            log.warning(
                "chat %s: Spark failed after %d characters: %s (model=%s sid=%s)",
                place.chat_id,
                len(answer),
                exc,
                model.name,
                exc.sid,
            )

        status, footer = self._verdict(answer, error, cancelled, sink.gone, language, model)
        ending: Ending = (
            Failed(answer, error, footer or "")
            if error is not None
            else Finished(answer, status, footer, sources, usage, sid)
        )
        if sources and status is MessageStatus.COMPLETE:
            answer = with_sources(answer, sources)  # stored as the reader saw it
        try:
            delivery = await self._deliver(sink, ending)
        except asyncio.CancelledError as exc:  # shutdown or /stop came while it was delivered
            cancelled = cancelled or exc
            delivery = Delivery(message_ids=(), complete=False)
            await sink.aclose()
        if status is MessageStatus.COMPLETE and not delivery.complete:
            status = MessageStatus.UNDELIVERED  # what the user saw, not what Spark wrote
        finished = self._monotonic()
        first_token = first_token_at - started if first_token_at is not None else None
        ledger_code = (
            LEDGER_UNDELIVERED if status is MessageStatus.UNDELIVERED else _error_code(error)
        )
        calibration = (
            Calibration(place.chat_id, context.raw_prompt_tokens, usage.prompt_tokens, CALIBRATION)
            if usage is not None and usage.prompt_tokens
            else None
        )
        finish = Finish(
            status=status,
            text=answer,
            tokens=estimate_text_tokens(answer),
            sid=sid,
            error_code=error.code if isinstance(error, SparkAPIError) else None,
            telegram_message_ids=delivery.message_ids,
            ledger=LedgerEntry(
                model=model.name,
                usage=_token_usage(usage),
                user_id=queued.participant.user_id,
                chat_id=place.chat_id,
                first_token_ms=_ms(first_token) if first_token is not None else None,
                duration_ms=_ms(finished - started),
                error_code=ledger_code,
            ),
            calibration=calibration,
        )
        await checkpoints.settle()  # a checkpoint still writing lands before the final text
        try:
            await self._db.messages.finish_answer(answer_id, finish)
        except AnswerNotStreaming:
            # This process lost the conversation (paused past its lease) and another one
            # marked the answer interrupted: that stays the record, not written twice.
            log.warning(
                "chat %s: answer %d was taken over by another process; not stored again (sid=%s)",
                place.chat_id,
                answer_id,
                sid,
            )
        self._observer.spark_call(
            SparkCall(
                self._front_end,
                model.name,
                self._call_outcome(status, error, cancelled, sink.gone),
                ledger_code,
                usage,
                sid,
                first_token,
                finished - started,
            )
        )
        log.info(
            "chat %s: answer %s, %d chars, %s tokens, %.2f s (model=%s sid=%s)",
            place.chat_id,
            status.value,
            len(answer),
            usage.total_tokens if usage else "no",
            finished - started,
            model.name,
            sid,
        )
        if cancelled is not None:
            raise cancelled
        return AnswerOutcome(status, answer, sid, usage, error, delivery, sources, answer_id)

    def _call_outcome(
        self,
        status: MessageStatus,
        error: SparkError | None,
        cancelled: asyncio.CancelledError | None,
        gone: bool,
    ) -> str:
        if error is not None:
            return "error"
        if cancelled is not None:
            return "interrupted" if self._shutting_down or interrupted(cancelled) else "stopped"
        if gone:
            return "client_gone"
        if status is MessageStatus.UNDELIVERED:
            return "undelivered"
        return "ok"

    def _verdict(
        self,
        answer: str,
        error: SparkError | None,
        cancelled: asyncio.CancelledError | None,
        gone: bool,
        language: Language,
        model: SparkModel,
    ) -> tuple[MessageStatus, str | None]:
        if cancelled is not None:
            if self._shutting_down or interrupted(cancelled):
                return MessageStatus.PARTIAL, text(language, "footer_interrupted")
            if gone:  # the reader left and nobody came back for it: cut short, not stopped
                return MessageStatus.PARTIAL, None
            return MessageStatus.CANCELLED, text(language, "footer_stopped")
        if gone:
            return MessageStatus.CANCELLED, None
        if error is not None:
            footer = text(
                language, "footer_error", error=describe_failure(error, language, model.title)
            )
            return (MessageStatus.PARTIAL if answer else MessageStatus.FAILED), footer
        if is_blank(answer):  # Telegram shows nothing for it: say so instead of silence
            return MessageStatus.COMPLETE, text(language, "empty_answer")
        return MessageStatus.COMPLETE, None

    async def _deliver(self, sink: AnswerSink, ending: Ending) -> Delivery:
        """The ending; during shutdown bounded, so a chat under a long 429 deadline cannot
        hold the process past its grace (the answer is stored either way)."""
        if not self._shutting_down:
            return await sink.finish(ending)
        try:
            return await asyncio.wait_for(sink.finish(ending), self._shutdown_delivery_timeout)
        except TimeoutError:
            log.warning("final text not delivered before shutdown")
            return Delivery(message_ids=(), complete=False)

    async def _checkpoint(self, answer_id: int, answer: str) -> None:
        """The partial text so far, stored in case the process dies. Only a safety net: if the
        database fails it, the answer goes on to the user, and storing the final answer fails
        (and is reported) in its turn."""
        try:
            await self._db.messages.checkpoint(answer_id, answer)
        except Exception as exc:
            log.warning("answer %d: checkpoint not stored, the answer goes on: %s", answer_id, exc)


def with_sources(answer: str, sources: tuple[SearchSource, ...]) -> str:
    """The answer followed by its numbered search sources as Markdown links."""
    lines = [f"{source.index}. [{source.title or source.url}]({source.url})" for source in sources]
    return answer.rstrip() + "\n\n" + "\n".join(lines)


def _token_usage(usage: Usage | None) -> TokenUsage | None:
    if usage is None:
        return None
    return TokenUsage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _error_code(error: SparkError | None) -> int | None:
    if error is None:
        return None
    if isinstance(error, SparkAPIError):
        return error.code
    return LEDGER_NO_SPARK_CODE
