"""Repositories on real databases: SQLite files and, where TEST_DATABASE_URL is set,
PostgreSQL schemas. Every test reads back what was stored."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.service.budget import CALIBRATION
from bot.spark.tokens import estimate_text_tokens, update_ratio
from storage.database import Database, create_database, normalise_url
from storage.dto import Calibration, ConversationInfo, MessageStatus, TokenUsage
from storage.migrate import upgrade

GROUP_ID = -1001234567890123
USER_A = 7_000_000_001
USER_B = 7_000_000_002


async def _group(database: Database, *, scope_user: int | None = None) -> ConversationInfo:
    async with database.repositories() as repo:
        await repo.users.upsert(USER_A, username="alice", first_name="Alice")
        await repo.chats.upsert(GROUP_ID, type="supergroup", title="Team")
        return await repo.conversations.current(
            GROUP_ID, user_id=scope_user, scope="user" if scope_user else "chat"
        )


async def _turn(
    database: Database,
    conversation: ConversationInfo,
    question: str,
    answer: str,
    status: MessageStatus = MessageStatus.COMPLETE,
    *,
    usable: bool | None = None,
    telegram_ids: tuple[int, int] | None = None,
) -> tuple[int, int]:
    async with database.repositories() as repo:
        q = await repo.messages.add_user_message(
            conversation,
            question,
            tokens=estimate_text_tokens(question),
            user_id=USER_A,
            telegram_message_id=telegram_ids[0] if telegram_ids else None,
        )
        a = await repo.messages.start_assistant_message(
            conversation, question_id=q.id, model="lite", user_id=USER_A
        )
    if status is not MessageStatus.STREAMING:
        async with database.repositories() as repo:
            await repo.messages.finish(
                a.id,
                status=status,
                text=answer,
                tokens=estimate_text_tokens(answer),
                sid="cht000abc",
                usable=usable,
                telegram_message_ids=telegram_ids[1:] if telegram_ids else (),
            )
    return q.id, a.id


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
        async with database.session(readonly=True) as session:
            pragmas = {
                name: (await session.execute(text(f"PRAGMA {name}"))).scalar()
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
    async with database.repositories() as repo:
        first = await repo.users.upsert(USER_A, username="alice", language_code="en")
        assert await repo.users.set_daily_quota(USER_A, 5000)
    async with database.repositories() as repo:
        again = await repo.users.upsert(USER_A, username="alice2", first_name="Alice")
    async with database.repositories(readonly=True) as repo:
        stored = await repo.users.get(USER_A)
        assert await repo.users.get(USER_B) is None
    assert stored == again
    assert (again.username, again.first_name, again.language_code) == ("alice2", "Alice", None)
    assert again.daily_token_quota == 5000
    assert again.created_at == first.created_at
    assert again.created_at.tzinfo is UTC


async def test_chat_upsert_keeps_its_uid_settings_and_accepts_huge_negative_ids(
    database: Database,
) -> None:
    async with database.repositories() as repo:
        created = await repo.chats.upsert(GROUP_ID, type="group", title="Old")
        assert await repo.chats.set_model(GROUP_ID, "max")
        assert await repo.chats.set_system_prompt(GROUP_ID, "  Answer briefly.  ")
        assert not await repo.chats.set_model(42, "max")
    async with database.repositories() as repo:
        updated = await repo.chats.upsert(GROUP_ID, type="supergroup", title="New")
    assert updated.id == GROUP_ID
    assert (updated.type, updated.title) == ("supergroup", "New")
    assert (updated.model, updated.system_prompt) == ("max", "Answer briefly.")
    assert updated.spark_uid == created.spark_uid
    assert updated.token_ratio == 1.0
    async with database.repositories() as repo:
        await repo.chats.set_system_prompt(GROUP_ID, "   ")
        await repo.chats.set_model(GROUP_ID, None)
        cleared = await repo.chats.get(GROUP_ID)
    assert cleared is not None
    assert (cleared.model, cleared.system_prompt) == (None, None)


async def test_spark_uids_are_random_short_and_distinct_per_chat_and_topic(
    database: Database,
) -> None:
    async with database.repositories() as repo:
        private = await repo.chats.upsert(USER_A, type="private")
        group = await repo.chats.upsert(GROUP_ID, type="supergroup", title="Forum")
        main = await repo.conversations.current(GROUP_ID)
        topic = await repo.conversations.current(GROUP_ID, thread_id=17)
        topic_again = await repo.conversations.current(GROUP_ID, thread_id=17)
        other_topic = await repo.conversations.current(GROUP_ID, thread_id=18)
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
    async with database.repositories() as repo:
        renewed = await repo.conversations.start_new(GROUP_ID, thread_id=17)
    assert renewed.spark_uid == topic.spark_uid
    assert renewed.id != topic.id


async def test_group_scope_user_gives_each_member_a_conversation(database: Database) -> None:
    async with database.repositories() as repo:
        await repo.chats.upsert(GROUP_ID, type="group")
        shared = await repo.conversations.current(GROUP_ID, user_id=USER_A, scope="chat")
        shared_b = await repo.conversations.current(GROUP_ID, user_id=USER_B, scope="chat")
        own_a = await repo.conversations.current(GROUP_ID, user_id=USER_A, scope="user")
        own_b = await repo.conversations.current(GROUP_ID, user_id=USER_B, scope="user")
    assert shared == shared_b
    assert shared.scope_user_id == 0
    assert len({shared.id, own_a.id, own_b.id}) == 3
    assert (own_a.scope_user_id, own_b.scope_user_id) == (USER_A, USER_B)


async def test_conversation_needs_a_stored_chat(database: Database) -> None:
    with pytest.raises(LookupError, match="not stored"):
        async with database.repositories() as repo:
            await repo.conversations.current(999)


async def test_new_conversation_closes_and_keeps_the_previous_one(database: Database) -> None:
    first = await _group(database)
    await _turn(database, first, "Q1", "A1")
    async with database.repositories() as repo:
        second = await repo.conversations.start_new(GROUP_ID)
        current = await repo.conversations.current(GROUP_ID)
        closed = await repo.conversations.get(first.id)
        old_messages = await repo.messages.conversation_messages(first.id)
        history = await repo.messages.recent_turns(second.id)
    assert current == second
    assert second.id != first.id
    assert closed is not None
    assert closed.closed_at is not None
    assert [m.content for m in old_messages] == ["Q1", "A1"]
    assert history == []


async def test_answer_lifecycle_streaming_checkpoint_finish(database: Database) -> None:
    conversation = await _group(database)
    _, answer_id = await _turn(database, conversation, "Why?", "", MessageStatus.STREAMING)
    async with database.repositories() as repo:
        assert await repo.messages.checkpoint(answer_id, "Because")
        mid = await repo.messages.get(answer_id)
    assert mid is not None
    assert (mid.status, mid.content) == (MessageStatus.STREAMING, "Because")
    async with database.repositories() as repo:
        final = await repo.messages.finish(
            answer_id,
            status=MessageStatus.COMPLETE,
            text="Because it is.",
            tokens=4,
            sid="cht000sid",
            telegram_message_ids=[501, 502],
        )
        # A checkpoint that arrives late must not overwrite the final text.
        assert not await repo.messages.checkpoint(answer_id, "Bec")
    async with database.repositories(readonly=True) as repo:
        stored = await repo.messages.get(answer_id)
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
        async with database.repositories() as repo:
            await repo.messages.finish(1, status=MessageStatus.STREAMING, text="", tokens=0)
    with pytest.raises(LookupError, match="message 12345"):
        async with database.repositories() as repo:
            await repo.messages.finish(12345, status=MessageStatus.FAILED, text="", tokens=0)


async def test_recover_interrupted_leaves_no_streaming_row(database: Database) -> None:
    conversation = await _group(database)
    _, a1 = await _turn(database, conversation, "Q1", "", MessageStatus.STREAMING)
    _, a2 = await _turn(database, conversation, "Q2", "done")
    async with database.repositories() as repo:
        await repo.messages.checkpoint(a1, "half an ans")
    async with database.repositories() as repo:
        assert await repo.messages.recover_interrupted() == 1
    async with database.repositories() as repo:
        assert await repo.messages.recover_interrupted() == 0
        recovered = await repo.messages.get(a1)
        untouched = await repo.messages.get(a2)
    assert recovered is not None
    assert untouched is not None
    assert (recovered.status, recovered.usable, recovered.content) == (
        MessageStatus.PARTIAL,
        False,
        "half an ans",
    )
    assert untouched.status is MessageStatus.COMPLETE


async def test_retry_supersedes_the_last_answer_and_returns_the_question(
    database: Database,
) -> None:
    conversation = await _group(database)
    await _turn(database, conversation, "Q1", "A1")
    q2, a2 = await _turn(database, conversation, "Q2", "A2 (bad)")
    async with database.repositories() as repo:
        turn = await repo.messages.supersede_last_answer(conversation.id)
    assert turn is not None
    assert turn.answer is not None
    assert (turn.question.id, turn.question.content) == (q2, "Q2")
    assert (turn.answer.id, turn.answer.status) == (a2, MessageStatus.SUPERSEDED)
    async with database.repositories() as repo:
        retry = await repo.messages.start_assistant_message(
            conversation, question_id=q2, model="max"
        )
        await repo.messages.finish(
            retry.id, status=MessageStatus.COMPLETE, text="A2 (good)", tokens=3
        )
    async with database.repositories(readonly=True) as repo:
        last = await repo.messages.last_turn(conversation.id)
        history = await repo.messages.recent_turns(conversation.id)
    assert last is not None
    assert last.answer is not None
    assert (last.question.id, last.answer.content, last.answer.model) == (q2, "A2 (good)", "max")
    assert [(t.question, t.answer) for t in history] == [("Q2", "A2 (good)"), ("Q1", "A1")]


async def test_retry_with_nothing_asked_returns_none(database: Database) -> None:
    conversation = await _group(database)
    async with database.repositories() as repo:
        assert await repo.messages.supersede_last_answer(conversation.id) is None
        assert await repo.messages.last_turn(conversation.id) is None


async def test_find_by_telegram_message_id_resolves_questions_and_answers(
    database: Database,
) -> None:
    conversation = await _group(database)
    q, a = await _turn(database, conversation, "Q", "A", telegram_ids=(100, 101))
    async with database.repositories() as repo:
        await repo.messages.set_telegram_message_ids(a, [101, 102])
    async with database.repositories(readonly=True) as repo:
        by_question = await repo.messages.find_by_telegram_id(GROUP_ID, 100)
        by_answer = await repo.messages.find_by_telegram_id(GROUP_ID, 102)
        dropped = await repo.messages.find_by_telegram_id(GROUP_ID, 103)
        other_chat = await repo.messages.find_by_telegram_id(USER_A, 100)
        answer = await repo.messages.get(a)
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
    async with database.repositories(readonly=True) as repo:
        turns = await repo.messages.recent_turns(conversation.id)
        count = await repo.messages.count_turns(conversation.id)
    assert [(t.question, t.answer) for t in turns] == [
        ("Q-partial-ok", "A-p2"),
        ("Q-complete", "A-complete"),
    ]
    assert count == 2
    # Each text's token estimate is stored with it, so prompts need not re-count history.
    for turn in turns:
        assert turn.question_tokens == estimate_text_tokens(turn.question)
        assert turn.answer_tokens == estimate_text_tokens(turn.answer)


async def test_calibration_ratio_is_stored_per_chat(database: Database) -> None:
    conversation = await _group(database)
    async with database.repositories() as repo:
        await repo.chats.upsert(USER_A, type="private")
    ratios = []
    for n in range(8):
        _, answer_id = await _turn(database, conversation, f"Q{n}", "", MessageStatus.STREAMING)
        await database.turns.finish_answer(
            answer_id,
            status=MessageStatus.COMPLETE,
            text="A",
            tokens=1,
            calibration=Calibration(GROUP_ID, 100, 180, CALIBRATION),
        )
        async with database.repositories(readonly=True) as repo:
            group = await repo.chats.get(GROUP_ID)
        assert group is not None
        ratios.append(group.token_ratio)
    async with database.repositories(readonly=True) as repo:
        private = await repo.chats.get(USER_A)
    assert private is not None
    assert ratios == sorted(ratios)
    assert ratios[0] == update_ratio(1.0, 100, 180)
    assert 1.75 < ratios[-1] <= 1.8
    assert private.token_ratio == 1.0


async def test_usage_ledger_totals_quota_top_users_and_latency(database: Database) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    clock_at = [now - timedelta(days=2)]
    timed = Database(database.engine, clock=lambda: clock_at[0])
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
        async with timed.repositories() as repo:
            await repo.usage.record(
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
    async with timed.repositories(readonly=True) as repo:
        used_a = await repo.usage.tokens_used(USER_A, today)
        totals = await repo.usage.totals(today)
        week = await repo.usage.totals(now - timedelta(days=7), chat_id=GROUP_ID)
        per_user = await repo.usage.totals(today, user_id=USER_B)
        top = await repo.usage.top_users(today)
        latency = await repo.usage.latency(now - timedelta(days=7))
        nothing = await repo.usage.latency(now + timedelta(days=1))
    assert used_a == 350
    assert (totals.requests, totals.failed_requests, totals.total_tokens) == (4, 1, 850)
    assert totals.prompt_tokens + totals.completion_tokens == 850
    assert (week.requests, week.total_tokens) == (5, 950)
    assert (per_user.requests, per_user.total_tokens) == (2, 500)
    assert [(t.user_id, t.requests, t.total_tokens) for t in top] == [
        (USER_B, 2, 500),
        (USER_A, 2, 350),
    ]
    assert latency.samples == 4
    assert (latency.first_token_p50_ms, latency.first_token_p95_ms) == (200, 900)
    assert (latency.duration_p50_ms, latency.duration_p95_ms) == (800, 4000)
    assert nothing.samples == 0
    assert nothing.first_token_p50_ms is None


async def test_timestamps_are_aware_utc_and_come_from_the_clock(database: Database) -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    timed = Database(database.engine, clock=lambda: moment)
    async with timed.repositories() as repo:
        user = await repo.users.upsert(USER_A)
    async with timed.repositories(readonly=True) as repo:
        stored = await repo.users.get(USER_A)
    assert stored is not None
    assert stored.created_at == moment == user.created_at
    assert stored.created_at.utcoffset() == timedelta(0)


async def test_naive_timestamps_are_refused(database: Database) -> None:
    naive = Database(database.engine, clock=lambda: datetime(2030, 1, 1))
    with pytest.raises(Exception, match="naive datetime"):
        async with naive.repositories() as repo:
            await repo.users.upsert(USER_A)


async def test_a_failed_unit_of_work_leaves_nothing_behind(database: Database) -> None:
    async def store_then_fail() -> None:
        async with database.repositories() as repo:
            await repo.users.upsert(USER_A)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store_then_fail()
    async with database.repositories(readonly=True) as repo:
        assert await repo.users.get(USER_A) is None
