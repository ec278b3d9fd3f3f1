"""A turn's units of work (``Database.messages``, ``Database.conversations.arrive``) on real
databases: what they store is what is read back, the ledger row and calibration land with the
answer or not at all, the prompt read within its limit is the prompt built from every turn,
and SQLite's grouped commits keep units apart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.errors import QuestionTooLong
from bot.service.budget import (
    CALIBRATION,
    TURN_OVERHEAD,
    PromptSettings,
    build_context,
    load_prompt,
)
from bot.spark.models import get_model
from bot.spark.tokens import estimate_text_tokens, update_ratio
from storage.backends import Connection
from storage.database import Database, create_database
from storage.dto import (
    Calibration,
    ChatInfo,
    ConversationInfo,
    HistoryTurn,
    LedgerEntry,
    MessageStatus,
    TokenUsage,
)
from storage.repositories.conversations import Arrival
from storage.repositories.messages import Finish
from tests.support import db_rows

CHAT_ID = -100777
USER_ID = 5_000_000_001
LITE = get_model("lite")
MAX = get_model("max")


async def _conversation(database: Database) -> ConversationInfo:
    await db_rows.upsert_user(database, USER_ID, username="ann")
    await db_rows.upsert_chat(database, CHAT_ID, type="supergroup", title="Team")
    await database.chats.set_system_prompt(CHAT_ID, "Be brief.", type="supergroup", title="Team")
    return await db_rows.open_conversation(database, CHAT_ID)


async def _streaming(database: Database, conversation: ConversationInfo, question: str) -> int:
    """A question and its answer row, still streaming; the answer's id."""
    messages = database.messages
    asked = await messages.add_question(
        conversation, question, tokens=estimate_text_tokens(question), user_id=USER_ID
    )
    started = await messages.start_answer(
        conversation, question_id=asked.id, model="lite", user_id=USER_ID
    )
    return started.id


async def _answered(
    database: Database,
    conversation: ConversationInfo,
    question: str,
    answer: str,
    status: MessageStatus = MessageStatus.COMPLETE,
    usable: bool | None = None,
) -> int:
    messages = database.messages
    asked = await messages.add_question(
        conversation, question, tokens=estimate_text_tokens(question), user_id=USER_ID
    )
    started = await messages.start_answer(
        conversation, question_id=asked.id, model="lite", user_id=USER_ID
    )
    await messages.finish_answer(
        started.id,
        Finish(status=status, text=answer, tokens=estimate_text_tokens(answer), usable=usable),
    )
    return started.id


def _settings(chat: ChatInfo | None) -> PromptSettings:
    return PromptSettings(MAX, chat.system_prompt if chat else None, 1024)


async def test_a_turn_stores_what_the_repositories_read_back(database: Database) -> None:
    moment = datetime(2026, 11, 28, 9, 30, 15, 123456, tzinfo=UTC)
    timed = Database(database.engine, clock=lambda: moment)
    conversation = await _conversation(timed)
    try:
        asked = await timed.messages.add_question(
            conversation, "你好，world?", tokens=5, user_id=USER_ID, telegram_message_id=11
        )
        started = await timed.messages.start_answer(
            conversation, question_id=asked.id, model="lite", user_id=USER_ID
        )
        assert await timed.messages.checkpoint(started.id, "Hel")
        mid = await db_rows.message(timed, started.id)
        stored_question = await db_rows.message(timed, asked.id)
        by_link = await db_rows.message_shown_by(timed, CHAT_ID, 11)
        assert mid == replace(started, content="Hel")
        assert stored_question == asked
        assert by_link == asked
        assert asked.created_at == moment
        finished = await timed.messages.finish_answer(
            started.id,
            Finish(
                status=MessageStatus.COMPLETE,
                text="Hello!",
                tokens=3,
                sid="cht001",
                telegram_message_ids=[12, 13, 12],
            ),
        )
        assert not await timed.messages.checkpoint(started.id, "late")
        stored = await db_rows.message(timed, started.id)
        second_part = await db_rows.message_shown_by(timed, CHAT_ID, 13)
        stored_tokens = await db_rows.one(
            timed, "SELECT tokens FROM messages WHERE id = :id", id=started.id
        )
        assert stored_tokens is not None
        tokens = stored_tokens.tokens
    finally:
        await timed.runner.close()  # the engine is the fixture's
    assert stored == finished == second_part
    assert (finished.status, finished.content, finished.sid, finished.usable) == (
        MessageStatus.COMPLETE,
        "Hello!",
        "cht001",
        True,
    )
    assert finished.telegram_message_ids == (12, 13)
    assert (finished.model, finished.reply_to_id, finished.user_id) == ("lite", asked.id, USER_ID)
    assert finished.created_at == finished.updated_at == moment
    assert tokens == 3  # the count the service gave the text


