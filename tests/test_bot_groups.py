"""End to end in groups and forum topics: when the bot speaks, where, and how often."""

from __future__ import annotations

import itertools
import re

from bot.spark.simulator import SimulatorOptions
from tests.support.bot_harness import (
    TIME_FACTOR,
    BotFactory,
    RunningBot,
    spark_messages,
    spark_pace,
    spark_uid,
)
from tests.support.fake_telegram import RecordedCall
from tests.support.telegram_driver import TgChat

# Slow enough that a group answer is edited a few times under the 3 s group floor.
SLOW_FRAMES = spark_pace(frame_interval=0.05, chars_per_frame=12)
GROUP_FLOOR = 3.0
# Call times are taken when a request reaches the fake, a few ms of real time after the bot's
# own clock read them: that many ms times TIME_FACTOR on the clock they share.
CLOCK_SLACK = 0.05 * TIME_FACTOR


def _answer_calls(bot: RunningBot, chat_id: int) -> list[RecordedCall]:
    return [
        call
        for call in bot.fake.calls
        if call.method in ("sendMessage", "editMessageText") and call.chat_id == chat_id
    ]


async def _answered(
    bot: RunningBot, chat: TgChat, count: int, thread_id: int | None = None
) -> None:
    """Wait until ``count`` answers are stored and the last one is on screen in full."""
    stored = await bot.wait_stored(chat.id, count)
    last = max((m for m in stored if m.role == "assistant"), key=lambda m: m.id).content.strip()
    await bot.fake.wait_for(lambda: last in bot.fake.visible_texts(chat.id, thread_id))


async def test_mention_is_answered_in_place_with_the_mention_stripped(
    make_bot: BotFactory,
) -> None:
    bot = await make_bot(simulator_options=SLOW_FRAMES)
    bot.fake.privacy_mode = False
    group = bot.driver.group("Physics club")
    user = bot.driver.user(first_name="Bea")
    asked = await bot.driver.send_mention(
        group, user, "@spark_test_bot [[long:900]] how do tides work?"
    )

    stored = await bot.wait_stored(group.id, 1)
    (request,) = bot.spark.requests
    assert request.question == "[[long:900]] how do tides work?"
    answer = request.answer_text
    assert len(answer) == 900
    await bot.fake.wait_for(lambda: bot.fake.visible_texts(group.id) == [answer.strip()])

    (shown,) = bot.fake.visible_messages(group.id)
    assert shown.reply_to_message_id == asked["message_id"]
    calls = _answer_calls(bot, group.id)
    assert [c.method for c in calls[:1]] == ["sendMessage"]
    edits = calls[1:]
    assert edits, "a 900-character answer streamed over seconds is edited at least once"
    assert all(c.method == "editMessageText" for c in edits)
    assert {int(c.params["message_id"]) for c in edits} == {shown.message_id}
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert min(gaps) >= GROUP_FLOOR - CLOCK_SLACK, gaps
    assert bot.fake.violations == []
    assert not bot.fake.calls_to("sendMessageDraft")

    assert stored[-1].status == "complete"
    assert stored[-1].content == answer
    assert stored[-1].telegram_message_ids == (shown.message_id,)
    assert stored[0].content == "[[long:900]] how do tides work?"


async def test_reply_to_the_bot_is_answered_with_the_conversation(make_bot: BotFactory) -> None:
    bot = await make_bot()  # privacy mode on: replies to the bot still arrive
    group = bot.driver.group("Book club")
    user = bot.driver.user()
    await bot.driver.send_command(group, user, "/ask@spark_test_bot [[answer:Dune.]] best novel?")
    await _answered(bot, group, 1)
    (first,) = bot.fake.visible_messages(group.id)

    follow_up = await bot.driver.send_text(
        group, user, "[[answer:Frank Herbert.]] who wrote it?", reply_to=first.message_id
    )
    await _answered(bot, group, 2)
    assert bot.fake.visible_texts(group.id) == ["Dune.", "Frank Herbert."]
    second = bot.fake.visible_messages(group.id)[1]
    assert second.reply_to_message_id == follow_up["message_id"]
    assert spark_messages(bot.spark.requests[1]) == [
        {"role": "user", "content": "[[answer:Dune.]] best novel?"},
        {"role": "assistant", "content": "Dune."},
        {"role": "user", "content": "[[answer:Frank Herbert.]] who wrote it?"},
    ]
    assert bot.fake.withheld_updates == []


