"""The prompt for the next turn: system prompt, as much recent history as fits, the question.

Budget: the model's context minus the ``max_tokens`` reserved for the answer. Estimates come
from :mod:`bot.spark.tokens`, scaled by the chat's calibration ratio. The most recent turns are
taken while they fit; a turn (question + answer) is never split, and the first turn that does
not fit ends the history so no gap appears in what Spark sees. A question that does not fit on
its own is refused with :class:`~bot.errors.QuestionTooLong` before anything is sent; the
error names the system prompt's part, since that may be what makes a short question too long.

A system prompt may take at most :data:`SYSTEM_PROMPT_SHARE` of the prompt budget
(:func:`check_system_prompt`, when it is set and when the chat switches model), so a question
and some history always fit beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bot.errors import QuestionTooLong, SystemPromptTooLong
from bot.spark.models import SparkModel
from bot.spark.tokens import (
    CJK_CHARS_PER_TOKEN,
    DEFAULT_RATIO,
    MESSAGE_OVERHEAD_TOKENS,
    PROMPT_OVERHEAD_TOKENS,
    SAFETY_MARGIN,
    WORDS_PER_TOKEN,
    calibrated_tokens,
    clamp_ratio,
    estimate_message_tokens,
    estimate_text_tokens,
)
from bot.spark.types import ChatMessage
from storage.dto import HistoryTurn
from storage.repositories.messages import MessageRepository

HISTORY_PAGE = 32
# The most of the prompt budget a system prompt may take; the rest is for the question and
# history.
SYSTEM_PROMPT_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class PromptContext:
    """What to send for one turn, and how it was chosen."""

    messages: list[ChatMessage]
    # Calibrated, conservative: what was checked against ``budget_tokens``.
    estimated_prompt_tokens: int
    # Before calibration: pass it with Spark's reported prompt_tokens to update_calibration.
    raw_prompt_tokens: int
    budget_tokens: int
    pairs_included: int
    pairs_dropped: int


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

    def room(self) -> int:
        """The most raw tokens of history that can still be taken: what a query may cut its
        running total of turn costs at (see :meth:`turn_cost`), so that only turns that fit
        leave the database. :meth:`offer` stays the judge; this only bounds what is read."""
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
        return 2 * MESSAGE_OVERHEAD_TOKENS + question_tokens + answer_tokens

    def offer(self, turn: HistoryTurn) -> bool:
        """Take the next older turn if it fits; once one does not, take no more."""
        if self.full:
            return False
        question = (
            estimate_text_tokens(turn.question)
            if turn.question_tokens is None
            else turn.question_tokens
        )
        answer = (
            estimate_text_tokens(turn.answer) if turn.answer_tokens is None else turn.answer_tokens
        )
        cost = self.turn_cost(question, answer)
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


async def load_context(
    messages: MessageRepository,
    conversation_id: int,
    model: SparkModel,
    question: str,
    *,
    system_prompt: str | None = None,
    max_tokens: int | None = None,
    ratio: float = DEFAULT_RATIO,
) -> PromptContext:
    """The prompt for ``question`` in a stored conversation, reading only as much history as
    fits (pages of :data:`HISTORY_PAGE` turns, newest first).

    Call it before the question itself has an answer row, or after: a question without a
    counted answer is never history.
    """
    builder = ContextBuilder(
        model, question, system_prompt=system_prompt, max_tokens=max_tokens, ratio=ratio
    )
    before: int | None = None
    while True:
        page = await messages.history_page(conversation_id, before, HISTORY_PAGE)
        for taken, turn in enumerate(page.turns):
            if not builder.offer(turn):
                return builder.result(page.older_turns - taken)
        if len(page.turns) < HISTORY_PAGE:
            return builder.result(0)
        before = page.turns[-1].answer_id