async def test_finish_writes_the_ledger_row_and_calibration_in_the_same_unit(
    database: Database,
) -> None:
    conversation = await _conversation(database)
    messages = database.messages
    asked = await messages.add_question(conversation, "Q", tokens=1, user_id=USER_ID)
    started = await messages.start_answer(conversation, question_id=asked.id, model="lite")
    await messages.finish_answer(
        started.id,
        Finish(
            status=MessageStatus.PARTIAL,
            text="A",
            tokens=1,
            sid="cht002",
            error_code=10013,
            ledger=LedgerEntry(
                model="lite",
                usage=TokenUsage(prompt_tokens=180, completion_tokens=20, total_tokens=200),
                user_id=USER_ID,
                chat_id=CHAT_ID,
                first_token_ms=420,
                duration_ms=3100,
                error_code=10013,
            ),
            calibration=Calibration(
                CHAT_ID, raw_estimate=100, reported_prompt_tokens=180, rules=CALIBRATION
            ),
        ),
    )
    since = datetime(2000, 1, 1, tzinfo=UTC)
    totals = await db_rows.usage_totals(database, since, user_id=USER_ID)
    chat = await database.chats.get(CHAT_ID)
    (row,) = await db_rows.rows(
        database,
        "SELECT conversation_id, message_id, sid, error_code, first_token_ms, "
        "duration_ms, model FROM usage_records",
    )
    daily = await db_rows.rows(database, "SELECT requests FROM usage_daily")
    assert (totals.requests, totals.failed_requests, totals.total_tokens) == (1, 1, 200)
    assert tuple(row.values()) == (conversation.id, started.id, "cht002", 10013, 420, 3100, "lite")
    assert [tuple(r.values()) for r in daily] == [(1,)]  # the rollup trigger saw the row
    assert chat is not None
    assert chat.token_ratio == update_ratio(1.0, 100, 180)


@pytest.mark.parametrize(
    ("current", "raw", "reported"),
    [(1.0, 100, 180), (1.8, 100, 90), (3.9, 10, 1000), (0.5, 1000, 10), (1.3, 0, 50)],
)
async def test_calibration_in_sql_is_update_ratio(
    database: Database, current: float, raw: int, reported: int
) -> None:
    conversation = await _conversation(database)
    await db_rows.execute(
        database, "UPDATE chats SET token_ratio = :r WHERE id = :c", r=current, c=CHAT_ID
    )
    answer_id = await _streaming(database, conversation, "Q")
    await database.messages.finish_answer(
        answer_id,
        Finish(
            status=MessageStatus.FAILED,
            text="",
            tokens=0,
            calibration=Calibration(CHAT_ID, raw, reported, CALIBRATION),
        ),
    )
    chat = await database.chats.get(CHAT_ID)
    assert chat is not None
    assert chat.token_ratio == pytest.approx(update_ratio(current, raw, reported), abs=1e-12)


async def test_finishing_an_unknown_answer_writes_nothing(database: Database) -> None:
    await _conversation(database)
    with pytest.raises(LookupError, match="message 999"):
        await database.messages.finish_answer(
            999,
            Finish(
                status=MessageStatus.COMPLETE,
                text="x",
                tokens=1,
                telegram_message_ids=[5],
                ledger=LedgerEntry(model="lite", usage=None, user_id=USER_ID, chat_id=CHAT_ID),
                calibration=Calibration(CHAT_ID, 100, 400, CALIBRATION),
            ),
        )
    with pytest.raises(ValueError, match="final status"):
        await database.messages.finish_answer(
            1, Finish(status=MessageStatus.STREAMING, text="", tokens=0)
        )
    ledger = await db_rows.rows(database, "SELECT id FROM usage_records")
    links = await db_rows.rows(database, "SELECT message_id FROM telegram_messages")
    chat = await database.chats.get(CHAT_ID)
    assert (len(ledger), len(links)) == (0, 0)
    assert chat is not None
    assert chat.token_ratio == 1.0


async def _every_turn(database: Database, conversation_id: int) -> list[HistoryTurn]:
    return await db_rows.recent_turns(database, conversation_id)


