"""Three ``python -m bot`` processes serving one bot through PostgreSQL and Redis, updates
posted round-robin to their webhooks as a load balancer would, the Bot API fake holding them to
Telegram's limits: each chat's answers in order and one Spark request per question, ``/stop``
and the quota across processes, a process killed mid-answer taken over by another, and a
rolling restart that interrupts nothing. Needs TEST_DATABASE_URL and TEST_REDIS_URL."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Protocol

import pytest
from redis.asyncio import Redis

from bot.spark.simulator import SimulatorOptions
from storage.dto import StoredMessage
from tests.support.bot_harness import ProcessFactory, stored_answers
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_errors import JsonDict
from tests.support.replicas import BotReplicas
from tests.support.spark_fixtures import SimulatorFactory
from tests.support.telegram_driver import TelegramDriver
from tests.support.telegram_fixtures import FakeFactory

# About 8 s of writing for a [[long:5000]] answer: still streaming whenever the test acts.
PACE = SimulatorOptions(frame_interval=0.02, chars_per_frame=12)
INTERRUPTED = "⏹ Interrupted: the bot was restarting. Send /retry to continue."
STOPPED = "⏹ Stopped."
LEASE_SECONDS = 2.0


def _update(fake: FakeTelegram, message: JsonDict) -> JsonDict:
    """The update that carried ``message``: what Telegram posts to the webhook."""
    for update in fake.state.sent_updates.values():
        if update.get("message") == message:
            return dict(update)
    raise KeyError(message.get("message_id"))


async def _settled(database_url: str, chat_id: int, count: int) -> list[StoredMessage]:
    """The chat's answers once ``count`` of them are stored with a final status (the message
    on screen comes a moment before its row)."""
    async with asyncio.timeout(10):
        while True:
            answers = await stored_answers(database_url, chat_id)
            if len([m for m in answers if m.status != "streaming"]) >= count:
                return answers
            await asyncio.sleep(0.1)


def _answers_shown(fake: FakeTelegram, chat_id: int) -> list[str]:
    """What the chat shows, without the "queued" notes."""
    return [t for t in fake.visible_texts(chat_id) if not t.startswith("⏳")]


async def _shown(fake: FakeTelegram, chat_id: int, expected: list[str]) -> None:
    """Wait until the chat shows ``expected`` (the "queued" notes aside)."""
    await fake.wait_for(lambda: _answers_shown(fake, chat_id) == expected or None, timeout=30)


class ReplicaFactory(Protocol):
    async def __call__(self, **settings: str) -> BotReplicas: ...


@pytest.fixture
async def start_replicas(
    make_fake_telegram: FakeFactory,
    make_spark_simulator: SimulatorFactory,
    bot_process: ProcessFactory,
    postgres_url: str,
    redis: Redis,
    redis_prefix: str,
) -> AsyncIterator[ReplicaFactory]:
    """Starts three replicas with ``settings`` (environment variables) added."""
    started: list[BotReplicas] = []

    async def start(**settings: str) -> BotReplicas:
        fake = await make_fake_telegram()
        simulator = await make_spark_simulator(options=PACE)
        group = BotReplicas(
            bot_process,
            fake,
            simulator,
            count=3,
            database_url=postgres_url,
            redis_url=os.environ["TEST_REDIS_URL"],
            redis_prefix=redis_prefix,
            extra={"REDIS_LEASE_SECONDS": str(LEASE_SECONDS), **settings},
        )
        group.extra.update(simulator=simulator, database_url=postgres_url)
        started.append(group)
        await group.start()
        return group

    try:
        yield start
    finally:
        for group in started:
            await group.close()


async def test_three_processes_answer_each_chat_in_order_once_within_telegrams_limits(
    start_replicas: ReplicaFactory,
) -> None:
    replicas = await start_replicas()
    fake = replicas.fake
    driver = TelegramDriver(fake)
    users = [driver.user() for _ in range(3)]
    chats = [driver.private_chat(user) for user in users]
    group_chat = driver.group("Team", supergroup=True)
    for round_ in range(1, 4):  # a chat's three questions land on three different processes
        for number, (chat, user) in enumerate(zip(chats, users, strict=True)):
            text = f"[[answer:Chat {number} answer {round_}.]] question {round_}"
            await replicas.deliver(_update(fake, await driver.send_text(chat, user, text)))
        mention = f"@spark_test_bot [[answer:Group answer {round_}.]] question {round_}"
        sent = await driver.send_text(group_chat, users[round_ - 1], mention)
        delivered = await replicas.deliver(_update(fake, sent))
        # Telegram delivers an update again when the answer to its post was lost: the
        # copy lands on another process, which skips it.
        await replicas.deliver(_update(fake, sent), to=(delivered + 1) % 3)

    for number, chat in enumerate(chats):
        await _shown(fake, chat.id, [f"Chat {number} answer {n}." for n in (1, 2, 3)])
    await _shown(fake, group_chat.id, [f"Group answer {n}." for n in (1, 2, 3)])
    simulator = replicas.extra["simulator"]
    asked = sorted(str(record.question) for record in simulator.requests)
    assert len(asked) == 12  # one Spark request per question
    assert len(set(asked)) == 12
    database_url = replicas.extra["database_url"]
    for number, chat in enumerate(chats):
        stored = await _settled(database_url, chat.id, 3)
        assert [(m.status, m.content) for m in stored] == [
            ("complete", f"Chat {number} answer {n}.") for n in (1, 2, 3)
        ]
    assert [call for call in fake.calls if call.status == 429] == []
    assert fake.violations == []
    answered_by = {
        index
        for index, process in enumerate(replicas.processes)
        if "answer complete" in process.stderr
    }
    assert answered_by == {0, 1, 2}


async def test_stop_and_quota_reach_across_processes(start_replicas: ReplicaFactory) -> None:
    replicas = await start_replicas(DAILY_TOKEN_QUOTA="1000")
    fake = replicas.fake
    driver = TelegramDriver(fake)
    user = driver.user()
    chat = driver.private_chat(user)
    long_question = await driver.send_text(chat, user, "[[long:5000]] tell me everything")
    await replicas.deliver(_update(fake, long_question), to=0)
    await fake.wait_for(lambda: len(max(fake.draft_history(chat.id), default="")) > 60)

    # While it streams on one process, the user's quota is held for it on every other one.
    again = await driver.send_text(chat, user, "[[answer:Too soon.]] and another")
    await replicas.deliver(_update(fake, again), to=1)
    refused = await fake.wait_for(
        lambda: [t for t in fake.visible_texts(chat.id) if "daily quota" in t] or None
    )
    (refusal,) = refused
    assert refusal.startswith("You've used your daily quota of 1000 tokens. It resets at ")

    stop = await driver.send_command(chat, user, "/stop")
    await replicas.deliver(_update(fake, stop), to=2)
    (shown,) = await fake.wait_for(
        lambda: [t for t in fake.visible_texts(chat.id) if t.endswith(STOPPED)] or None
    )
    database_url = replicas.extra["database_url"]
    first, second = await _settled(database_url, chat.id, 2)
    assert first.status == "cancelled"
    assert shown.startswith(first.content.strip()[:60])
    assert 60 < len(first.content) < 5000
    assert (second.status, second.content) == ("failed", "")  # refused, stored unanswered
    assert "stopped from another process" in replicas.processes[0].stderr
    assert len(replicas.extra["simulator"].requests) == 1


async def test_a_process_killed_mid_answer_is_taken_over_and_a_rolling_restart_loses_nothing(
    start_replicas: ReplicaFactory,
) -> None:
    replicas = await start_replicas()
    fake = replicas.fake
    database_url = replicas.extra["database_url"]
    driver = TelegramDriver(fake)
    user = driver.user()
    chat = driver.private_chat(user)
    cut = await driver.send_text(chat, user, "[[long:5000]] tell me everything")
    await replicas.deliver(_update(fake, cut), to=0)
    streamed: list[StoredMessage] = []
    async with asyncio.timeout(15):  # a checkpoint of the partial text, every 3 s
        while not (streamed and streamed[0].content):
            await asyncio.sleep(0.2)
            streamed = await stored_answers(database_url, chat.id)
    after = await driver.send_text(chat, user, "[[answer:Next, from another process.]] next")
    await replicas.deliver(_update(fake, after), to=1)  # waits its turn behind the first
    await fake.wait_for(lambda: any(t.startswith("⏳") for t in fake.visible_texts(chat.id)))

    replicas.processes[0].signal(signal.SIGKILL)
    assert await replicas.processes[0].wait(timeout=5) == -signal.SIGKILL
    expected_end = ["Next, from another process."]
    shown = await fake.wait_for(
        lambda: texts if (texts := _answers_shown(fake, chat.id))[-1:] == expected_end else None,
        timeout=4 * LEASE_SECONDS + 10,
    )
    interrupted, _answered = shown
    assert interrupted.endswith(INTERRUPTED)
    first, second = await _settled(database_url, chat.id, 2)
    assert (first.status, first.usable) == ("partial", False)
    assert first.content.startswith(streamed[0].content)
    assert interrupted.startswith(first.content.strip()[:60])
    assert (second.status, second.content) == ("complete", "Next, from another process.")
    assert len(replicas.extra["simulator"].requests) == 2  # the cut answer was not asked again
    assert "is gone; its started question is taken over" in replicas.processes[1].stderr

    # A rolling restart: SIGTERM to one process while it answers; the answer fits the grace.
    await replicas.restart(0)
    short = await driver.send_text(chat, user, "[[answer:Finished within the grace.]] short")
    await replicas.deliver(_update(fake, short), to=2)
    replicas.processes[2].signal(signal.SIGTERM)
    assert await replicas.processes[2].wait(timeout=10) == 0
    await fake.wait_for(
        lambda: _answers_shown(fake, chat.id)[-1:] == ["Finished within the grace."] or None
    )
    final = await driver.send_text(chat, user, "[[answer:Still here.]] still there?")
    await replicas.deliver(_update(fake, final), to=0)
    await fake.wait_for(lambda: _answers_shown(fake, chat.id)[-1:] == ["Still here."] or None)
    stored = await _settled(database_url, chat.id, 4)
    assert [m.status for m in stored] == ["partial", "complete", "complete", "complete"]
    assert [call for call in fake.calls if call.status == 429] == []


async def test_the_drafts_stop_button_reaches_its_answer_on_another_process_and_only_it(
    start_replicas: ReplicaFactory,
) -> None:
    replicas = await start_replicas()
    fake = replicas.fake
    driver = TelegramDriver(fake)
    user = driver.user()
    chat = driver.private_chat(user)
    first = await driver.send_text(chat, user, "[[long:5000]] tell me everything")
    await replicas.deliver(_update(fake, first), to=0)
    await fake.wait_for(lambda: len(max(fake.draft_history(chat.id), default="")) > 60)
    pressed = await driver.stop_generation(chat)
    await replicas.deliver(pressed, to=1)  # the process that took the press streams nothing
    await fake.wait_for(lambda: any(t.endswith(STOPPED) for t in fake.visible_texts(chat.id)))
    assert "stopped from another process" in replicas.processes[0].stderr

    # The same draft's button pressed again, late, while the chat's next answer streams:
    # that answer is not the pressed draft's, and goes on to its end.
    second = await driver.send_text(chat, user, "[[long:3000]] and the short version?")
    await replicas.deliver(_update(fake, second), to=0)
    simulator = replicas.extra["simulator"]
    await fake.wait_for(lambda: len(simulator.requests) == 2)
    late = fake.push_update("stopped_message_generation", pressed["stopped_message_generation"])
    await replicas.deliver(late, to=2)
    database_url = replicas.extra["database_url"]
    stopped, finished = await _settled(database_url, chat.id, 2)
    assert stopped.status == "cancelled"
    assert finished.status == "complete"
    assert len(finished.content) == 3000