async def test_ask_command_with_and_without_the_bot_name(make_bot: BotFactory) -> None:
    bot = await make_bot()
    group = bot.driver.group("Quiz")
    user = bot.driver.user()
    await bot.driver.send_command(group, user, "/ask@spark_test_bot [[answer:Paris.]] capital?")
    await _answered(bot, group, 1)
    # Once the bot has written in the group, a bare /ask reaches it too.
    await bot.driver.send_command(group, user, "/ask [[answer:Rome.]] and Italy?")
    await _answered(bot, group, 2)
    await bot.driver.send_command(group, user, "/ask@spark_test_bot")
    hint = "Write your question after the command, e.g. /ask What is a black hole?"
    await bot.fake.wait_for(lambda: hint in bot.fake.visible_texts(group.id))

    assert bot.questions() == ["[[answer:Paris.]] capital?", "[[answer:Rome.]] and Italy?"]
    assert bot.fake.visible_texts(group.id) == ["Paris.", "Rome.", hint]
    assert bot.fake.violations == []


async def test_messages_not_for_the_bot_get_silence(make_bot: BotFactory) -> None:
    bot = await make_bot()
    bot.fake.privacy_mode = False  # the bot sees everything, so silence is its own choice
    group = bot.driver.group("Chatter")
    ann, bob = bot.driver.user(first_name="Ann"), bot.driver.user(first_name="Bob")
    hello = await bot.driver.send_text(group, ann, "hello everyone, what is a tide?")
    await bot.driver.send_text(group, bob, "good question", reply_to=hello["message_id"])
    await bot.driver.send_text(group, bob, "@other_helper_bot what is a tide?")
    await bot.driver.send_command(group, bob, "/ask@other_helper_bot what is a tide?")
    await bot.driver.send_command(group, bob, "/start@other_helper_bot")
    # Updates of one chat are handled in order: once this one is answered, the rest were seen.
    await bot.driver.send_mention(group, ann, "@spark_test_bot [[answer:Sea level.]] tide?")
    await _answered(bot, group, 1)

    assert bot.questions() == ["[[answer:Sea level.]] tide?"]
    assert len(bot.fake.calls_to("sendMessage", chat_id=group.id)) == 1
    assert bot.fake.visible_texts(group.id) == ["Sea level."]
    assert len(bot.fake.calls_to("sendChatAction", chat_id=group.id)) <= 1


async def test_typing_shows_while_spark_is_slow_to_start(make_bot: BotFactory) -> None:
    bot = await make_bot()
    group = bot.driver.group("Patience")
    user = bot.driver.user()
    # Spark keeps real time: silent for 4 s of the bot's clock.
    await bot.driver.send_command(
        group,
        user,
        f"/ask@spark_test_bot [[slow-first:{4 / TIME_FACTOR}]] [[answer:Done.]] think hard",
    )
    await _answered(bot, group, 1)
    (typing, *_) = bot.fake.calls_to("sendChatAction", chat_id=group.id)
    (sent,) = bot.fake.calls_to("sendMessage", chat_id=group.id)
    assert typing.params["action"] == "typing"
    assert sent.at - typing.at >= 1.5  # typing was on screen while Spark was silent
    assert "typing" in bot.fake.chat_actions(group.id)


async def test_each_forum_topic_is_its_own_conversation(make_bot: BotFactory) -> None:
    bot = await make_bot()
    forum = bot.driver.group("Lab", forum=True)
    bot.fake.set_bot_admin(forum.id)  # an admin bot receives plain mentions
    user = bot.driver.user()
    chemistry = await bot.driver.create_topic(forum, user, "Chemistry")
    biology = await bot.driver.create_topic(forum, user, "Biology")

    await bot.driver.send_mention(
        forum, user, "@spark_test_bot [[answer:H2O.]] water formula?", thread_id=chemistry
    )
    await _answered(bot, forum, 1, chemistry)
    await bot.driver.send_mention(
        forum, user, "@spark_test_bot [[answer:Cells.]] life is made of?", thread_id=biology
    )
    await _answered(bot, forum, 2, biology)
    await bot.driver.send_mention(
        forum, user, "@spark_test_bot [[answer:NaCl.]] and salt?", thread_id=chemistry
    )
    await _answered(bot, forum, 3, chemistry)

    assert bot.fake.visible_texts(forum.id, chemistry) == ["H2O.", "NaCl."]
    assert bot.fake.visible_texts(forum.id, biology) == ["Cells."]
    assert all(m.message_thread_id is not None for m in bot.fake.visible_messages(forum.id))
    first, other_topic, again = bot.spark.requests
    assert spark_messages(other_topic) == [
        {"role": "user", "content": "[[answer:Cells.]] life is made of?"}
    ]
    assert spark_messages(again) == [
        {"role": "user", "content": "[[answer:H2O.]] water formula?"},
        {"role": "assistant", "content": "H2O."},
        {"role": "user", "content": "[[answer:NaCl.]] and salt?"},
    ]
    uids = [spark_uid(record) for record in (first, other_topic, again)]
    assert uids[0] == uids[2] != uids[1]
    assert all(0 < len(uid) <= 32 and str(forum.id) not in uid for uid in uids)
    assert bot.fake.violations == []