async def test_the_prompt_read_within_its_limit_is_the_prompt_of_every_turn(
    database: Database,
) -> None:
    conversation = await _conversation(database)
    body = "word " * 300  # about 375 tokens a text: a few turns overflow Max's budget
    partial = MessageStatus.PARTIAL
    await _answered(database, conversation, "Q0 " + body, "A0 " + body)
    await _answered(database, conversation, "Q1", "A1", MessageStatus.FAILED)
    for i in range(2, 14):
        await _answered(database, conversation, f"Q{i} " + body, f"A{i} " + body)
    await _answered(database, conversation, "Q14", "A14", partial, usable=True)
    await _answered(database, conversation, "Q15", "A15", partial, usable=False)
    asked = await database.messages.add_question(conversation, "Q16", tokens=2, user_id=USER_ID)
    await database.messages.start_answer(conversation, question_id=asked.id, model="lite")

    found = await load_prompt(
        database.messages, conversation.id, CHAT_ID, "Next?", _settings, known=None
    )
    expected = build_context(
        MAX,
        "Next?",
        await _every_turn(database, conversation.id),
        system_prompt="Be brief.",
        max_tokens=1024,
    )
    assert found.chat is not None
    assert (found.chat.id, found.chat.system_prompt) == (CHAT_ID, "Be brief.")
    assert found.settings == PromptSettings(MAX, "Be brief.", 1024)
    assert found.context == expected
    assert found.context.messages[-3].content == "Q14"
    assert (
        0
        < found.context.pairs_included
        < 14
        == found.context.pairs_included + (found.context.pairs_dropped)
    )
    # The chat as last seen may be out of date: a dearer ratio (less room) or no system
    # prompt yet. The prompt is built for the chat as stored, reading again only if needed.
    for known in (replace(found.chat, token_ratio=2.5), replace(found.chat, system_prompt=None)):
        again = await load_prompt(
            database.messages, conversation.id, CHAT_ID, "Next?", _settings, known=known
        )
        assert again == found


async def test_the_history_read_stops_at_its_limit_but_always_counts_every_turn(
    database: Database,
) -> None:
    conversation = await _conversation(database)
    for i in range(5):
        await _answered(database, conversation, f"Q{i} " + "word " * 40, f"A{i} " + "word " * 40)
    every = await _every_turn(database, conversation.id)
    cost = TURN_OVERHEAD + every[0].question_tokens + every[0].answer_tokens
    for room, read in ((0, 1), (cost, 1), (2 * cost - 1, 1), (2 * cost, 2), (10**6, 5)):
        found = await database.messages.prompt_history(
            conversation.id, CHAT_ID, room=room, turn_overhead=TURN_OVERHEAD
        )
        assert found.turns == every[:read]
        assert found.total == 5
        assert found.chat is not None
        assert found.chat.id == CHAT_ID


async def test_the_prompt_when_nothing_fits_or_nothing_is_stored(database: Database) -> None:
    conversation = await _conversation(database)
    huge = "word " * 3000

    def lite(chat: ChatInfo | None) -> PromptSettings:
        return PromptSettings(LITE)

    await _answered(database, conversation, "Q " + huge, "A " + huge)
    tight = await load_prompt(
        database.messages, conversation.id, CHAT_ID, "Next?", lite, known=None
    )
    assert (tight.context.pairs_included, tight.context.pairs_dropped) == (0, 1)
    assert [m.content for m in tight.context.messages] == ["Next?"]
    with pytest.raises(QuestionTooLong):
        await load_prompt(database.messages, conversation.id, CHAT_ID, huge * 2, lite, known=None)
    unknown = await load_prompt(database.messages, 12345, 999, "Hi", _settings, known=None)
    assert unknown.chat is None
    assert [m.content for m in unknown.context.messages] == ["Hi"]
    nothing = await database.messages.prompt_history(12345, 999, room=100, turn_overhead=8)
    assert (nothing.chat, nothing.turns, nothing.total) == (None, [], 0)


async def test_concurrent_turns_and_core_writes_all_land(database: Database) -> None:
    conversation = await _conversation(database)

    async def turn(n: int) -> None:
        answer_id = await _streaming(database, conversation, f"Q{n}")
        await database.messages.finish_answer(
            answer_id,
            Finish(
                status=MessageStatus.COMPLETE,
                text=f"A{n}!",
                tokens=2,
                ledger=LedgerEntry(
                    model="lite", usage=TokenUsage(1, 1, 2), user_id=USER_ID, chat_id=1
                ),
            ),
        )

    async def setting(n: int) -> None:
        await database.chats.set_system_prompt(
            CHAT_ID, f"prompt {n}", type="supergroup", title="Team"
        )

    await asyncio.gather(*(turn(n) for n in range(60)), *(setting(n) for n in range(10)))
    messages = await db_rows.conversation_messages(database, conversation.id)
    totals = await db_rows.usage_totals(database, datetime(2000, 1, 1, tzinfo=UTC))
    chat = await database.chats.get(CHAT_ID)
    assert len(messages) == 120
    assert sorted(m.content for m in messages if m.role == "assistant") == sorted(
        f"A{n}!" for n in range(60)
    )
    assert totals.requests == 60
    assert chat is not None
    assert chat.system_prompt is not None
    assert chat.system_prompt.startswith("prompt ")


