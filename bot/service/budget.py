"""The prompt budget: what a question may cost, how much history fits, and the calibration rules.

Budget: the model's context minus the ``max_tokens`` reserved for the answer. Estimates come
from :mod:`bot.spark.tokens`, scaled by the chat's calibration ratio. The most recent turns are
taken while they fit; a turn (question + answer) is never split, and the first turn that does
not fit ends the history so no gap appears in what Spark sees. A question that does not fit on
its own is refused with :class:`~bot.errors.QuestionTooLong` before anything is sent; the
error names the system prompt's part, since that may be what makes a short question too long.

A system prompt may take at most :data:`SYSTEM_PROMPT_SHARE` of the prompt budget
(:func:`check_system_prompt`, when it is set and when the chat switches model), so a question
and some history always fit beside it.

Storage knows none of this: it stores the token counts computed here, reads the history up to
a limit in raw tokens (:meth:`ContextBuilder.room`) and folds Spark's counts into the chat's
ratio with the rules of :data:`CALIBRATION`, passed down as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.errors import QuestionTooLong, SystemPromptTooLong
from bot.spark.models import SparkModel
from bot.spark.tokens import (
    CJK_CHARS_PER_TOKEN,
    DEFAULT_RATIO,
    MAX_RATIO,
    MESSAGE_OVERHEAD_TOKENS,
    MIN_RATIO,
    PROMPT_OVERHEAD_TOKENS,
    SAFETY_MARGIN,
    SMOOTHING_DOWN,
    SMOOTHING_UP,
    WORDS_PER_TOKEN,
    calibrated_tokens,
    clamp_ratio,
    estimate_message_tokens,
)
from bot.spark.types import ChatMessage
from storage.dto import CalibrationRules, ChatInfo, HistoryTurn
from storage.repositories.messages import Messages

# The most of the prompt budget a system prompt may take; the rest is for the question and
# history.
SYSTEM_PROMPT_SHARE = 0.5
# Raw tokens a stored turn adds beside its two texts: the framing of its two messages.
TURN_OVERHEAD = 2 * MESSAGE_OVERHEAD_TOKENS
# bot.spark.tokens.update_ratio, as numbers storage applies in the answer's own statement.
CALIBRATION = CalibrationRules(
    default=DEFAULT_RATIO,
    least=MIN_RATIO,
    greatest=MAX_RATIO,
    up=SMOOTHING_UP,
    down=SMOOTHING_DOWN,
)


@dataclass(frozen=True, slots=True)
class PromptSettings:
    """What a prompt is built for, decided from the chat (the operator's defaults without one)."""

    model: SparkModel
    system_prompt: str | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class PromptContext:
    """What to send for one turn, and how it was chosen."""

    messages: list[ChatMessage]
    # Calibrated, conservative: what was checked against ``budget_tokens``.
    estimated_prompt_tokens: int
    # Before calibration: what Spark's reported prompt_tokens is compared with (calibration).
    raw_prompt_tokens: int
    budget_tokens: int
    pairs_included: int
    pairs_dropped: int


@dataclass(frozen=True, slots=True)
class Prompt:
    """The prompt of a turn with the chat it was built for, as stored when it was built."""

    chat: ChatInfo | None
    settings: PromptSettings
    context: PromptContext


def prompt_budget(model: SparkModel, max_tokens: int | None = None) -> int:
    """Tokens left for the prompt once the answer's ``max_tokens`` is reserved."""
    return model.prompt_budget(max_tokens)


def system_prompt_limit(model: SparkModel, max_tokens: int | None = None) -> int:
    """The most tokens (calibrated, as budgets are checked) a system prompt may take."""
    return math.floor(max(prompt_budget(model, max_tokens), 0) * SYSTEM_PROMPT_SHARE)


def system_prompt_tokens(prompt: str, ratio: float = DEFAULT_RATIO) -> int:
    """What ``prompt`` costs as the system message, calibrated like every budget check."""
    return calibrated_tokens(estimate_message_tokens(ChatMessage("system", prompt)), ratio)


def check_system_prompt(
    model: SparkModel,
    prompt: str,
    *,
    max_tokens: int | None = None,
    ratio: float = DEFAULT_RATIO,
) -> None:
    """Raise :class:`~bot.errors.SystemPromptTooLong` if ``prompt`` takes more than its share
    of ``model``'s budget. A model without system prompts never sends it, so anything fits."""
    if not model.supports_system:
        return
    tokens = system_prompt_tokens(prompt, ratio)
    limit = system_prompt_limit(model, max_tokens)
    if tokens <= limit:
        return
    # The limit in plain words, for the user: raw tokens of text the limit leaves room for.
    raw = max(
        0, math.floor(limit / (clamp_ratio(ratio) * SAFETY_MARGIN)) - MESSAGE_OVERHEAD_TOKENS
    )
    raise SystemPromptTooLong(
        tokens,
        limit,
        limit_words=math.floor(raw * WORDS_PER_TOKEN),
        limit_chars=math.floor(raw * CJK_CHARS_PER_TOKEN),
    )


def ratio_of(chat: ChatInfo | None) -> float:
    return chat.token_ratio if chat is not None else DEFAULT_RATIO


class ContextBuilder:
    """Accumulates history newest first; raises QuestionTooLong at construction."""

    def __init__(
        self,
        model: SparkModel,
        question: str,
        *,
        system_prompt: str | None = None,
        max_tokens: int | None = None,
        ratio: float = DEFAULT_RATIO,
    ) -> None:
        self.budget = prompt_budget(model, max_tokens)
        self.ratio = ratio
        self._system = (
            ChatMessage("system", system_prompt)
            if system_prompt and model.supports_system
            else None
        )
        self._question = ChatMessage("user", question)
        self._raw = PROMPT_OVERHEAD_TOKENS + estimate_message_tokens(self._question)
        system_raw = 0 if self._system is None else estimate_message_tokens(self._system)
        self._raw += system_raw
        needed = calibrated_tokens(self._raw, ratio)
        if needed > self.budget:
            system = calibrated_tokens(system_raw, ratio) if system_raw else 0
            raise QuestionTooLong(needed, max(self.budget, 0), system_tokens=system)
        self._turns: list[HistoryTurn] = []
        self.full = False

    @classmethod
    def of(cls, settings: PromptSettings, question: str, ratio: float) -> ContextBuilder:
        return cls(
            settings.model,
            question,
            system_prompt=settings.system_prompt,
            max_tokens=settings.max_tokens,
            ratio=ratio,
        )

    def room(self) -> int:
        """The most raw tokens of history that can still be taken: the limit storage reads
        history up to (turn costs as :meth:`turn_cost` counts them), so that only turns that
        fit leave the database. :meth:`offer` stays the judge; this only bounds what is read."""
        if self.full:
            return -1
        room = max(0, math.floor(self.budget / (clamp_ratio(self.ratio) * SAFETY_MARGIN)))
        room -= self._raw
        # Float rounding may put the quotient one off either way: settle it with the very
        # comparison offer() makes.
        while room >= 0 and calibrated_tokens(self._raw + room, self.ratio) > self.budget:
            room -= 1
        while calibrated_tokens(self._raw + room + 1, self.ratio) <= self.budget:
            room += 1
        return room

    @staticmethod
    def turn_cost(question_tokens: int, answer_tokens: int) -> int:
        """Raw tokens a stored turn adds to the prompt (its two texts and their framing)."""
        return TURN_OVERHEAD + question_tokens + answer_tokens

    def offer(self, turn: HistoryTurn) -> bool:
        """Take the next older turn if it fits; once one does not, take no more."""
        if self.full:
            return False
        cost = self.turn_cost(turn.question_tokens, turn.answer_tokens)
        if calibrated_tokens(self._raw + cost, self.ratio) > self.budget:
            self.full = True
            return False
        self._raw += cost
        self._turns.append(turn)
        return True

    def result(self, pairs_dropped: int) -> PromptContext:
        messages: list[ChatMessage] = [] if self._system is None else [self._system]
        for turn in reversed(self._turns):
            messages.append(ChatMessage("user", turn.question))
            messages.append(ChatMessage("assistant", turn.answer))
        messages.append(self._question)
        return PromptContext(
            messages=messages,
            estimated_prompt_tokens=calibrated_tokens(self._raw, self.ratio),
            raw_prompt_tokens=self._raw,
            budget_tokens=self.budget,
            pairs_included=len(self._turns),
            pairs_dropped=pairs_dropped,
        )


def build_context(
    model: SparkModel,
    question: str,
    history_newest_first: Iterable[HistoryTurn],
    *,
    system_prompt: str | None = None,
    max_tokens: int | None = None,
    ratio: float = DEFAULT_RATIO,
) -> PromptContext:
    """The prompt from turns already loaded (every eligible turn, newest first)."""
    builder = ContextBuilder(
        model, question, system_prompt=system_prompt, max_tokens=max_tokens, ratio=ratio
    )
    dropped = sum(1 for turn in history_newest_first if not builder.offer(turn))
    return builder.result(dropped)


async def load_prompt(
    messages: Messages,
    conversation_id: int,
    chat_id: int,
    question: str,
    settings_of: Callable[[ChatInfo | None], PromptSettings],
    *,
    known: ChatInfo | None,
) -> Prompt:
    """The prompt for ``question`` from the chat and history as stored now, in one read.

    The history is read up to the room the chat as last seen (``known``) leaves; the chat comes
    back with it, and the prompt is built for the chat as it is now. Only when that leaves more
    room than was read (a lower ratio, another model) and turns were left in the database is
    the history read again. Raises :class:`~bot.errors.QuestionTooLong` when the question
    alone does not fit the chat's model now.
    """
    try:
        room = ContextBuilder.of(settings_of(known), question, ratio_of(known)).room()
    except QuestionTooLong:
        room = 0  # the chat may have changed since: judge by what is stored now
    found = await messages.prompt_history(
        conversation_id, chat_id, room=room, turn_overhead=TURN_OVERHEAD
    )
    settings = settings_of(found.chat)
    builder = ContextBuilder.of(settings, question, ratio_of(found.chat))
    if builder.room() > room and len(found.turns) < found.total:
        found = await messages.prompt_history(
            conversation_id, chat_id, room=builder.room(), turn_overhead=TURN_OVERHEAD
        )
        settings = settings_of(found.chat)
        builder = ContextBuilder.of(settings, question, ratio_of(found.chat))
    taken = 0
    for turn in found.turns:
        if not builder.offer(turn):
            break
        taken += 1
    return Prompt(found.chat, settings, builder.result(found.total - taken))
