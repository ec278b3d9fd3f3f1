"""The stateless completion use case: a whole history in, one answer streamed out, one ledger
row stored.

Front ends that speak a stateless API (the OpenAI-compatible gateway) call :meth:`admit`
first: the prompt budget, the key's own rate limit, then the user's quota and rate limit
(:class:`~bot.service.conversation.Admission`), all before Spark is called, so a refused
request costs nothing. :meth:`CompletionService.run` then streams Spark into an
:class:`~bot.service.events.AnswerSink` and stores one ledger row whatever happens: Spark's
usage and sid, its error code, :data:`~storage.dto.LEDGER_CLIENT_GONE` when the client hung
up (the front end cancels the call), :data:`~storage.dto.LEDGER_UNDELIVERED` when shutdown
interrupted it. What was asked and answered is not stored (the request carries its history)
unless the operator asks for it (``store_bodies``): then the question and the answer go into
a conversation of the key's own, in the same unit of work as the ledger row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from bot.errors import QuestionTooLong, RateLimitExceeded
from bot.service.conversation import Admission, AdmissionTicket, Participant
from bot.service.events import (
    NO_OBSERVER,
    AnswerSink,
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
from bot.spark import types as spark_events
from bot.spark.client import SparkClient
from bot.spark.errors import SparkAPIError, SparkError
from bot.spark.models import SparkModel
from bot.spark.tokens import (
    DEFAULT_RATIO,
    calibrated_tokens,
    estimate_messages_tokens,
    estimate_text_tokens,
)
from bot.spark.types import ChatMessage, GenerationOptions, Usage
from coordination.limits import SharedLimits
from storage.database import Database
from storage.dto import (
    LEDGER_CLIENT_GONE,
    LEDGER_NO_SPARK_CODE,
    LEDGER_UNDELIVERED,
    LedgerEntry,
    MessageStatus,
    TokenUsage,
)
from storage.repositories.messages import Finish

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60.0
UID_LENGTH = 32


@dataclass(frozen=True, slots=True)
class ApiCaller:
    """Who is calling: one API key, the user its traffic is billed to, its own limits."""

    key_id: int
    key_name: str
    user_id: int
    rate_per_minute: int | None = None
    models: tuple[str, ...] = ()  # empty: every enabled model

    def may_use(self, model: SparkModel) -> bool:
        return not self.models or model.name in self.models


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One request, already mapped to Spark's terms; ``end_user`` is the client's ``user``."""

    model: SparkModel
    messages: tuple[ChatMessage, ...]
    options: GenerationOptions = field(default_factory=GenerationOptions)
    end_user: str | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed every limit; it holds its quota reservation until it has run."""

    caller: ApiCaller
    request: CompletionRequest
    max_tokens: int
    ticket: AdmissionTicket | None


def spark_uid(caller: ApiCaller, end_user: str | None) -> str:
    """The uid Spark sees. Stable per key and ``user`` (so Spark can tell a key's users
    apart), with no key or user text in it; without a ``user``, a fresh one per request:
    Spark answers one question per uid at a time, and clients send requests in parallel."""
    if end_user is None:
        return secrets.token_hex(UID_LENGTH // 2)
    digest = hashlib.sha256(f"{caller.key_id}:{end_user}".encode()).hexdigest()
    return digest[:UID_LENGTH]


def estimated_prompt_tokens(messages: tuple[ChatMessage, ...]) -> int:
    """The prompt's estimate as budget checks count it (safety margin included)."""
    return calibrated_tokens(estimate_messages_tokens(messages), DEFAULT_RATIO)