async def test_a_failing_unit_in_a_committed_group_is_undone_alone(
    sqlite_database: Database,
) -> None:
    conversation = await _conversation(sqlite_database)
    writes = sqlite_database.messages
    good = [
        writes.add_question(conversation, f"Q{n}", tokens=1, user_id=USER_ID) for n in range(20)
    ]
    bad = writes.start_answer(conversation, question_id=10**9, model="lite")  # no such question
    # A unit that holds the writer thread: everything queued meanwhile is one group.
    entered, release = threading.Event(), threading.Event()

    async def hold(_connection: Connection) -> None:
        entered.set()
        release.wait()

    held = asyncio.ensure_future(sqlite_database.runner.write(hold))
    await asyncio.to_thread(entered.wait)
    queued = asyncio.gather(*good[:10], bad, *good[10:], return_exceptions=True)
    await asyncio.sleep(0)  # every unit is queued once its task has run to its first await
    release.set()
    await held
    results = await queued
    assert isinstance(results[10], sqlite3.IntegrityError)
    stored_ids = [r.id for r in results if not isinstance(r, BaseException)]
    messages = await db_rows.conversation_messages(sqlite_database, conversation.id)
    assert [m.id for m in messages] == sorted(stored_ids)
    assert [m.content for m in messages] == [f"Q{n}" for n in range(20)]


async def test_storage_refuses_an_in_memory_sqlite_database() -> None:
    with pytest.raises(NotImplementedError, match="database file"):
        create_database("sqlite+aiosqlite:///:memory:")


def _arrival(**changes: object) -> Arrival:
    base = Arrival(
        user_id=USER_ID,
        username="ann",
        first_name="Ann",
        language_code="zh-hans",
        chat_id=CHAT_ID,
        chat_type="supergroup",
        title="Team",
        thread_id=0,
        scope_user_id=0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "where",
    [
        {},
        {"thread_id": 17},
        {"scope_user_id": USER_ID},
        {"thread_id": 17, "scope_user_id": USER_ID},
    ],
    ids=["chat", "topic", "member", "member-in-topic"],
)
async def test_arrival_reads_what_the_core_path_writes_and_writes_nothing_more(
    database: Database, where: dict[str, int]
) -> None:
    arrival = _arrival(**where)
    assert await db_rows.settled_arrival(database, arrival) is None  # nothing stored yet
    first_chat, first = await database.conversations.arrive(arrival)  # the Core path stores it
    again = await db_rows.settled_arrival(database, arrival)
    assert again is not None
    chat, conversation = again
    assert (chat, conversation) == (first_chat, first)
    core = await db_rows.open_conversation(
        database,
        CHAT_ID,
        thread_id=arrival.thread_id or None,
        user_id=USER_ID,
        scope="user" if arrival.scope_user_id else "chat",
    )
    user = await db_rows.user(database, USER_ID)
    assert conversation == core  # the same uid too: topic's, member's, or the chat's
    assert user is not None
    assert (user.username, user.first_name, user.language_code) == ("ann", "Ann", "zh-hans")


async def test_arrival_sends_a_change_or_a_new_conversation_to_the_core_path(
    database: Database,
) -> None:
    await database.conversations.arrive(_arrival())
    assert await db_rows.settled_arrival(database, _arrival()) is not None
    assert await db_rows.settled_arrival(database, _arrival(title="Team 2")) is None
    assert await db_rows.settled_arrival(database, _arrival(username="ann_new")) is None
    assert await db_rows.settled_arrival(database, _arrival(chat_type="group")) is None
    assert await db_rows.settled_arrival(database, _arrival(user_id=USER_ID + 1)) is None
    _, renamed = await database.conversations.arrive(_arrival(title="Team 2"))
    chat = await database.chats.get(CHAT_ID)
    started = await database.conversations.start_new(_arrival(title="Team 2"))  # /new
    assert chat is not None
    assert chat.title == "Team 2"
    # /new closed the conversation the hot path would have found: it finds the new one.
    found = await db_rows.settled_arrival(database, _arrival(title="Team 2"))
    assert found is not None
    assert found[1].id == started.id != renamed.id
