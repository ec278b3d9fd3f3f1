"""Shows an answer in Telegram while Spark writes it, then makes it permanent.

The service hands :meth:`TelegramAnswer.event` each piece of the answer
(:mod:`bot.service.events`); that only records the newest text and wakes a pump task, so Spark is
never held up by Telegram. Reasoning is previewed (its tail, marked 💭) until the answer itself
begins. Every call asks the process's send scheduler (:mod:`bot.telegram.send_scheduler`) for a
slot: the first feedback ("Thinking…", the first typing action) first, the final text in the
order Spark finished, intermediate texts last. The pump holds at most one ask for a refresh and,
once granted, shows the newest text if it has grown enough: intermediate texts in between are
never sent. :meth:`TelegramAnswer.finish` renders the final Markdown into entities and always
lands, waiting out any 429 deadline first. Every wait (typing, draft refreshes) is on the
scheduler's clock (:mod:`bot.service.clock`).

Two ways to show a growing answer:
- ``draft`` (private chats): ``sendMessageDraft`` animates a preview, starting empty so the
  client shows "Thinking…" (at once, or once the first "typing…" fades without any text);
  the answer is made permanent with ``sendMessage``. If the chat refuses drafts, the stream
  switches to ``edit`` and the chat is remembered.
- ``edit`` (groups, topics, fallback): a reply message edited in place.

Long answers are split into parts of at most 4096 UTF-16 units
(:func:`bot.telegram.textsplit.split_text`); every part but the last is a complete message of its
own, the last one is the live preview.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from telegram import Bot, LinkPreviewOptions, Message, MessageEntity, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.service.clock import Clock
from bot.service.conversation import with_sources
from bot.service.events import (
    Delivery,
    Ending,
    Finished,
    FunctionCalled,
    ReasoningDelta,
    SourcesFound,
    StreamEvent,
    TextDelta,
)
from bot.service.visible_text import is_blank
from bot.telegram.formatting import MessagePart, Rendered, render_message_parts
from bot.telegram.generation_stop import DRAFT_STOP_OPTIONS
from bot.telegram.send_budgets import SendKind
from bot.telegram.send_scheduler import Priority, SendScheduler
from bot.telegram.textsplit import TELEGRAM_TEXT_LIMIT, split_text, utf16_len

log = logging.getLogger(__name__)

StreamMode = Literal["draft", "edit"]

T = TypeVar("T")

_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
REASONING_PREVIEW_CHARS = 400


@dataclass(frozen=True, slots=True)
class ChatTarget:
    """Where an answer goes."""

    chat_id: int
    is_group: bool
    thread_id: int | None = None
    reply_to_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class StreamTuning:
    min_growth: int = 24  # characters before an intermediate update is worth sending
    typing_interval: float = 4.5  # Telegram shows "typing" for about 5 s per action
    # A draft stays on screen for about 30 s without an update: re-send it before then while
    # Spark is silent (a slow first frame), so "Thinking…" or the text so far does not vanish.
    draft_refresh: float = 20.0
    final_attempts: int = 6  # network failures tolerated while delivering the final text
    network_retry_delay: float = 1.0


class DraftSupport:
    """Remembers the private chats whose client refused ``sendMessageDraft``."""

    def __init__(self) -> None:
        self._refused: set[int] = set()

    def refused(self, chat_id: int) -> bool:
        return chat_id in self._refused

    def mark_refused(self, chat_id: int) -> None:
        self._refused.add(chat_id)


class _Deferred(Exception):
    """An intermediate update gave its place up (the answer is finishing, or met a 429)."""


class _Gone(Exception):
    """The message was deleted or the bot blocked: stop talking to this chat."""


class _DraftsRefused(Exception):
    """The chat does not take drafts."""


@dataclass(slots=True)
class _Shown:
    message_id: int
    key: tuple[object, ...]


def _key(text: str, entities: Sequence[MessageEntity] = ()) -> tuple[object, ...]:
    return (text, *((e.type, e.offset, e.length, e.url, e.language) for e in entities))


def _is_not_modified(exc: BadRequest) -> bool:
    return "not modified" in exc.message.lower()


def _is_gone(exc: TelegramError) -> bool:
    if isinstance(exc, Forbidden):
        return True
    text = exc.message.lower()
    return "message to edit not found" in text or "chat not found" in text


class TelegramAnswer:
    """One answer being streamed into one Telegram chat."""

    def __init__(
        self,
        bot: Bot,
        scheduler: SendScheduler,
        target: ChatTarget,
        *,
        mode: StreamMode,
        drafts: DraftSupport,
        draft_id: int,
        tuning: StreamTuning | None = None,
        typed_at: float | None = None,
    ) -> None:
        self._bot = bot
        self._scheduler = scheduler
        self._target = target
        self._mode: StreamMode = "edit" if drafts.refused(target.chat_id) else mode
        self._drafts = drafts
        self._draft_id = draft_id
        self._tuning = tuning or StreamTuning()
        self._clock: Clock = scheduler.clock
        self._shown_at = self._clock.now()  # when the visible text last changed (staleness)
        self._finished_at: float | None = None  # when Spark's ending reached us (final order)
        self._prepaid: SendKind | None = None  # a slot granted to the pump, for its next call
        self._pending_slot: asyncio.Future[None] | None = None  # the pump's ask, withdrawable
        self._answer = ""
        self._reasoning = ""
        self._latest = ""
        self._shown_length = -1
        self._draft_text: str | None = None  # the draft on screen (None: "Thinking…")
        self._draft_sent_at: float | None = None  # None until the first draft went out
        self._draft_lock = asyncio.Lock()  # a refresh never overtakes a newer draft
        self._messages: list[_Shown] = []
        self._changed = asyncio.Event()
        self._finishing = asyncio.Event()
        self._first_text = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._typing_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._gone = False
        self._finished = False
        self._typed_at = typed_at  # "typing…" already sent (bot.telegram.early_feedback)

    @property
    def gone(self) -> bool:
        return self._gone

    @property
    def mode(self) -> StreamMode:
        return self._mode

    @property
    def draft_id(self) -> int:
        return self._draft_id

    @property
    def message_ids(self) -> tuple[int, ...]:
        return tuple(shown.message_id for shown in self._messages)

    async def start(self) -> None:
        """Show that an answer is coming, and start the pump. The first feedback goes out in
        the background, at the scheduler's first priority: Spark is asked meanwhile."""
        if self._mode == "edit":
            self._typing_task = asyncio.create_task(self._keep_typing(), name="typing")
        else:
            self._refresh_task = asyncio.create_task(self._refresh_drafts(), name="draft-refresh")
        self._pump_task = asyncio.create_task(self._pump(), name="answer-pump")

    async def _first_draft(self) -> None:
        try:
            await self._send_draft(None, priority=Priority.FIRST, only_if_blank=True)
        except _DraftsRefused:
            self._fall_back_to_edits()
            if self._typing_task is None and not self._finishing.is_set():
                self._typing_task = asyncio.create_task(self._keep_typing(), name="typing")
        except (_Deferred, _Gone):
            pass
        except TelegramError as exc:
            # A Bot API hiccup must not cost the answer: the refresh loop tries again soon.
            log.warning("chat %s: first draft failed: %s", self._target.chat_id, exc)

    def event(self, event: StreamEvent) -> None:
        """Take the next piece of the answer; never blocks."""
        if isinstance(event, TextDelta):
            self._answer += event.text
            self._show(self._answer)
        elif isinstance(event, ReasoningDelta):
            self._reasoning += event.text
            if not self._answer:
                self._show(_reasoning_preview(self._reasoning))
        elif isinstance(event, SourcesFound | FunctionCalled):
            pass  # sources are listed under the final text; the bot declares no functions

    def _show(self, text: str) -> None:
        """Record the newest full text; wake the pump only when it would show it (a wake per
        Spark frame is most of a stream's CPU between two updates)."""
        if self._finished or self._gone:
            return
        self._latest = text
        if self._grown_enough(text):
            self._changed.set()

    async def finish(self, ending: Ending) -> Delivery:
        """Stop previews and deliver the ending (rendered), waiting out any 429."""
        self._finished_at = self._clock.now()
        text, footer = ending.text, ending.note
        if isinstance(ending, Finished) and ending.complete and ending.sources:
            text = with_sources(text, ending.sources)
        return await self._deliver(text, footer)

    async def _deliver(self, text: str, footer: str | None) -> Delivery:
        self._finished = True
        await self._stop_background()
        if self._gone:
            return Delivery(self.message_ids, gone=True, complete=False)
        parts = _final_parts(text, footer)
        formatted = True
        complete = True
        try:
            for index, part in enumerate(parts):
                formatted &= await self._show_final_part(index, part)
            for extra in self._messages[len(parts) :]:
                await self._delete(extra.message_id)
            del self._messages[len(parts) :]
        except _Gone:
            self._gone = True
            complete = False
        except TelegramError as exc:
            log.error("chat %s: final answer not delivered: %s", self._target.chat_id, exc)
            complete = False
        return Delivery(self.message_ids, gone=self._gone, formatted=formatted, complete=complete)

    async def aclose(self) -> None:
        """Stop background work without delivering anything more."""
        self._finished = True
        await self._stop_background()

    # -- background tasks -------------------------------------------------------------------

    async def _stop_background(self) -> None:
        self._finishing.set()
        self._changed.set()
        if self._pending_slot is not None:
            self._pending_slot.cancel()  # the pump gives its place up; no request was made
        for task in (self._typing_task, self._refresh_task):
            if task is not None:
                task.cancel()  # a cancelled draft or chat action leaves nothing behind
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._typing_task = self._refresh_task = None
        if self._pump_task is not None:
            # The pump finishes the request it is making: cancelling it mid-request could
            # leave a message we do not know about, which the final text would then repeat.
            await self._pump_task
            self._pump_task = None

    async def _keep_typing(self) -> None:
        priority = Priority.FIRST
        if self._typed_at is not None:
            priority = Priority.KEEPALIVE
            await self._while_early_typing_shows()
        while not self._first_text.is_set():
            with contextlib.suppress(TelegramError, _Deferred):
                await self._call(
                    lambda: self._bot.send_chat_action(
                        self._target.chat_id,
                        ChatAction.TYPING,
                        message_thread_id=self._target.thread_id,
                    ),
                    final=False,
                    kind="action",
                    priority=priority,
                )
            priority = Priority.KEEPALIVE
            await self._wait(self._first_text, self._tuning.typing_interval)

    async def _refresh_drafts(self) -> None:
        # "typing…" on screen already: "Thinking…" only if no text comes before it fades.
        # When a thousand ask at once that is a call fewer for each while the questions are
        # still arriving, and most answers' first text comes well before.
        await self._while_early_typing_shows()
        if not self._first_text.is_set():
            await self._first_draft()
        interval = self._tuning.draft_refresh
        clock = self._clock
        while not self._finishing.is_set():
            # Nothing on screen yet (the first draft failed or was deferred): try again soon.
            due = (
                self._draft_sent_at + interval
                if self._draft_sent_at is not None
                else clock.now() + self._tuning.network_retry_delay
            )
            await self._wait(self._finishing, max(0.0, due - clock.now()))
            if self._finishing.is_set() or self._mode != "draft" or self._gone:
                return
            if self._draft_sent_at is not None and clock.now() - self._draft_sent_at < interval:
                continue  # the pump showed something newer meanwhile
            try:
                if self._draft_sent_at is None:
                    await self._send_draft(None, priority=Priority.FIRST, only_if_blank=True)
                else:
                    await self._send_draft(
                        self._draft_text, refresh=True, priority=Priority.KEEPALIVE
                    )
            except (_Deferred, NetworkError):
                await clock.sleep(min(1.0, interval))  # the next round tries again
            except _DraftsRefused:
                return  # the pump falls back to edits on its next update
            except _Gone:
                self._gone = True
                return

    async def _while_early_typing_shows(self) -> None:
        """Wait while the question's early "typing…" still shows, or until the first text."""
        if self._typed_at is not None:
            since = self._clock.now() - self._typed_at
            await self._wait(self._first_text, self._tuning.typing_interval - since)

    async def _pump(self) -> None:
        while not self._finishing.is_set():
            await self._changed.wait()
            self._changed.clear()
            if self._finishing.is_set():
                return
            text = self._latest
            if not text.strip() or not self._grown_enough(text):
                continue
            # One ask at a time; once granted, the newest text goes (coalesced).
            kind = self._preview_kind(text)
            if not await self._take_slot(kind, Priority.REFRESH, self._shown_at):
                return
            self._prepaid = kind
            text = self._latest
            try:
                await self._show_preview(text)
                self._shown_length = len(text)
                self._shown_at = self._clock.now()
                self._first_text.set()
            except _Deferred:
                self._changed.set()  # try again with whatever is newest once allowed
            except _Gone:
                self._gone = True
                log.info("chat %s: answer message gone; stream ends", self._target.chat_id)
                return
            except TelegramError as exc:
                # A preview is disposable: the next one (or the final text) carries it all.
                log.warning("chat %s: preview update failed: %s", self._target.chat_id, exc)
            finally:
                if self._prepaid is not None:  # granted, and no call needed it after all
                    self._prepaid = None
                    self._scheduler.release()

    def _preview_kind(self, text: str) -> SendKind:
        """What the next preview's first call is: a draft, unless a part must be frozen."""
        if self._mode == "draft" and utf16_len(text) <= TELEGRAM_TEXT_LIMIT * (
            len(self._messages) + 1
        ):
            return "draft"
        return "message"

    async def _take_slot(self, kind: SendKind, priority: Priority, order: float) -> bool:
        """Wait for a slot; False when the answer began finishing meanwhile (place given up)."""
        future = self._scheduler.ask(
            self._target.chat_id,
            is_group=self._target.is_group,
            kind=kind,
            priority=priority,
            order=order,
        )
        self._pending_slot = future
        try:
            await future
            return True
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                return False  # withdrawn by _stop_background, not a cancellation of ours
            if future.done() and not future.cancelled():
                self._scheduler.release()  # granted just as this task was cancelled
            raise
        finally:
            self._pending_slot = None

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        """Wait until ``event`` is set, at most ``seconds`` on the clock."""
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(seconds):
                await event.wait()

    def _grown_enough(self, text: str) -> bool:
        """Whether ``text`` is worth an update over what is shown. The first text shows at
        once; later ones need some growth, except when a part fills up (the split must happen
        promptly so the frozen part shows its complete text)."""
        growth = len(text) - self._shown_length
        if growth < 1:
            return False
        if self._shown_length < 0 or growth >= self._tuning.min_growth:
            return True
        limit = TELEGRAM_TEXT_LIMIT * (len(self._messages) + 1)
        # A character is one or two UTF-16 units: count them only when it could matter.
        return 2 * len(text) > limit and utf16_len(text) > limit

    # -- previews -----------------------------------------------------------------------------

    async def _show_preview(self, text: str) -> None:
        # Telegram trims each message; sending trimmed text keeps "not modified" edits away.
        parts = [part.strip() for part in split_text(text)]
        if not parts:
            return
        if self._mode == "draft":
            try:
                for index, part in enumerate(parts[:-1]):
                    await self._show_message(index, part, (), final=False)
                await self._send_draft(parts[-1])
                return
            except _DraftsRefused:
                self._fall_back_to_edits()
        for index, part in enumerate(parts):
            await self._show_message(index, part, (), final=False)

    def _fall_back_to_edits(self) -> None:
        log.info("chat %s refuses drafts; streaming by edits", self._target.chat_id)
        self._drafts.mark_refused(self._target.chat_id)
        self._mode = "edit"

    async def _send_draft(
        self,
        text: str | None,
        *,
        refresh: bool = False,
        priority: Priority = Priority.REFRESH,
        only_if_blank: bool = False,
    ) -> None:
        """Show ``text`` as the draft (None: "Thinking…"); ``refresh`` re-sends the same one;
        ``only_if_blank`` sends nothing once any draft is on screen."""
        async with self._draft_lock:
            if only_if_blank and self._draft_sent_at is not None:
                return
            on_screen = self._draft_sent_at is not None and text == self._draft_text
            if on_screen != refresh:
                # Unchanged, or (a refresh) a newer draft went out while this waited.
                return
            try:
                await self._call(
                    lambda: self._bot.send_message_draft(
                        self._target.chat_id,
                        self._draft_id,
                        text=text,
                        message_thread_id=self._target.thread_id,
                        api_kwargs=DRAFT_STOP_OPTIONS,
                    ),
                    final=False,
                    kind="draft",
                    priority=priority,
                )
            except (BadRequest, InvalidToken) as exc:
                # A Bot API server without drafts answers 404, which ptb raises as InvalidToken.
                raise _DraftsRefused from exc
            self._draft_text = text
            self._draft_sent_at = self._clock.now()

    # -- final --------------------------------------------------------------------------------

    async def _show_final_part(self, index: int, part: MessagePart) -> bool:
        """Show one final part; returns False when it had to fall back to plain text."""
        rendered = part.rendered
        try:
            await self._show_message(index, rendered.text, rendered.entities, final=True)
            return True
        except BadRequest as exc:
            if not rendered.entities:
                raise
            log.warning(
                "chat %s: formatted answer refused (%s); sending plain text",
                self._target.chat_id,
                exc.message,
            )
        await self._show_message(index, part.plain, (), final=True)
        return False

    # -- one message --------------------------------------------------------------------------

    async def _show_message(
        self, index: int, text: str, entities: Sequence[MessageEntity], *, final: bool
    ) -> None:
        key = _key(text, entities)
        if index < len(self._messages):
            shown = self._messages[index]
            if shown.key == key:
                return
            await self._call(
                lambda: self._bot.edit_message_text(
                    text,
                    chat_id=self._target.chat_id,
                    message_id=shown.message_id,
                    entities=entities or None,
                    link_preview_options=_NO_PREVIEW,
                ),
                final=final,
            )
            shown.key = key
            return
        reply_to = (
            self._messages[-1].message_id if self._messages else self._target.reply_to_message_id
        )
        message = await self._call(
            lambda: self._bot.send_message(
                self._target.chat_id,
                text,
                entities=entities or None,
                message_thread_id=self._target.thread_id,
                reply_parameters=(
                    ReplyParameters(reply_to, allow_sending_without_reply=True)
                    if reply_to is not None
                    else None
                ),
                link_preview_options=_NO_PREVIEW,
            ),
            final=final,
        )
        if isinstance(message, Message):
            self._messages.append(_Shown(message.message_id, key))

    async def _delete(self, message_id: int) -> None:
        with contextlib.suppress(TelegramError):
            await self._bot.delete_message(self._target.chat_id, message_id)

    async def _call(
        self,
        request: Callable[[], Awaitable[T]],
        *,
        final: bool,
        kind: SendKind = "message",
        priority: Priority | None = None,
    ) -> T | None:
        """Make one request in a slot from the scheduler. Final texts wait out 429s and
        network failures; anything else gives up (:class:`_Deferred`) and lets the next
        preview, or the final text, carry it."""
        chat_id = self._target.chat_id
        if priority is None:
            priority = Priority.FINAL if final else Priority.REFRESH
        order = (
            self._finished_at
            if priority == Priority.FINAL and self._finished_at is not None
            else self._shown_at
        )
        failures = 0
        while True:
            in_pump = asyncio.current_task() is self._pump_task
            if in_pump and self._prepaid == kind and not final:
                self._prepaid = None  # the pump's slot pays for its first call
            elif final or not in_pump:
                # Typing and draft re-sends are cancelled with their task, finals never.
                await self._scheduler.slot(
                    chat_id,
                    is_group=self._target.is_group,
                    kind=kind,
                    priority=priority,
                    order=order,
                )
            elif not await self._take_slot(kind, priority, order):
                raise _Deferred
            try:
                try:
                    return await request()
                finally:
                    self._scheduler.release()
            except RetryAfter as exc:
                deadline = self._scheduler.retry_after(chat_id, kind, exc.retry_after)
                log.warning(
                    "chat %s: Telegram flood control, nothing sent for %.1f s",
                    chat_id,
                    deadline - self._scheduler.now(),
                )
                if not final:
                    raise _Deferred from exc
            except BadRequest as exc:
                if _is_not_modified(exc):
                    return None
                if _is_gone(exc):
                    raise _Gone from exc
                raise
            except Forbidden as exc:
                log.info("chat %s: bot blocked or removed (%s)", chat_id, exc.message)
                raise _Gone from exc
            except NetworkError:
                failures += 1
                if not final or failures >= self._tuning.final_attempts:
                    raise
                await self._clock.sleep(self._tuning.network_retry_delay * failures)


def _reasoning_preview(reasoning: str) -> str:
    tail = reasoning[-REASONING_PREVIEW_CHARS:]
    return "💭 " + ("…" + tail if len(reasoning) > len(tail) else tail)


def _final_parts(text: str, footer: str | None) -> list[MessagePart]:
    parts = [] if is_blank(text) else render_message_parts(text)
    if not footer:
        return parts
    if parts:
        last = parts[-1]
        joined = f"{last.rendered.text}\n\n{footer}"
        if utf16_len(joined) <= TELEGRAM_TEXT_LIMIT and (
            utf16_len(f"{last.plain}\n\n{footer}") <= TELEGRAM_TEXT_LIMIT
        ):
            parts[-1] = MessagePart(
                Rendered(joined, last.rendered.entities), f"{last.plain}\n\n{footer}"
            )
            return parts
    return [*parts, MessagePart(Rendered(footer, ()), footer)]
