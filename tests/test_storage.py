"""The repositories on real databases: SQLite files and, where TEST_DATABASE_URL is set,
PostgreSQL schemas. Every test reads back what was stored."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.service.budget import CALIBRATION
from bot.spark.tokens import estimate_text_tokens, update_ratio
from storage.backends import Connection
from storage.database import Database, create_database, normalise_url
from storage.dto import Calibration, Clock, ConversationInfo, MessageStatus, TokenUsage
from storage.errors import AnswerNotStreaming
from storage.migrate import upgrade
from storage.repositories.conversations import Arrival, conversation_key, current_conversation
from storage.repositories.messages import Finish
from storage.repositories.users import upsert_user
from tests.support import db_rows

GROUP_ID = -1001234567890123
USER_A = 7_000_000_001
USER_B = 7_000_000_002


@contextlib.asynccontextmanager
async def _clocked(database: Database, clock: Clock) -> AsyncIterator[Database]:
    """A second handle on the test's database whose time is ``clock``."""
    timed = Database(database.engine, clock=clock)
    try:
        yield timed
    finally:
        await timed.runner.close()  # the engine is the fixture's


def _arrival(
    chat_id: int = GROUP_ID,
    *,
    user_id: int = USER_A,
    chat_type: str = "supergroup",
    title: str | None = "Team",
    thread_id: int = 0,
    scope_user: int = 0,
) -> Arrival:
    return Arrival(
        user_id=user_id,
        username="alice" if user_id == USER_A else None,
        first_name="Alice" if user_id == USER_A else None,
        language_code=None,
        chat_id=chat_id,
        chat_type=chat_type,
        title=title,
        thread_id=thread_id,
        scope_user_id=scope_user,
    )


async def _group(database: Database, *, scope_user: int | None = None) -> ConversationInfo:
    _, conversation = await database.conversations.arrive(_arrival(scope_user=scope_user or 0))
    return conversation


async def _turn(
    database: Database,
    conversation: ConversationInfo,
    question: str,
    answer: str,
    status: MessageStatus = MessageStatus.COMPLETE,
    *,
    usable: bool | None = None,
    telegram_ids: tuple[int, ...] | None = None,
) -> tuple[int, int]:
    q = await database.messages.add_question(
        conversation,
        question,
        tokens=estimate_text_tokens(question),
        user_id=USER_A,
        telegram_message_id=telegram_ids[0] if telegram_ids else None,
    )
    a = await database.messages.start_answer(
        conversation, question_id=q.id, model="lite", user_id=USER_A
    )
    if status is not MessageStatus.STREAMING:
        await database.messages.finish_answer(
            a.id,
            Finish(
                status=status,
                text=answer,
                tokens=estimate_text_tokens(answer),
                sid="cht000abc",
                usable=usable,
                telegram_message_ids=telegram_ids[1:] if telegram_ids else (),
            ),
        )
    return q.id, a.id


