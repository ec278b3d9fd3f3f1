"""The prompt for the next turn: budget, pairs, system prompt, and the stored history."""

from __future__ import annotations

import pytest

from bot.errors import QuestionTooLong, SystemPromptTooLong
from bot.service.budget import (
    PromptContext,
    PromptSettings,
    build_context,
    check_system_prompt,
    load_prompt,
    prompt_budget,
    system_prompt_limit,
    system_prompt_tokens,
)
from bot.spark.models import SparkModel, get_model
from bot.spark.tokens import calibrated_tokens, estimate_messages_tokens, estimate_text_tokens
from bot.spark.types import ChatMessage
from storage.database import Database
from storage.dto import ChatInfo, HistoryTurn, MessageStatus
from storage.repositories.messages import Finish
from tests.support import db_rows

LITE = get_model("lite")  # 8192 context, no system role
MAX = get_model("max")  # 8192 context, system role

CHAT_ID = 4242


def _turns(*texts: tuple[str, str]) -> list[HistoryTurn]:
    """Newest first, as the repository returns them."""
    return [
        HistoryTurn(
            question_id=2 * i,
            answer_id=2 * i + 1,
            question=q,
            answer=a,
            question_tokens=estimate_text_tokens(q),
            answer_tokens=estimate_text_tokens(a),
        )
        for i, (q, a) in enumerate(texts)
    ]


def test_budget_is_context_minus_reserved_answer() -> None:
    assert prompt_budget(LITE) == 8192 - LITE.default_max_tokens
    assert prompt_budget(MAX, 1024) == 8192 - 1024


def test_order_is_system_history_oldest_first_then_question() -> None:
    context = build_context(
        MAX,
        "Q3",
        _turns(("Q2", "A2"), ("Q1", "A1")),
        system_prompt="Be brief.",
        max_tokens=1024,
    )
    assert context.messages == [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Q1"),
        ChatMessage("assistant", "A1"),
        ChatMessage("user", "Q2"),
        ChatMessage("assistant", "A2"),
        ChatMessage("user", "Q3"),
    ]
    assert (context.pairs_included, context.pairs_dropped) == (2, 0)
    assert context.raw_prompt_tokens == estimate_messages_tokens(context.messages)
    assert context.estimated_prompt_tokens == calibrated_tokens(context.raw_prompt_tokens, 1.0)


def test_system_prompt_is_left_out_for_models_without_the_system_role() -> None:
    context = build_context(LITE, "Q", [], system_prompt="Be brief.")
    assert context.messages == [ChatMessage("user", "Q")]


def test_most_recent_pairs_that_fit_are_kept_whole_and_older_ones_dropped() -> None:
    # Each turn costs about 2 x (4 + 700) tokens of Chinese text; budget 4096 -> 2 fit.
    long_text = "中" * 1050
    history = _turns(*[(f"Q{i}{long_text}", f"A{i}{long_text}") for i in range(5, 0, -1)])
    context = build_context(LITE, "最后的问题", history)
    assert context.estimated_prompt_tokens <= context.budget_tokens == 4096
    assert (context.pairs_included, context.pairs_dropped) == (2, 3)
    contents = [m.content[:2] for m in context.messages]
    assert contents == ["Q4", "A4", "Q5", "A5", "最后"]
    roles = [m.role for m in context.messages]
    assert roles == ["user", "assistant"] * 2 + ["user"]


def test_a_turn_that_does_not_fit_ends_history_even_if_older_ones_would() -> None:
    huge = "word " * 3000
    history = _turns(("Q3", "A3"), ("Q2", huge), ("Q1", "A1"))
    context = build_context(LITE, "Q4", history)
    assert [m.content for m in context.messages] == ["Q3", "A3", "Q4"]
    assert (context.pairs_included, context.pairs_dropped) == (1, 2)


def test_calibration_ratio_shrinks_the_history_that_fits() -> None:
    text = "中" * 600
    history = _turns(*[(text, text)] * 6)
    plain = build_context(LITE, "Q", history, ratio=1.0)
    doubled = build_context(LITE, "Q", history, ratio=2.0)
    assert doubled.pairs_included < plain.pairs_included
    assert doubled.estimated_prompt_tokens <= 4096
    assert plain.estimated_prompt_tokens <= 4096


def test_question_alone_over_budget_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(QuestionTooLong) as caught:
        build_context(LITE, "中" * 7000, [])
    assert caught.value.budget_tokens == 4096
    assert caught.value.estimated_tokens > 4096
    assert "4096" in str(caught.value)
    # 5560 characters: 3714 raw tokens, 4086 calibrated; one more short turn tips it over.
    fitting = build_context(LITE, "中" * 5560, _turns(("Q", "A")))
    assert (fitting.pairs_included, fitting.pairs_dropped) == (0, 1)


