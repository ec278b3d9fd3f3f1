"""The port every front end implements: what the conversation service streams into.

An answer is told as typed events, in order: any number of :class:`TextDelta`,
:class:`ReasoningDelta`, :class:`SourcesFound` and :class:`FunctionCalled` while Spark writes,
then exactly one ending — :class:`Finished` (complete, stopped or interrupted, with usage and
sid) or :class:`Failed` (Spark or the service refused, with what had streamed). The front end
decides how each looks: Telegram edits a message in place or animates a draft, the terminal
prints as it goes. Nothing here knows a front end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.errors import ConversationError
from bot.spark.errors import SparkError
from bot.spark.types import FunctionCall, SearchSource, Usage
from storage.dto import MessageStatus


@dataclass(frozen=True, slots=True)
class TextDelta:
    """More answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """More of the model's reasoning (deep-thinking models), shown before the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class SourcesFound:
    """Web search results the answer cites."""

    sources: tuple[SearchSource, ...]


@dataclass(frozen=True, slots=True)
class FunctionCalled:
    """The model asked for a function call instead of (or before) answering."""

    call: FunctionCall


StreamEvent = TextDelta | ReasoningDelta | SourcesFound | FunctionCalled


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer is over without a failure.

    ``status`` is complete, cancelled (stopped by the user) or partial (interrupted by
    shutdown); ``note`` is a short line for the reader in their language (why it stopped, or
    that the answer was empty), or None.
    """

    text: str
    status: MessageStatus
    note: str | None = None
    sources: tuple[SearchSource, ...] = ()
    usage: Usage | None = None
    sid: str | None = None

    @property
    def complete(self) -> bool:
        return self.status is MessageStatus.COMPLETE


@dataclass(frozen=True, slots=True)
class Failed:
    """No answer, or only part of one: ``text`` is what had streamed, ``note`` says why."""

    text: str
    error: SparkError | ConversationError
    note: str

    @property
    def sid(self) -> str | None:
        return self.error.sid if isinstance(self.error, SparkError) else None


Ending = Finished | Failed


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of an answer at the front end."""

    message_ids: tuple[int, ...] = ()  # where the front end keeps messages (Telegram) or none
    gone: bool = False  # the reader went away: deleted the message, blocked the bot, hung up
    formatted: bool = True  # False when the rich rendering was refused and plain text was sent
    complete: bool = True  # False when the final text could not be delivered in full


class AnswerSink(Protocol):
    """Where one answer goes. ``event`` never blocks, so Spark is never held up by a reader."""

    @property
    def gone(self) -> bool:
        """The reader went away: the service stops asking Spark for more."""
        ...

    async def start(self) -> None:
        """Show that an answer is coming."""

    def event(self, event: StreamEvent) -> None:
        """Take the next piece of the answer."""

    async def finish(self, ending: Ending) -> Delivery:
        """Deliver the ending and say how far it got."""
        ...

    async def aclose(self) -> None:
        """Stop without delivering anything more (cancelled while finishing)."""


@dataclass(frozen=True, slots=True)
class SparkCall:
    """One Spark request as it ended, whichever front end asked: what the operator's metrics
    count. ``error_code`` is the ledger's (Spark's code, or one of the ledger's own negative
    codes), None on success."""

    front_end: str  # "telegram", "api", "terminal", …
    model: str
    outcome: str  # "ok", "error", "stopped", "client_gone", "undelivered", "interrupted"
    error_code: int | None
    usage: Usage | None
    sid: str | None
    first_token_seconds: float | None
    duration_seconds: float


class SparkCallObserver(Protocol):
    """Hears of every Spark request when it ends (metrics). Must not block or raise."""

    def spark_call(self, call: SparkCall) -> None: ...


class NoObserver:
    """Hears nothing: where no one counts."""

    def spark_call(self, call: SparkCall) -> None:
        pass


NO_OBSERVER = NoObserver()
