"""Web conversations in storage, on SQLite and PostgreSQL: numbers never handed out twice,
each key reaching only its own, a delete taking the chat and its messages (not the ledger)."""

from __future__ import annotations

from storage.database import Database
from storage.dto import LedgerEntry, MessageStatus, TokenUsage
from storage.repositories.api_keys import key_hash
from storage.repositories.conversations import Arrival
from storage.repositories.messages import Finish
from storage.repositories.web_conversations import WEB_CHAT_TYPE, web_chat_id
from tests.support import db_rows


async def _key(database: Database, name: str) -> tuple[int, int]:
    """A key's id and its user's."""
    key = await database.api_keys.create(name, key_hash(name))
    return key.id, key.user_id


async def test_numbers_of_deleted_conversations_are_never_handed_out_again(
    database: Database,
) -> None:
    key, _ = await _key(database, "alice")
    numbers = [(await database.web_conversations.create(key)).number for _ in range(3)]
    assert numbers == sorted(set(numbers))

    assert await database.web_conversations.delete(key, numbers[-1])  # the newest
    assert await database.web_conversations.get(key, numbers[-1]) is None
    again = await database.web_conversations.create(key)
    assert again.number > numbers[-1]
    assert await database.web_conversations.get(key, numbers[-1]) is None
    listed = await database.web_conversations.page(key, before=None, limit=10)
    assert [c.number for c in listed] == [again.number, numbers[1], numbers[0]]


async def test_a_key_reaches_only_its_own_conversations(database: Database) -> None:
    alice, _ = await _key(database, "alice")
    bob, _ = await _key(database, "bob")
    mine = await database.web_conversations.create(alice)
    theirs = await database.web_conversations.create(bob)

    assert await database.web_conversations.get(bob, mine.number) is None
    assert not await database.web_conversations.delete(bob, mine.number)
    assert await database.web_conversations.get(alice, mine.number) == mine
    assert [
        c.number for c in await database.web_conversations.page(bob, before=None, limit=5)
    ] == [theirs.number]
    for number in (0, -1, 1 << 63):
        assert await database.web_conversations.get(alice, number) is None


async def test_pages_go_newest_first_below_a_number(database: Database) -> None:
    key, _ = await _key(database, "alice")
    numbers = [(await database.web_conversations.create(key)).number for _ in range(5)]
    first = await database.web_conversations.page(key, before=None, limit=2)
    assert [c.number for c in first] == numbers[:2:-1]
    rest = await database.web_conversations.page(key, before=first[-1].number, limit=10)
    assert [c.number for c in rest] == numbers[2::-1]


async def test_a_conversation_is_a_web_chat_with_its_history_and_a_delete_takes_it_all(
    database: Database,
) -> None:
    key, user = await _key(database, "alice")
    created = await database.web_conversations.create(key)
    assert created.chat_id == web_chat_id(created.number)
    chat = await database.chats.get(created.chat_id)
    assert chat is not None
    assert (chat.type, len(chat.spark_uid)) == (WEB_CHAT_TYPE, 32)

    arrival = Arrival(user, None, "key alice", None, created.chat_id, WEB_CHAT_TYPE, "hi")
    _, conversation = await database.conversations.arrive(arrival)
    question = await database.messages.add_question(conversation, "hi", tokens=1, user_id=user)
    answer = await database.messages.start_answer(
        conversation, question_id=question.id, model="lite", user_id=user
    )
    await database.messages.finish_answer(
        answer.id,
        Finish(
            status=MessageStatus.COMPLETE,
            text="hello",
            tokens=1,
            ledger=LedgerEntry("lite", TokenUsage(3, 1, 4), user, created.chat_id),
        ),
    )
    stored = await database.web_conversations.messages(created.chat_id)
    assert [(m.role, m.content) for m in stored] == [("user", "hi"), ("assistant", "hello")]
    found = await database.web_conversations.answer_to(created.chat_id, question.id)
    assert found is not None
    assert found.id == answer.id
    titled = await database.web_conversations.get(key, created.number)
    assert titled is not None
    assert titled.title == "hi"

    assert await database.web_conversations.delete(key, created.number)
    assert await database.chats.get(created.chat_id) is None
    assert await db_rows.chat_messages(database, created.chat_id) == []
    left = await db_rows.rows(
        database, "SELECT id FROM conversations WHERE chat_id = :chat", chat=created.chat_id
    )
    assert left == []
    ledger = await db_rows.ledger(database)  # the ledger keeps what was spent
    assert [(row.chat_id, row.total_tokens) for row in ledger] == [(created.chat_id, 4)]


async def test_a_questions_arrival_is_read_in_one_and_the_first_question_names_it(
    database: Database,
) -> None:
    alice, alice_user = await _key(database, "alice")
    bob, _ = await _key(database, "bob")
    info = await database.web_conversations.create(alice)
    before = await database.web_conversations.arrival(alice, info.number)
    assert before is not None
    assert (before.info, before.chat.id, before.conversation) == (info, info.chat_id, None)
    assert before.info.owner.user_id == alice_user
    assert await database.web_conversations.arrival(bob, info.number) is None
    assert await database.web_conversations.arrival(alice, info.number + 1) is None

    named = await database.web_conversations.name(info.chat_id, "first")
    named_again = await database.web_conversations.name(info.chat_id, "second")
    assert named is not None
    assert named_again is not None
    (chat, conversation), (again_chat, again) = named, named_again
    assert (chat.title, again_chat.title) == ("first", "first")  # named once
    assert again == conversation
    after = await database.web_conversations.arrival(alice, info.number)
    assert after is not None
    assert after.conversation == conversation
    assert after.info.title == "first"
    assert conversation.spark_uid == after.chat.spark_uid
    # The service's own arrival finds the same chat and conversation.
    owner = after.info.owner
    arrived = await database.conversations.arrive(
        Arrival(
            user_id=owner.user_id,
            username=owner.username,
            first_name=owner.first_name,
            language_code=owner.language_code,
            chat_id=info.chat_id,
            chat_type=WEB_CHAT_TYPE,
            title="first",
        )
    )
    assert arrived == (after.chat, conversation)
    assert await database.web_conversations.delete(alice, info.number)
    assert await database.web_conversations.name(info.chat_id, "gone") is None