def test_system_prompt_counts_towards_the_question_budget() -> None:
    with pytest.raises(QuestionTooLong) as caught:
        build_context(MAX, "中" * 3000, [], system_prompt="中" * 3000, max_tokens=4096)
    # The refusal says what the system prompt takes: it may be what does not fit.
    assert caught.value.system_tokens == system_prompt_tokens("中" * 3000) == 2205
    assert "2205 of them the system prompt" in str(caught.value)
    with pytest.raises(QuestionTooLong) as without:
        build_context(LITE, "中" * 7000, [], system_prompt="中" * 3000)  # Lite sends none
    assert without.value.system_tokens == 0


def test_system_prompt_may_take_half_the_prompt_budget() -> None:
    assert system_prompt_limit(MAX) == prompt_budget(MAX) // 2 == 2048
    assert system_prompt_limit(MAX, 1024) == (8192 - 1024) // 2
    check_system_prompt(MAX, "中" * 2700)  # 1,985 tokens
    with pytest.raises(SystemPromptTooLong) as caught:
        check_system_prompt(MAX, "中" * 2800)
    assert (caught.value.tokens, caught.value.limit_tokens) == (2059, 2048)
    # In plain words: room for about this much text.
    assert (caught.value.limit_words, caught.value.limit_chars) == (1485, 2785)
    with pytest.raises(SystemPromptTooLong) as stricter:
        check_system_prompt(MAX, "中" * 2700, ratio=1.5)  # a chat Spark counts dearer
    assert stricter.value.limit_chars < 2785
    check_system_prompt(LITE, "中" * 100_000)  # Lite never sends a system prompt


async def _stored_prompt(
    database: Database,
    conversation_id: int,
    model: SparkModel,
    question: str,
    *,
    system_prompt: str | None = None,
) -> PromptContext:
    def settings(chat: ChatInfo | None) -> PromptSettings:
        return PromptSettings(model, system_prompt)

    prompt = await load_prompt(
        database.messages, conversation_id, CHAT_ID, question, settings, known=None
    )
    return prompt.context


async def _seed(database: Database, turns: list[tuple[str, str, MessageStatus, bool]]) -> int:
    await db_rows.upsert_chat(database, CHAT_ID, type="private")
    conversation = await db_rows.open_conversation(database, CHAT_ID)
    for question, answer, status, usable in turns:
        q = await database.messages.add_question(
            conversation, question, tokens=estimate_text_tokens(question), user_id=None
        )
        a = await database.messages.start_answer(conversation, question_id=q.id, model="lite")
        if status is not MessageStatus.STREAMING:
            await database.messages.finish_answer(
                a.id,
                Finish(
                    status=status,
                    text=answer,
                    tokens=estimate_text_tokens(answer),
                    usable=usable,
                ),
            )
    return conversation.id


async def test_stored_history_skips_unfinished_turns_and_keeps_usable_partials(
    database: Database,
) -> None:
    complete, partial = MessageStatus.COMPLETE, MessageStatus.PARTIAL
    conversation_id = await _seed(
        database,
        [
            ("Q1", "A1", complete, True),
            ("Q2", "A2", MessageStatus.FAILED, False),
            ("Q3", "A3", partial, True),
            ("Q4", "A4", partial, False),
            ("Q5", "A5", MessageStatus.CANCELLED, False),
            ("Q6", "A6", MessageStatus.SUPERSEDED, False),
            ("Q7", "", MessageStatus.STREAMING, False),
        ],
    )
    context = await _stored_prompt(database, conversation_id, MAX, "Q8", system_prompt="Sys")
    assert [m.content for m in context.messages] == ["Sys", "Q1", "A1", "Q3", "A3", "Q8"]
    assert (context.pairs_included, context.pairs_dropped) == (2, 0)


async def test_stored_history_of_long_conversations_counts_what_it_drops(
    database: Database,
) -> None:
    total = 69
    body = "x" * 160  # one long word: 40 tokens, so the whole history overflows Lite
    conversation_id = await _seed(
        database,
        [(f"Q{i} {body}", f"A{i} {body}", MessageStatus.COMPLETE, True) for i in range(total)],
    )
    everything = await _stored_prompt(database, conversation_id, get_model("pro-128k"), "next")
    limited = await _stored_prompt(database, conversation_id, LITE, "next")
    assert (everything.pairs_included, everything.pairs_dropped) == (total, 0)
    assert everything.messages[0].content.startswith("Q0 ")
    assert 0 < limited.pairs_included < total
    assert limited.pairs_included + limited.pairs_dropped == total
    assert limited.estimated_prompt_tokens <= limited.budget_tokens == 8192 - 4096
    newest = f"A{total - 1} {body}"
    assert limited.messages[-2].content == newest


def test_x1_takes_questions_although_its_default_max_tokens_equals_its_context() -> None:
    x1 = get_model("x1")
    assert x1.default_max_tokens == x1.context_tokens
    context = build_context(x1, "为什么天空是蓝色的？", [])
    assert context.budget_tokens == x1.context_tokens // 2
    assert [m.role for m in context.messages] == ["user"]
