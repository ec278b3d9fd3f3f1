"""The web use case: a key's own conversations, their answers streamed to any number of
readers and resumable.

Built on :class:`~bot.service.conversation.ConversationService`, so a web question gets what
a Telegram one gets: the model's token budget with stored history, the user's quota and
rate limit, the ledger row, the token calibration, and nothing lost on failure. Answers run
one at a time per conversation in its lane (:class:`~bot.service.lanes.ConversationLanes`:
this process's, or shared by every process serving the API), independently of the request
that asked: each writes into an :class:`~bot.service.answer_feed.AnswerFeed`,
which readers follow and re-join (``Last-Event-ID``) while it is written. When its last
reader has been gone for ``resume_grace`` seconds, the answer is cut short and stored as
``partial``; a stop asked for by the reader stores it as ``cancelled``. Once stored, the
answer is read from storage instead. If the process writing an answer dies, another one
marks it partial (or the question, not started, unanswered): a reader that comes back finds
it so (:func:`taken_over`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bot.service.answer_feed import AnswerFeed, AnswerStored
from bot.service.clock import SYSTEM_CLOCK, Clock
from bot.service.completions import ApiCaller
from bot.service.conversation import (
    AnswerOutcome,
    ConversationService,
    Participant,
    Place,
    QueuedQuestion,
)
from bot.service.lanes import ConversationLanes, LocalLanes
from bot.service.shared_lanes import Takeover
from bot.spark.models import find_model
from coordination.conversation_queue import Entry
from storage.database import Database
from storage.dto import MessageStatus, StoredMessage
from storage.repositories.web_conversations import WEB_CHAT_TYPE, WebConversationInfo

log = logging.getLogger(__name__)

# How long an answer keeps being written with nobody reading it, so a reader can resume.
RESUME_GRACE_SECONDS = 30.0
TITLE_LENGTH = 60

# Builds the lanes answers run in, given what finishes a dead process's question.
LanesFactory = Callable[[Takeover], ConversationLanes]


class ConversationNotFound(LookupError):
    """No such conversation for this key (another key's is not found either)."""


class UnknownModel(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"The model {name!r} does not exist or is not enabled.")
        self.name = name


@dataclass(frozen=True, slots=True)
class ConversationView:
    info: WebConversationInfo
    model: str
    system_prompt: str | None
    messages: tuple[StoredMessage, ...] = ()
    answering: int | None = None  # the question being answered now


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer that is no longer being written: resumed from storage."""

    question_id: int
    message: StoredMessage | None


def title_of(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


class WebConversations:
    """Conversations for API keys: create, list, read, delete, reset, ask, resume, stop."""

    def __init__(
        self,
        *,
        database: Database,
        conversations: ConversationService,
        clock: Clock = SYSTEM_CLOCK,
        resume_grace: float = RESUME_GRACE_SECONDS,
        lanes: LanesFactory | None = None,
    ) -> None:
        self._store = database.web_conversations
        self._service = conversations
        self._clock = clock
        self._grace = resume_grace
        takeover = taken_over(conversations)
        self._lanes = lanes(takeover) if lanes is not None else LocalLanes(clock)
        # Feeds of answers asked and not yet stored, per chat, in the order asked.
        self._feeds: dict[int, deque[AnswerFeed]] = {}

    async def start(self) -> None:
        """Join the other processes' lanes (with shared ones), before the first question."""
        await self._lanes.start()

    # -- the conversations -------------------------------------------------------------------

    async def create(
        self, caller: ApiCaller, *, model: str | None = None, system_prompt: str | None = None
    ) -> ConversationView:
        """A new conversation; raises :class:`UnknownModel` or
        :class:`~bot.errors.SystemPromptTooLong` (then nothing is kept)."""
        chosen = None
        if model is not None:
            chosen = find_model(model)
            if chosen is None or chosen.name not in self._service.available_models():
                raise UnknownModel(model)
            if not caller.may_use(chosen):
                raise UnknownModel(model)
        info = await self._store.create(caller.key_id)
        place = self._place(info)
        try:
            if chosen is not None:
                await self._service.set_model(place, chosen.name)
            if system_prompt:
                await self._service.set_system_prompt(place, system_prompt)
        except BaseException:
            await self._store.delete(caller.key_id, info.number)
            raise
        return await self.get(caller, info.number)

    async def page(
        self, caller: ApiCaller, *, before: int | None = None, limit: int = 20
    ) -> list[ConversationView]:
        infos = await self._store.page(caller.key_id, before=before, limit=limit)
        return [self._view(info) for info in infos]

    async def get(self, caller: ApiCaller, number: int) -> ConversationView:
        info = await self._info(caller, number)
        messages = await self._store.messages(info.chat_id)
        return self._view(info, tuple(messages))

    async def delete(self, caller: ApiCaller, number: int) -> None:
        info = await self._info(caller, number)
        await self._stop_all(info.chat_id)
        await self._store.delete(caller.key_id, number)

    async def reset(self, caller: ApiCaller, number: int) -> ConversationView:
        """Start over (like /new): earlier messages are kept but no longer sent as context."""
        info = await self._info(caller, number)
        await self._stop_all(info.chat_id)
        participant = self._participant(info)
        await self._service.start_new_conversation(participant, self._place(info))
        return await self.get(caller, number)

    # -- answers -----------------------------------------------------------------------------

    async def ask(self, caller: ApiCaller, number: int, question: str) -> AnswerFeed:
        """Store the question and queue its answer; its feed is returned at once.

        A refused question (quota, rate, too long) is stored with a failed marker and the
        :class:`~bot.errors.ConversationError` raised, as in Telegram.
        """
        found = await self._store.arrival(caller.key_id, number)
        if found is None:
            raise ConversationNotFound(number)
        info = found.info
        participant = self._participant(info)
        arrived = (found.chat, found.conversation) if found.conversation is not None else None
        if info.title is None or arrived is None:  # the first question names it
            arrived = await self._store.name(info.chat_id, title_of(question))
            if arrived is None:
                raise ConversationNotFound(number)
        place = self._place(info, title=arrived[0].title)
        queued = await self._service.record_question(participant, place, question, arrived=arrived)
        feed = AnswerFeed(queued.question_id, clock=self._clock)
        feeds = self._feeds.setdefault(info.chat_id, deque())
        feeds.append(feed)

        async def job() -> None:
            try:
                await self._answer(info.chat_id, queued, feed)
            finally:
                feeds.remove(feed)
                if not feeds and self._feeds.get(info.chat_id) is feeds:
                    del self._feeds[info.chat_id]

        async def dropped() -> None:
            try:
                await self._service.abandon(queued)
            finally:
                feed.stored(AnswerStored(None, MessageStatus.FAILED))
                feeds.remove(feed)

        fields = {"chat": str(info.chat_id), "question": str(queued.question_id)}
        try:
            await self._lanes.submit(_lane(info.chat_id), job, fields=fields, on_drop=dropped)
        except RuntimeError:  # shutting down: the question is stored, its answer never comes
            feeds.remove(feed)
            await self._service.abandon(queued)
            raise
        return feed

    async def _answer(self, chat_id: int, queued: QueuedQuestion, feed: AnswerFeed) -> None:
        answering = asyncio.create_task(self._service.answer(queued, feed), name="web-answer")
        watching = asyncio.create_task(feed.wait_abandoned(self._grace), name="web-readers")
        outcome: AnswerOutcome | None = None
        reason: str | None = None  # why this job was cancelled, passed on to the answer
        try:
            await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
            if watching.done() and not answering.done():
                log.info("chat %s: nobody reads the answer any more: cut short", chat_id)
                feed.abandon()
                answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                outcome = await answering
        except asyncio.CancelledError as exc:
            reason = str(exc.args[0]) if exc.args else None
            raise
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            if not answering.done():  # this job was cancelled: stop, shutdown, lease lost
                answering.cancel(reason)
                with contextlib.suppress(asyncio.CancelledError):
                    await answering
            await self._store_end(chat_id, feed, outcome)

    async def _store_end(
        self, chat_id: int, feed: AnswerFeed, outcome: AnswerOutcome | None
    ) -> None:
        if outcome is not None and outcome.message_id is not None:
            # The row as the service stored it: no need to read it back.
            stored = AnswerStored(outcome.message_id, outcome.status, outcome.usage, feed.note())
            feed.stored(stored)
            return
        try:  # cut short, stopped or never asked: read what was stored
            found = await self._store.answer_to(chat_id, feed.question_id)
        except Exception:
            log.exception("chat %s: the stored answer could not be read back", chat_id)
            found = None
        status = found.status if found is not None else MessageStatus.FAILED
        usage = outcome.usage if outcome is not None else None
        feed.stored(
            AnswerStored(found.id if found is not None else None, status, usage, feed.note())
        )

    def current(self, chat_id: int) -> AnswerFeed | None:
        """The feed of the answer being written (or the next one waiting), if any."""
        feeds = self._feeds.get(chat_id)
        return feeds[0] if feeds else None

    async def resume(
        self, caller: ApiCaller, number: int, question_id: int
    ) -> AnswerFeed | StoredAnswer:
        """The answer to ``question_id``: its feed while it is written, else as stored."""
        info = await self._info(caller, number)
        for feed in self._feeds.get(info.chat_id, ()):
            if feed.question_id == question_id:
                return feed
        return StoredAnswer(question_id, await self._store.answer_to(info.chat_id, question_id))

    async def following(self, caller: ApiCaller, number: int) -> AnswerFeed | None:
        info = await self._info(caller, number)
        return self.current(info.chat_id)

    async def stop(self, caller: ApiCaller, number: int) -> bool:
        """Stop the answer being written (stored as cancelled); queued ones still run."""
        info = await self._info(caller, number)
        return await self._lanes.cancel_current(_lane(info.chat_id))

    async def _stop_all(self, chat_id: int) -> None:
        """Stop the running answer and wait for every queued one's end (delete, reset)."""
        while feeds := list(self._feeds.get(chat_id, ())):
            await self._lanes.cancel_current(_lane(chat_id))
            await _ended(feeds[0])

    def begin_shutdown(self) -> None:
        self._service.begin_shutdown()

    async def shutdown(self, grace: float) -> None:
        """Answers get ``grace`` seconds to finish, then are cut short and stored partial."""
        self._service.begin_shutdown()
        await self._lanes.shutdown(grace)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _participant(info: WebConversationInfo) -> Participant:
        """The key's user as stored, so that asking leaves its profile as it is."""
        owner = info.owner
        return Participant(
            user_id=owner.user_id,
            username=owner.username,
            first_name=owner.first_name,
            language_code=owner.language_code,
        )

    async def _info(self, caller: ApiCaller, number: int) -> WebConversationInfo:
        info = await self._store.get(caller.key_id, number)
        if info is None:
            raise ConversationNotFound(number)
        return info

    def _place(self, info: WebConversationInfo, title: str | None = None) -> Place:
        return Place(chat_id=info.chat_id, chat_type=WEB_CHAT_TYPE, title=title or info.title)

    def _view(
        self, info: WebConversationInfo, messages: tuple[StoredMessage, ...] = ()
    ) -> ConversationView:
        settings = self._service
        model = info.model if info.model in settings.available_models() else None
        feed = self.current(info.chat_id)
        return ConversationView(
            info,
            model or settings.default_model(),
            info.system_prompt,
            messages,
            feed.question_id if feed is not None else None,
        )


def _lane(chat_id: int) -> str:
    """A web conversation's lane: its chat (a web conversation has no topics or members)."""
    return str(chat_id)


def taken_over(service: ConversationService) -> Takeover:
    """What finishes a question whose process died (with lanes shared by several): its
    answer, if started, is marked partial as checkpointed; else the question unanswered. Its
    reader went with that process; one that comes back reads it so from storage."""

    async def take_over(key: str, entry: Entry) -> None:
        try:
            chat_id, question_id = int(entry.fields["chat"]), int(entry.fields["question"])
        except (KeyError, ValueError):
            log.warning("conversation %s: a queued question's fields are unreadable", key)
            return
        place = Place(chat_id=chat_id, chat_type=WEB_CHAT_TYPE)
        if entry.started:
            await service.interrupt_taken_over(Participant(user_id=0), place)
        else:
            await service.mark_taken_over_unanswered(question_id, place)

    return take_over


async def _ended(feed: AnswerFeed) -> None:
    async for _ in feed.follow(0):
        pass