class _KeyRates:
    """Each key's own sliding window of admitted requests per minute."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._recent: dict[int, deque[float]] = {}

    def take(self, caller: ApiCaller) -> float | None:
        """Count a request now; None when the key has no rate or its window has room."""
        limit = caller.rate_per_minute
        if not limit:
            return None
        now = self._monotonic()
        recent = self._recent.setdefault(caller.key_id, deque())
        while recent and recent[0] <= now - RATE_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= limit:
            raise RateLimitExceeded(max(0.0, recent[0] + RATE_WINDOW_SECONDS - now))
        recent.append(now)
        return now

    def give_back(self, caller: ApiCaller, taken: float | None) -> None:
        """Forget a request counted by :meth:`take` that was refused further on."""
        recent = self._recent.get(caller.key_id)
        if taken is not None and recent and taken in recent:
            recent.remove(taken)


class CompletionService:
    """Stateless completions for API keys, on the same Spark client, limits and ledger as
    the conversations."""

    def __init__(
        self,
        *,
        database: Database,
        spark: SparkClient,
        admission: Admission | None = None,
        store_bodies: bool = False,
        observer: SparkCallObserver = NO_OBSERVER,
        monotonic: Callable[[], float] = time.monotonic,
        shared: SharedLimits | None = None,
    ) -> None:
        self._db = database
        self._observer = observer
        # Several processes: each key's rate window is counted in Redis for all of them.
        self._shared = shared
        self._store_bodies = store_bodies
        self._spark = spark
        self._admission = admission
        self._monotonic = monotonic
        self._rates = _KeyRates(monotonic)
        self._shutting_down = False

    def begin_shutdown(self) -> None:
        """From now on a cancelled request was interrupted, not abandoned by its client."""
        self._shutting_down = True

    def max_tokens(self, request: CompletionRequest) -> int:
        """The answer's token cap: the request's, else the operator's default, else the
        model's."""
        model = request.model
        return (
            request.options.max_tokens
            or self._spark.options_for(model).max_tokens
            or model.default_max_tokens
        )

    def _options(self, request: CompletionRequest, max_tokens: int) -> GenerationOptions:
        """The request's options over the operator's defaults for the model."""
        defaults = self._spark.options_for(request.model)
        options = request.options
        return replace(
            options,
            max_tokens=max_tokens,
            temperature=(
                options.temperature if options.temperature is not None else defaults.temperature
            ),
            top_k=options.top_k if options.top_k is not None else defaults.top_k,
        )

    async def admit(self, caller: ApiCaller, request: CompletionRequest) -> Admitted:
        """Check the prompt budget, the key's rate, the user's rate and quota; raise a
        :class:`~bot.errors.ConversationError` to refuse (no Spark call is made then)."""
        model = request.model
        max_tokens = self.max_tokens(request)
        budget = model.prompt_budget(max_tokens)
        estimated = estimated_prompt_tokens(request.messages)
        if estimated > budget:
            raise QuestionTooLong(estimated, budget)
        taken = await self._take_rate(caller)
        ticket: AdmissionTicket | None = None
        if self._admission is not None:
            try:
                ticket = await self._admission.admit(
                    Participant(user_id=caller.user_id), model, max_tokens
                )
            except BaseException:
                self._rates.give_back(caller, taken)
                raise
        return Admitted(caller, request, max_tokens, ticket)

    async def _take_rate(self, caller: ApiCaller) -> float | None:
        limit = caller.rate_per_minute
        if self._shared is None or not limit:
            return self._rates.take(caller)
        wait = await self._shared.take_rate(f"key:{caller.key_id}", limit, RATE_WINDOW_SECONDS)
        if wait is not None:
            raise RateLimitExceeded(wait)
        return None  # counted in Redis: a request refused further on still counts there

    async def run(
        self,
        admitted: Admitted,
        sink: AnswerSink,
        *,
        on_sid: Callable[[str], None] | None = None,
    ) -> SparkCall:
        """Stream the answer into ``sink`` and store the ledger row; a cancellation (the
        client hung up, or shutdown) is recorded, then re-raised. ``on_sid`` hears Spark's
        session id as soon as Spark names it, before the first event."""
        try:
            return await self._run(admitted, sink, on_sid)
        finally:
            if admitted.ticket is not None:
                admitted.ticket.release()

    async def _run(
        self, admitted: Admitted, sink: AnswerSink, on_sid: Callable[[str], None] | None
    ) -> SparkCall:
        request, caller = admitted.request, admitted.caller
        model = request.model
        options = self._options(request, admitted.max_tokens)
        started = self._monotonic()
        first_token_at: float | None = None
        text = ""
        usage: Usage | None = None
        sid: str | None = None
        error: SparkError | None = None
        cancelled: asyncio.CancelledError | None = None
        await sink.start()
        try:
            stream = self._spark.stream(
                request.messages,
                spark_uid(caller, request.end_user),
                model=model,
                options=options,
                on_sid=on_sid,
            )
            async with aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, spark_events.TextDelta):
                        text += event.text
                        first_token_at = first_token_at or self._monotonic()
                        sink.event(TextDelta(event.text))
                    elif isinstance(event, spark_events.ReasoningDelta):
                        first_token_at = first_token_at or self._monotonic()
                        sink.event(ReasoningDelta(event.text))
                    elif isinstance(event, spark_events.FunctionCallDelta):
                        first_token_at = first_token_at or self._monotonic()
                        sink.event(FunctionCalled(event.call))
                    elif isinstance(event, spark_events.SearchSourcesDelta):
                        sink.event(SourcesFound(event.sources))
                    else:
                        usage, sid = event.usage, event.sid
                    if sink.gone:
                        break
        except asyncio.CancelledError as exc:
            cancelled = exc
        except SparkError as exc:
            error, sid = exc, exc.sid
            text = text or exc.partial_text
        outcome, code = self._verdict(error, cancelled, sink.gone)
        if cancelled is None and not sink.gone:
            ending: Ending = (
                Failed(text, error, str(error))
                if error is not None
                else Finished(text, MessageStatus.COMPLETE, None, (), usage, sid)
            )
            try:
                await sink.finish(ending)
            except asyncio.CancelledError as exc:  # the client hung up during the ending
                cancelled = exc
                outcome, code = self._verdict(error, cancelled, True)
        finished = self._monotonic()
        first_token = first_token_at - started if first_token_at is not None else None
        # The client may hang up (and so cancel this task) while the row is written: the row
        # is written whole all the same, then the cancellation goes on.
        record = asyncio.ensure_future(
            self._record(admitted, text, usage, sid, code, first_token, finished - started)
        )
        try:
            await asyncio.shield(record)
        except asyncio.CancelledError as exc:
            await record
            cancelled = cancelled or exc
        log.info(
            "api key %s: %s, %d chars, %s tokens, %.2f s (model=%s sid=%s code=%s)",
            caller.key_name,
            outcome,
            len(text),
            usage.total_tokens if usage else "no",
            finished - started,
            model.name,
            sid,
            code,
        )
        call = SparkCall(
            "api", model.name, outcome, code, usage, sid, first_token, finished - started
        )
        self._observer.spark_call(call)
        if cancelled is not None:
            await sink.aclose()
            raise cancelled
        return call

    def _verdict(
        self, error: SparkError | None, cancelled: asyncio.CancelledError | None, gone: bool
    ) -> tuple[str, int | None]:
        if cancelled is not None and self._shutting_down:
            return "interrupted", LEDGER_UNDELIVERED
        if cancelled is not None or gone:
            return "client_gone", LEDGER_CLIENT_GONE
        if error is None:
            return "ok", None
        if isinstance(error, SparkAPIError) and error.code > 0:
            return "error", error.code
        return "error", LEDGER_NO_SPARK_CODE

    async def _record(
        self,
        admitted: Admitted,
        text: str,
        usage: Usage | None,
        sid: str | None,
        code: int | None,
        first_token: float | None,
        duration: float,
    ) -> None:
        """The request's ledger row (what quotas and /stats count), and with
        ``store_bodies`` its question and answer."""
        caller, model = admitted.caller, admitted.request.model
        try:
            first_token_ms = _ms(first_token) if first_token is not None else None
            if not self._store_bodies:
                await self._db.usage.record(
                    model=model.name,
                    usage=_token_usage(usage),
                    user_id=caller.user_id,
                    chat_id=None,
                    first_token_ms=first_token_ms,
                    duration_ms=_ms(duration),
                    sid=sid,
                    error_code=code,
                )
                return
            # The key's own "chat": its user id, which no Telegram user has.
            chat_id = caller.user_id
            asked = admitted.request.messages[-1].content
            await self._db.messages.store_completion(
                chat_id,
                f"key {caller.key_name}",
                asked,
                question_tokens=estimate_text_tokens(asked),
                model=model.name,
                finish=Finish(
                    status=_status(code, text),
                    text=text,
                    tokens=estimate_text_tokens(text),
                    sid=sid,
                    error_code=code,
                    ledger=LedgerEntry(
                        model=model.name,
                        usage=_token_usage(usage),
                        user_id=caller.user_id,
                        chat_id=chat_id,
                        first_token_ms=first_token_ms,
                        duration_ms=_ms(duration),
                        error_code=code,
                    ),
                ),
            )
        except Exception:
            log.exception(
                "api key %s: ledger row not stored (model=%s sid=%s tokens=%s)",
                admitted.caller.key_name,
                admitted.request.model.name,
                sid,
                usage.total_tokens if usage else "no",
            )


def _status(code: int | None, text: str) -> MessageStatus:
    if code is None:
        return MessageStatus.COMPLETE
    if code == LEDGER_CLIENT_GONE:
        return MessageStatus.CANCELLED
    return MessageStatus.PARTIAL if text else MessageStatus.FAILED


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _token_usage(usage: Usage | None) -> TokenUsage | None:
    """Spark's usage in storage's terms."""
    if usage is None:
        return None
    return TokenUsage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