async def test_user_scope_keeps_group_members_histories_apart(make_bot: BotFactory) -> None:
    bot = await make_bot(telegram={"group_history_scope": "user"})
    group = bot.driver.group("Study group")
    ann, bob = bot.driver.user(first_name="Ann"), bot.driver.user(first_name="Bob")
    await bot.driver.send_command(group, ann, "/ask@spark_test_bot [[answer:Hi Ann.]] I am Ann")
    await _answered(bot, group, 1)
    await bot.driver.send_command(group, bob, "/ask@spark_test_bot [[answer:Hi Bob.]] I am Bob")
    await _answered(bot, group, 2)
    await bot.driver.send_command(group, ann, "/ask@spark_test_bot [[answer:Ann.]] who am I?")
    await _answered(bot, group, 3)

    _, bobs, anns = (spark_messages(record) for record in bot.spark.requests)
    assert bobs == [{"role": "user", "content": "[[answer:Hi Bob.]] I am Bob"}]
    assert anns == [
        {"role": "user", "content": "[[answer:Hi Ann.]] I am Ann"},
        {"role": "assistant", "content": "Hi Ann."},
        {"role": "user", "content": "[[answer:Ann.]] who am I?"},
    ]
    stored = await bot.stored(group.id)
    assert {m.user_id for m in stored if m.role == "user"} == {ann.id, bob.id}


async def test_user_scope_members_are_answered_at_once_each_with_their_own_uid(
    make_bot: BotFactory,
) -> None:
    # Spark answers one question per uid at a time (10007 otherwise), and members'
    # conversations run in parallel: each member's conversation needs a uid of its own.
    bot = await make_bot(telegram={"group_history_scope": "user"})
    group = bot.driver.group("Study group", id=-1001234567890)
    ann, bob = bot.driver.user(first_name="Ann"), bot.driver.user(first_name="Bob")
    await bot.driver.send_command(group, ann, "/ask@spark_test_bot [[slow-first:1]] [[answer:A.]]")
    await bot.driver.send_command(group, bob, "/ask@spark_test_bot [[slow-first:1]] [[answer:B.]]")
    stored = await bot.wait_stored(group.id, 2)

    assert sorted(m.content for m in stored if m.role == "assistant") == ["A.", "B."]
    assert {m.status for m in stored if m.role == "assistant"} == {"complete"}
    assert [r.error_code for r in bot.spark.requests] == [None, None]
    uids = {spark_uid(record) for record in bot.spark.requests}
    assert len(uids) == 2
    for uid in uids:
        assert re.fullmatch(r"[0-9a-f]{32}", uid)
        assert str(ann.id) not in uid
        assert str(bob.id) not in uid
        assert str(abs(group.id)) not in uid
    # Stable: Ann's next question goes out with the same uid.
    (first_ann_uid,) = [
        spark_uid(r) for r in bot.spark.requests if "[[answer:A.]]" in str(spark_messages(r))
    ]
    await bot.driver.send_command(group, ann, "/ask@spark_test_bot [[answer:Again.]] again")
    await bot.wait_stored(group.id, 3)
    assert spark_uid(bot.spark.requests[2]) == first_ann_uid


async def test_long_group_answer_is_split_into_replies_never_truncated(
    make_bot: BotFactory,
) -> None:
    paragraph = "Waves carry energy across the ocean without carrying the water along. " * 10
    # Two parts, so the test spends two group floors (6 s), not three.
    text = "\n\n".join(f"{n}. {paragraph.strip()}" for n in range(1, 10))
    assert 4096 < len(text) < 8000
    bot = await make_bot(
        simulator_options=SimulatorOptions(frame_interval=0.01, chars_per_frame=80)
    )
    group = bot.driver.group("Long reads")
    user = bot.driver.user()
    asked = await bot.driver.send_command(group, user, f"/ask@spark_test_bot [[answer:{text}]]")
    stored = await bot.wait_stored(group.id, 1, timeout=20)
    assert stored[-1].content == text
    await bot.fake.wait_for(lambda: "\n\n".join(bot.fake.visible_texts(group.id)) == text, 20)

    shown = bot.fake.visible_messages(group.id)
    assert len(shown) == 2
    assert all(len((m.text or "").encode("utf-16-le")) // 2 <= 4096 for m in shown)
    # The second part replies to the first; the first to the question.
    assert [m.reply_to_message_id for m in shown] == [asked["message_id"], shown[0].message_id]
    assert stored[-1].telegram_message_ids == tuple(m.message_id for m in shown)
    assert bot.fake.violations == []
