"""Many chats writing at once: no "database is locked", no lost or duplicated rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.service.budget import CALIBRATION
from storage.database import Database, create_database
from storage.dto import Calibration, LedgerEntry, MessageStatus, TokenUsage
from storage.migrate import upgrade
from storage.repositories.conversations import Arrival
from storage.repositories.messages import Finish
from tests.support import db_rows
from tests.support.db_fixtures import sqlite_url

TURNS = 320


async def _turn_write(database: Database, chat_id: int) -> int:
    """One turn as the conversation service writes it: the arrival (a new user and chat, so
    in a second unit), then the question, the streaming answer row, a checkpoint, and the final
    answer with its ledger row and calibration, the units of many chats interleaving as they
    do in the bot."""
    chat, conversation = await database.conversations.arrive(
        Arrival(
            user_id=chat_id,
            username=None,
            first_name=f"user {chat_id}",
            language_code=None,
            chat_id=chat_id,
            chat_type="private",
            title=None,
            thread_id=0,
            scope_user_id=0,
        ),
    )
    user_id = chat_id
    messages = database.messages
    question = await messages.add_question(
        conversation, f"question {chat_id}", tokens=2, user_id=user_id, telegram_message_id=1
    )
    answer = await messages.start_answer(
        conversation, question_id=question.id, model="lite", user_id=user_id
    )
    await asyncio.sleep(0)
    await messages.checkpoint(answer.id, "answer so f")
    await messages.finish_answer(
        answer.id,
        Finish(
            status=MessageStatus.COMPLETE,
            text=f"answer {chat_id}",
            tokens=2,
            sid=f"sid{chat_id}",
            telegram_message_ids=[2],
            ledger=LedgerEntry(
                model="lite",
                usage=TokenUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
                user_id=user_id,
                chat_id=chat.id,
                first_token_ms=100,
                duration_ms=900,
            ),
            calibration=Calibration(chat.id, 10, 12, CALIBRATION),
        ),
    )
    return answer.id


async def _assert_stored(database: Database, chat_ids: list[int]) -> None:
    rows = await db_rows.rows(
        database, "SELECT content, status FROM messages WHERE role = 'assistant'"
    )
    answers = {row.content: row.status for row in rows}
    questions = len(await db_rows.rows(database, "SELECT id FROM messages WHERE role = 'user'"))
    ledger = sum(row.total_tokens for row in await db_rows.ledger(database))
    conversations = len(await db_rows.rows(database, "SELECT id FROM conversations"))
    assert answers == {f"answer {chat_id}": "complete" for chat_id in chat_ids}
    assert questions == len(chat_ids) == conversations
    assert ledger == 15 * len(chat_ids)
    found = await db_rows.message_shown_by(database, chat_ids[-1], 2)
    chat = await database.chats.get(chat_ids[0])
    assert found is not None
    assert found.content == f"answer {chat_ids[-1]}"
    assert chat is not None
    assert chat.token_ratio > 1.0


async def test_hundreds_of_concurrent_turn_writes_on_one_sqlite_file(
    sqlite_database: Database,
) -> None:
    chat_ids = list(range(1, TURNS + 1))
    ids = await asyncio.gather(*(_turn_write(sqlite_database, c) for c in chat_ids))
    assert len(set(ids)) == TURNS
    await _assert_stored(sqlite_database, chat_ids)


async def test_two_engines_on_one_sqlite_file_wait_instead_of_failing(tmp_path: Path) -> None:
    """Two engines stand for two processes (say a migration or a second worker): the busy
    timeout and BEGIN IMMEDIATE make them queue for the file's write lock."""
    url = sqlite_url(tmp_path)
    await upgrade(url)
    first, second = create_database(url), create_database(url)
    try:
        chat_ids = list(range(1, 201))
        await asyncio.gather(
            *(_turn_write(first if c % 2 else second, c) for c in chat_ids),
        )
        await _assert_stored(first, chat_ids)
    finally:
        await first.dispose()
        await second.dispose()


async def test_concurrent_turn_writes_on_each_backend(database: Database) -> None:
    chat_ids = [-1_000_000_000_000 - c for c in range(TURNS)]
    await asyncio.gather(*(_turn_write(database, c) for c in chat_ids))
    await _assert_stored(database, chat_ids)


async def test_concurrent_callers_converge_on_one_open_conversation(database: Database) -> None:
    await db_rows.upsert_chat(database, -100, type="supergroup")

    async def current(thread: int) -> int:
        return (await db_rows.open_conversation(database, -100, thread_id=thread)).id

    ids = await asyncio.gather(*(current(thread) for thread in [0, 5] * 20))
    assert len(set(ids[0::2])) == 1
    assert len(set(ids[1::2])) == 1
    assert ids[0] != ids[1]