async def _history(database: Database, conversation_id: int) -> list[tuple[str, str, int, int]]:
    """The turns that count as history, newest first (question, answer, their tokens)."""
    found = await database.messages.prompt_history(
        conversation_id, GROUP_ID, room=10**9, turn_overhead=0
    )
    return [(t.question, t.answer, t.question_tokens, t.answer_tokens) for t in found.turns]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example:5432/bot", "postgresql+asyncpg://u:p@db.example:5432/bot"),
        ("postgresql://u:p@h/bot", "postgresql+asyncpg://u:p@h/bot"),
        ("postgresql://u@h/bot?sslmode=require", "postgresql+asyncpg://u@h/bot?ssl=require"),
        ("postgresql+asyncpg://u@h/bot", "postgresql+asyncpg://u@h/bot"),
        ("sqlite:///data/bot.sqlite3", "sqlite+aiosqlite:///data/bot.sqlite3"),
        ("sqlite+aiosqlite:////abs/bot.sqlite3", "sqlite+aiosqlite:////abs/bot.sqlite3"),
    ],
)
def test_database_urls_are_normalised_to_async_drivers(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


async def test_sqlite_creates_its_directory_and_sets_its_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/bot.sqlite3"
    await upgrade(url)
    database = create_database(url)
    try:
        pragmas = {
            # The value is the one column of PRAGMA's one row, whatever SQLite names it.
            name: next(iter((await db_rows.rows(database, f"PRAGMA {name}"))[0].values()))
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    finally:
        await database.dispose()
    assert (tmp_path / "nested" / "dir" / "bot.sqlite3").is_file()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 30_000,
        "synchronous": 1,
    }


async def test_users_upsert_refreshes_profile_and_keeps_quota(database: Database) -> None:
    first = await db_rows.upsert_user(database, USER_A, username="alice", language_code="en")
    assert await database.users.set_daily_quota(USER_A, 5000)
    again = await db_rows.upsert_user(database, USER_A, username="alice2", first_name="Alice")
    stored = await db_rows.user(database, USER_A)
    assert await db_rows.user(database, USER_B) is None
    assert stored == again
    assert (again.username, again.first_name, again.language_code) == ("alice2", "Alice", None)
    assert again.daily_token_quota == 5000
    assert again.created_at == first.created_at
    assert again.created_at.tzinfo is UTC


async def test_chat_upsert_keeps_its_uid_settings_and_accepts_huge_negative_ids(
    database: Database,
) -> None:
    created = await db_rows.upsert_chat(database, GROUP_ID, type="group", title="Old")
    await database.chats.set_model(GROUP_ID, "max", type="group", title="Old")
    await database.chats.set_system_prompt(
        GROUP_ID, "  Answer briefly.  ", type="group", title="Old"
    )
    updated = await db_rows.upsert_chat(database, GROUP_ID, type="supergroup", title="New")
    assert updated.id == GROUP_ID
    assert (updated.type, updated.title) == ("supergroup", "New")
    assert (updated.model, updated.system_prompt) == ("max", "Answer briefly.")
    assert updated.spark_uid == created.spark_uid
    assert updated.token_ratio == 1.0
    await database.chats.set_system_prompt(GROUP_ID, "   ", type="supergroup", title="New")
    await database.chats.set_model(GROUP_ID, None, type="supergroup", title="New")
    cleared = await database.chats.get(GROUP_ID)
    assert cleared is not None
    assert (cleared.model, cleared.system_prompt) == (None, None)


async def test_spark_uids_are_random_short_and_distinct_per_chat_and_topic(
    database: Database,
) -> None:
    private, _ = await database.conversations.arrive(
        _arrival(USER_A, chat_type="private", title=None)
    )
    group, main = await database.conversations.arrive(_arrival(title="Forum"))
    _, topic = await database.conversations.arrive(_arrival(title="Forum", thread_id=17))
    _, topic_again = await database.conversations.arrive(_arrival(title="Forum", thread_id=17))
    _, other_topic = await database.conversations.arrive(_arrival(title="Forum", thread_id=18))
    uids = [private.spark_uid, group.spark_uid, topic.spark_uid, other_topic.spark_uid]
    assert len(set(uids)) == 4
    for uid in uids:
        assert re.fullmatch(r"[0-9a-f]{32}", uid)
        assert str(USER_A) not in uid
        assert str(abs(GROUP_ID)) not in uid
    assert main.spark_uid == group.spark_uid
    assert topic_again == topic
    assert (topic.thread_id, main.thread_id) == (17, 0)
    # /new in a topic keeps the topic's uid.
    renewed = await database.conversations.start_new(_arrival(title="Forum", thread_id=17))
    assert renewed.spark_uid == topic.spark_uid
    assert renewed.id != topic.id


async def test_group_scope_user_gives_each_member_a_conversation(database: Database) -> None:
    def group(user_id: int, scope_user: int = 0) -> Arrival:
        return _arrival(user_id=user_id, chat_type="group", title=None, scope_user=scope_user)

    _, shared = await database.conversations.arrive(group(USER_A))
    _, shared_b = await database.conversations.arrive(group(USER_B))
    _, own_a = await database.conversations.arrive(group(USER_A, USER_A))
    _, own_b = await database.conversations.arrive(group(USER_B, USER_B))
    assert shared == shared_b
    assert shared.scope_user_id == 0
    assert len({shared.id, own_a.id, own_b.id}) == 3
    assert (own_a.scope_user_id, own_b.scope_user_id) == (USER_A, USER_B)


async def test_conversation_needs_a_stored_chat(database: Database) -> None:
    async def open_without_chat(connection: Connection) -> ConversationInfo:
        return await current_conversation(connection, database.clock(), conversation_key(999))

    with pytest.raises(LookupError, match="not stored"):
        await database.runner.write(open_without_chat)


async def test_new_conversation_closes_and_keeps_the_previous_one(database: Database) -> None:
    first = await _group(database)
    await _turn(database, first, "Q1", "A1")
    second = await database.conversations.start_new(_arrival())
    _, current = await database.conversations.arrive(_arrival())
    closed = await db_rows.one(
        database, "SELECT closed_at FROM conversations WHERE id = :id", id=first.id
    )
    old_messages = await db_rows.conversation_messages(database, first.id)
    history = await _history(database, second.id)
    assert current == second
    assert second.id != first.id
    assert closed is not None
    assert closed.closed_at is not None
    assert [m.content for m in old_messages] == ["Q1", "A1"]
    assert history == []


async def test_answer_lifecycle_streaming_checkpoint_finish(database: Database) -> None:
    conversation = await _group(database)
    _, answer_id = await _turn(database, conversation, "Why?", "", MessageStatus.STREAMING)
    assert await database.messages.checkpoint(answer_id, "Because")
    mid = await db_rows.message(database, answer_id)
    assert mid is not None
    assert (mid.status, mid.content) == (MessageStatus.STREAMING, "Because")
    final = await database.messages.finish_answer(
        answer_id,
        Finish(
            status=MessageStatus.COMPLETE,
            text="Because it is.",
            tokens=4,
            sid="cht000sid",
            telegram_message_ids=[501, 502],
        ),
    )
    # A checkpoint that arrives late must not overwrite the final text.
    assert not await database.messages.checkpoint(answer_id, "Bec")
    stored = await db_rows.message(database, answer_id)
    assert stored is not None
    assert stored == final
    assert (stored.status, stored.content, stored.sid) == (
        MessageStatus.COMPLETE,
        "Because it is.",
        "cht000sid",
    )
    assert stored.usable
    assert stored.telegram_message_ids == (501, 502)
    assert stored.model == "lite"
    assert stored.role == "assistant"


async def test_finish_refuses_streaming_and_unknown_messages(database: Database) -> None:
    with pytest.raises(ValueError, match="final status"):
        await database.messages.finish_answer(
            1, Finish(status=MessageStatus.STREAMING, text="", tokens=0)
        )
    with pytest.raises(LookupError, match="message 12345"):
        await database.messages.finish_answer(
            12345, Finish(status=MessageStatus.FAILED, text="", tokens=0)
        )


async def test_recover_interrupted_leaves_no_streaming_row(database: Database) -> None:
    conversation = await _group(database)
    _, a1 = await _turn(database, conversation, "Q1", "", MessageStatus.STREAMING)
    _, a2 = await _turn(database, conversation, "Q2", "done")
    await database.messages.checkpoint(a1, "half an ans")
    assert await database.messages.recover_interrupted() == 1
    assert await database.messages.recover_interrupted() == 0
    recovered = await db_rows.message(database, a1)
    untouched = await db_rows.message(database, a2)
    assert recovered is not None
    assert untouched is not None
    assert (recovered.status, recovered.usable, recovered.content) == (
        MessageStatus.PARTIAL,
        False,
        "half an ans",
    )
    assert untouched.status is MessageStatus.COMPLETE


async def test_recover_interrupted_can_spare_answers_still_being_written(
    database: Database,
) -> None:
    conversation = await _group(database)
    _, answer = await _turn(database, conversation, "Q1", "", MessageStatus.STREAMING)
    assert await database.messages.recover_interrupted(timedelta(minutes=10)) == 0
    assert await database.messages.recover_interrupted() == 1
    recovered = await db_rows.message(database, answer)
    assert recovered is not None
    assert recovered.status is MessageStatus.PARTIAL


async def test_an_answer_is_finished_once_and_never_again(database: Database) -> None:
    conversation = await _group(database)
    _, answer = await _turn(database, conversation, "Q1", "", MessageStatus.STREAMING)
    interrupted = await database.messages.interrupt_answer(GROUP_ID, 0, 0)
    assert interrupted is not None
    assert (interrupted.id, interrupted.status, interrupted.usable) == (
        answer,
        MessageStatus.PARTIAL,
        False,
    )
    assert await database.messages.interrupt_answer(GROUP_ID, 0, 0) is None
    late = Finish(status=MessageStatus.COMPLETE, text="late", tokens=1)
    with pytest.raises(AnswerNotStreaming, match=f"message {answer} "):
        await database.messages.finish_answer(answer, late)
    stored = await db_rows.message(database, answer)
    assert stored is not None
    assert (stored.status, stored.content) == (MessageStatus.PARTIAL, "")


async def test_interrupting_one_conversation_leaves_the_others_streaming(
    database: Database,
) -> None:
    alice = await _group(database, scope_user=USER_A)
    bob = await _group(database, scope_user=USER_B)
    _, alices = await _turn(database, alice, "Q1", "", MessageStatus.STREAMING)
    _, bobs = await _turn(database, bob, "Q2", "", MessageStatus.STREAMING)
    await database.messages.checkpoint(alices, "half")
    interrupted = await database.messages.interrupt_answer(GROUP_ID, 0, USER_A)
    assert interrupted is not None
    assert (interrupted.id, interrupted.content) == (alices, "half")
    still = await db_rows.message(database, bobs)
    assert still is not None
    assert still.status is MessageStatus.STREAMING


async def test_a_question_left_unanswered_gets_one_failed_marker(database: Database) -> None:
    conversation = await _group(database)
    question = await database.messages.add_question(
        conversation, "Q1", tokens=1, user_id=USER_A, telegram_message_id=None
    )
    assert await database.messages.mark_unanswered(question.id, "lite")
    assert not await database.messages.mark_unanswered(question.id, "lite")
    stored = await db_rows.conversation_messages(database, conversation.id)
    assert [(m.role, m.status, m.reply_to_id) for m in stored] == [
        ("user", MessageStatus.COMPLETE, None),
        ("assistant", MessageStatus.FAILED, question.id),
    ]


async def test_retry_supersedes_the_last_answer_and_returns_the_question(
    database: Database,
) -> None:
    conversation = await _group(database)
    await _turn(database, conversation, "Q1", "A1")
    q2, a2 = await _turn(database, conversation, "Q2", "A2 (bad)")
    same, turn = await database.messages.supersede_last_answer(_arrival())
    assert same == conversation
    assert turn is not None
    assert turn.answer is not None
    assert (turn.question.id, turn.question.content) == (q2, "Q2")
    assert (turn.answer.id, turn.answer.status) == (a2, MessageStatus.SUPERSEDED)
    retry = await database.messages.start_answer(conversation, question_id=q2, model="max")
    await database.messages.finish_answer(
        retry.id, Finish(status=MessageStatus.COMPLETE, text="A2 (good)", tokens=3)
    )
    stored = await db_rows.conversation_messages(database, conversation.id)
    last_question = [m for m in stored if m.role == "user"][-1]
    last_answer = [
        m
        for m in stored
        if m.reply_to_id == last_question.id and m.status is not MessageStatus.SUPERSEDED
    ][-1]
    history = await _history(database, conversation.id)
    assert (last_question.id, last_answer.content, last_answer.model) == (q2, "A2 (good)", "max")
    assert [(t[0], t[1]) for t in history] == [("Q2", "A2 (good)"), ("Q1", "A1")]


async def test_retry_with_nothing_asked_returns_none(database: Database) -> None:
    conversation = await _group(database)
    same, turn = await database.messages.supersede_last_answer(_arrival())
    assert same == conversation
    assert turn is None
    assert await db_rows.conversation_messages(database, conversation.id) == []


async def test_find_by_telegram_message_id_resolves_questions_and_answers(
    database: Database,
) -> None:
    conversation = await _group(database)
    q, a = await _turn(database, conversation, "Q", "A", telegram_ids=(100, 101, 102))
    by_question = await db_rows.message_shown_by(database, GROUP_ID, 100)
    by_answer = await db_rows.message_shown_by(database, GROUP_ID, 102)
    dropped = await db_rows.message_shown_by(database, GROUP_ID, 103)
    other_chat = await db_rows.message_shown_by(database, USER_A, 100)
    answer = await db_rows.message(database, a)
    assert by_question is not None
    assert by_question.id == q
    assert by_answer is not None
    assert by_answer.id == a
    assert dropped is None
    assert other_chat is None
    assert answer is not None
    assert answer.telegram_message_ids == (101, 102)


async def test_history_counts_only_complete_and_usable_partial_turns(database: Database) -> None:
    conversation = await _group(database)
    await _turn(database, conversation, "Q-complete", "A-complete")
    await _turn(database, conversation, "Q-failed", "", MessageStatus.FAILED)
    await _turn(database, conversation, "Q-cancelled", "A-cut", MessageStatus.CANCELLED)
    await _turn(database, conversation, "Q-partial-bad", "A-p1", MessageStatus.PARTIAL)
    await _turn(database, conversation, "Q-partial-ok", "A-p2", MessageStatus.PARTIAL, usable=True)
    await _turn(database, conversation, "Q-streaming", "", MessageStatus.STREAMING)
    turns = await _history(database, conversation.id)
    found = await database.messages.prompt_history(
        conversation.id, GROUP_ID, room=0, turn_overhead=0
    )
    count = found.total
    assert [(t[0], t[1]) for t in turns] == [
        ("Q-partial-ok", "A-p2"),
        ("Q-complete", "A-complete"),
    ]
    assert count == 2
    # Each text's token estimate is stored with it, so prompts need not re-count history.
    for question, answer, question_tokens, answer_tokens in turns:
        assert question_tokens == estimate_text_tokens(question)
        assert answer_tokens == estimate_text_tokens(answer)


async def test_calibration_ratio_is_stored_per_chat(database: Database) -> None:
    conversation = await _group(database)
    await db_rows.upsert_chat(database, USER_A, type="private")
    ratios = []
    for n in range(8):
        _, answer_id = await _turn(database, conversation, f"Q{n}", "", MessageStatus.STREAMING)
        await database.messages.finish_answer(
            answer_id,
            Finish(
                status=MessageStatus.COMPLETE,
                text="A",
                tokens=1,
                calibration=Calibration(GROUP_ID, 100, 180, CALIBRATION),
            ),
        )
        group = await database.chats.get(GROUP_ID)
        assert group is not None
        ratios.append(group.token_ratio)
    private = await database.chats.get(USER_A)
    assert private is not None
    assert ratios == sorted(ratios)
    assert ratios[0] == update_ratio(1.0, 100, 180)
    assert 1.75 < ratios[-1] <= 1.8
    assert private.token_ratio == 1.0


async def test_usage_ledger_totals_quota_top_users_and_latency(database: Database) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    clock_at = [now - timedelta(days=2)]
    async with _clocked(database, lambda: clock_at[0]) as timed:
        await _group(database)
        rows = [
            # (days ago, user, tokens, first token ms, duration ms, error)
            (2, USER_A, 100, 900, 4000, None),
            (0, USER_A, 300, 300, 1000, None),
            (0, USER_A, 50, 200, 800, None),
            (0, USER_B, 500, 100, 600, None),
            (0, USER_B, 0, None, 50, 10013),
        ]
        for days, user, tokens, first, duration, error in rows:
            clock_at[0] = now - timedelta(days=days, minutes=1)
            await timed.usage.record(
                model="lite",
                usage=TokenUsage(
                    prompt_tokens=tokens // 2,
                    completion_tokens=tokens - tokens // 2,
                    total_tokens=tokens,
                ),
                user_id=user,
                chat_id=GROUP_ID,
                first_token_ms=first,
                duration_ms=duration,
                error_code=error,
            )
        today = now.replace(hour=0, minute=0)
        used_a = await timed.usage.tokens_used(USER_A, today)
        use_b = await timed.usage.daily_use(USER_B, now.date())
        assert await timed.users.set_daily_quota(USER_A, 1000)
        use_a = await timed.usage.daily_use(USER_A, now.date())
        ledger = await db_rows.ledger(database)
        assert used_a == 350
        assert (use_a.quota, use_a.used) == (1000, 350)
        assert (use_b.quota, use_b.used) == (None, 500)
        # What the ledger keeps, row by row, as it was recorded.
        assert [(row.user_id, row.total_tokens, row.error_code) for row in ledger] == [
            (user, tokens, error) for _days, user, tokens, _first, _duration, error in rows
        ]
        assert [row.prompt_tokens + row.completion_tokens for row in ledger] == [
            tokens for _days, _user, tokens, *_rest in rows
        ]
        assert [(row.first_token_ms, row.duration_ms) for row in ledger] == [
            (first, duration) for _days, _user, _tokens, first, duration, _error in rows
        ]
        assert [row.created_at for row in ledger] == [
            now - timedelta(days=days, minutes=1) for days, *_rest in rows
        ]


async def test_the_quota_read_counts_the_utc_day_of_each_ledger_row(database: Database) -> None:
    midnight = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
    moments = [
        (midnight - timedelta(microseconds=1), 1000),  # the day before, to the last instant
        (midnight, 20),
        (midnight + timedelta(hours=23, minutes=59, seconds=59), 300),
        (midnight + timedelta(days=1), 4000),  # the next day
    ]
    clock_at = [midnight]
    async with _clocked(database, lambda: clock_at[0]) as timed:
        for moment, tokens in moments:
            clock_at[0] = moment
            await timed.usage.record(
                model="lite",
                usage=TokenUsage(total_tokens=tokens),
                user_id=USER_A,
                chat_id=None,
            )
        await timed.usage.record(  # another user's row counts for them only
            model="lite", usage=TokenUsage(total_tokens=50_000), user_id=USER_B, chat_id=None
        )
        today = await timed.usage.daily_use(USER_A, midnight.date())
        before = await timed.usage.daily_use(USER_A, (midnight - timedelta(days=1)).date())
        after = await timed.usage.daily_use(USER_A, (midnight + timedelta(days=1)).date())
        idle = await timed.usage.daily_use(USER_A, (midnight + timedelta(days=5)).date())
        since_midnight = await timed.usage.tokens_used(USER_A, midnight)
    assert (today.used, before.used, after.used, idle.used) == (320, 1000, 4000, 0)
    assert since_midnight == 4320  # the ledger's own range read agrees: today and after
    assert today.quota is None


async def test_timestamps_are_aware_utc_and_come_from_the_clock(database: Database) -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    async with _clocked(database, lambda: moment) as timed:
        user = await db_rows.upsert_user(timed, USER_A)
        stored = await db_rows.user(timed, USER_A)
        assert stored is not None
        assert stored.created_at == moment == user.created_at
        assert stored.created_at.utcoffset() == timedelta(0)


async def test_naive_timestamps_are_refused(database: Database) -> None:
    async with _clocked(database, lambda: datetime(2030, 1, 1)) as naive:
        with pytest.raises(Exception, match="naive datetime"):
            await db_rows.upsert_user(naive, USER_A)


async def test_a_failed_unit_of_work_leaves_nothing_behind(database: Database) -> None:
    async def store_then_fail(connection: Connection) -> None:
        await upsert_user(
            connection,
            database.clock(),
            USER_A,
            username=None,
            first_name=None,
            language_code=None,
        )
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await database.runner.write(store_then_fail)
    assert await db_rows.user(database, USER_A) is None


async def test_a_unit_that_waits_on_anything_but_its_sqlite_connection_is_refused(
    sqlite_database: Database,
) -> None:
    # On SQLite a unit runs to its end in one step on the worker's thread: nothing may suspend.
    async def waits(connection: Connection) -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other than its SQLite"):
        await sqlite_database.runner.read(waits)
    assert await db_rows.user(sqlite_database, USER_A) is None  # the worker goes on


async def test_a_one_statement_unit_runs_one_statement(database: Database) -> None:
    async def two(connection: Connection) -> None:
        await upsert_user(
            connection,
            database.clock(),
            USER_A,
            username=None,
            first_name=None,
            language_code=None,
        )
        await upsert_user(
            connection,
            database.clock(),
            USER_B,
            username=None,
            first_name=None,
            language_code=None,
        )

    if database.backend == "postgresql":  # autocommit: only one statement is atomic
        with pytest.raises(RuntimeError, match="second statement"):
            await database.runner.write(two, one_statement=True)
        assert await db_rows.user(database, USER_B) is None
    else:  # a unit is always its own savepoint in the writer's transaction
        await database.runner.write(two, one_statement=True)
        assert await db_rows.user(database, USER_B) is not None
