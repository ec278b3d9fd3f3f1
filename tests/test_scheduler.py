"""The send scheduler on a clock moved by hand: budgets per chat, per group minute and global
second, 429 deadlines and what a 429 teaches, priorities, and giving a place up; the budgets
as settings."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.telegram.app import send_budgets
from bot.telegram.send_budgets import MemoryBudgetStore, SendBudgets, retry_after_seconds
from bot.telegram.send_scheduler import Priority, SendScheduler
from tests.support.clocks import ManualClock

PRIVATE = 101
GROUP = -501


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _scheduler(clock: ManualClock, **budgets: object) -> SendScheduler:
    """A scheduler whose calls are never answered: room enough in flight unless told."""
    budgets.setdefault("max_in_flight", 1_000_000)
    return SendScheduler(SendBudgets(**budgets), clock)  # type: ignore[arg-type]


async def _settle() -> None:
    await asyncio.sleep(0)


async def test_a_new_chat_sends_at_once_then_waits_its_interval(clock: ManualClock) -> None:
    scheduler = _scheduler(clock)
    first = scheduler.ask(PRIVATE, is_group=False)
    assert first.done()
    second = scheduler.ask(PRIVATE, is_group=False)
    other_chat = scheduler.ask(PRIVATE + 1, is_group=False)
    assert not second.done()
    assert other_chat.done()  # chats have separate budgets
    clock.advance(0.9)
    assert not second.done()
    clock.advance(0.1)
    assert second.done()


async def test_a_group_waits_three_seconds_and_has_twenty_a_minute(clock: ManualClock) -> None:
    scheduler = _scheduler(clock)
    assert scheduler.ask(GROUP, is_group=True).done()
    later = scheduler.ask(GROUP, is_group=True)
    clock.advance(2.9)
    assert not later.done()
    clock.advance(0.1)
    assert later.done()

    fast = ManualClock()
    minute = _scheduler(fast, group_interval=0.001)
    for _ in range(20):
        assert minute.ask(GROUP, is_group=True).done()
        fast.advance(0.01)
    twenty_first = minute.ask(GROUP, is_group=True)
    fast.advance(59.7)
    assert not twenty_first.done()
    fast.advance(0.2)
    assert twenty_first.done()


async def test_the_whole_bot_has_its_global_second(clock: ManualClock) -> None:
    scheduler = _scheduler(clock, global_per_second=28)
    for chat_id in range(28):
        assert scheduler.ask(chat_id, is_group=False).done()
    late = scheduler.ask(1000, is_group=False)
    clock.advance(0.99)
    assert not late.done()
    clock.advance(0.01)
    assert late.done()


async def test_a_paid_broadcast_budget_is_a_setting(clock: ManualClock) -> None:
    scheduler = _scheduler(clock, global_per_second=100)
    assert all(scheduler.ask(chat_id, is_group=False).done() for chat_id in range(100))
    assert not scheduler.ask(1000, is_group=False).done()


async def test_drafts_and_chat_actions_count_globally_only_when_configured(
    clock: ManualClock,
) -> None:
    outside = _scheduler(clock, global_per_second=1)
    assert outside.ask(1, is_group=False).done()  # the global second is used up
    assert outside.ask(2, is_group=False, kind="draft").done()
    assert outside.ask(3, is_group=False, kind="action").done()
    assert not outside.ask(4, is_group=False).done()

    inside = _scheduler(
        ManualClock(), global_per_second=1, drafts_count_global=True, actions_count_global=True
    )
    assert inside.ask(1, is_group=False).done()
    assert not inside.ask(2, is_group=False, kind="draft").done()
    assert not inside.ask(3, is_group=False, kind="action").done()


async def test_drafts_have_their_own_interval_and_the_first_its_own_budget(
    clock: ManualClock,
) -> None:
    scheduler = _scheduler(clock, draft_interval=1.0)
    thinking = scheduler.ask(PRIVATE, is_group=False, kind="draft", priority=Priority.FIRST)
    first_text = scheduler.ask(PRIVATE, is_group=False, kind="draft", priority=Priority.REFRESH)
    message = scheduler.ask(PRIVATE, is_group=False)  # drafts do not use the message budget
    assert thinking.done()
    assert first_text.done()
    assert message.done()
    next_text = scheduler.ask(PRIVATE, is_group=False, kind="draft", priority=Priority.REFRESH)
    clock.advance(0.99)
    assert not next_text.done()
    clock.advance(0.01)
    assert next_text.done()


async def test_who_goes_next_when_the_global_budget_frees(clock: ManualClock) -> None:
    scheduler = _scheduler(clock, global_per_second=1)
    assert scheduler.ask(0, is_group=False).done()
    granted: list[str] = []
    asks = {
        "refresh stale": scheduler.ask(1, is_group=False, priority=Priority.REFRESH, order=5.0),
        "refresh fresh": scheduler.ask(2, is_group=False, priority=Priority.REFRESH, order=9.0),
        "reply": scheduler.ask(3, is_group=False, priority=Priority.REPLY),
        "final of the later finish": scheduler.ask(
            4, is_group=False, priority=Priority.FINAL, order=7.0
        ),
        "keepalive": scheduler.ask(5, is_group=False, priority=Priority.KEEPALIVE),
        "final of the earlier finish": scheduler.ask(
            6, is_group=False, priority=Priority.FINAL, order=3.0
        ),
        "first feedback": scheduler.ask(7, is_group=False, priority=Priority.FIRST),
    }
    for name, future in asks.items():
        future.add_done_callback(lambda _, name=name: granted.append(name))  # type: ignore[misc]
    for _ in asks:
        clock.advance(1.0)
        await _settle()
    assert granted == [
        "first feedback",
        "final of the earlier finish",
        "final of the later finish",
        "reply",
        "keepalive",
        "refresh stale",
        "refresh fresh",
    ]


async def test_refreshes_leave_room_for_an_urgent_call_held_by_its_chat(
    clock: ManualClock,
) -> None:
    scheduler = _scheduler(clock, global_per_second=4)
    assert scheduler.ask(PRIVATE, is_group=False).done()
    final = scheduler.ask(PRIVATE, is_group=False, priority=Priority.FINAL)
    assert not final.done()  # the chat's own second
    refreshes = [
        scheduler.ask(chat_id, is_group=False, priority=Priority.REFRESH) for chat_id in range(4)
    ]
    # Four a second, one used: one is kept for the final, so two refreshes go now.
    assert [r.done() for r in refreshes] == [True, True, False, False]
    clock.advance(1.0)
    assert final.done()


async def test_a_429_holds_the_chat_until_its_deadline(clock: ManualClock) -> None:
    scheduler = _scheduler(clock)
    assert scheduler.ask(PRIVATE, is_group=False).done()
    deadline = scheduler.retry_after(PRIVATE, "message", 25)
    assert deadline == pytest.approx(clock() + 25)
    assert scheduler.held_until(PRIVATE) == deadline
    held = scheduler.ask(PRIVATE, is_group=False, priority=Priority.FINAL)
    assert scheduler.ask(PRIVATE + 1, is_group=False).done()  # other chats go on
    clock.advance(24.9)
    assert not held.done()
    clock.advance(0.1)
    assert held.done()
    assert retry_after_seconds(timedelta(seconds=3)) == 3.0


async def test_a_429_on_a_kind_lowers_its_budget_for_a_while(clock: ManualClock) -> None:
    scheduler = _scheduler(clock, draft_interval=1.0, learn_seconds=600.0)

    def gap() -> float:
        """How long the next draft waits after one just sent, in another chat."""
        chat_id = int(clock() * 1000)
        assert scheduler.ask(chat_id, is_group=False, kind="draft").done()
        waiting = scheduler.ask(chat_id, is_group=False, kind="draft")
        start = clock()
        while not waiting.done():
            clock.advance(0.125)
        return clock() - start

    assert gap() == pytest.approx(1.0)
    scheduler.retry_after(1, "draft", 1)  # Telegram's draft limit is lower than ours
    assert gap() == pytest.approx(2.0)
    scheduler.retry_after(1, "draft", 1)
    assert gap() == pytest.approx(4.0)
    for _ in range(3):
        scheduler.retry_after(1, "draft", 1)
    assert gap() == pytest.approx(8.0)  # never below an eighth of the configured rate
    assert gap() == pytest.approx(8.0)
    assert scheduler.ask(9999, is_group=False).done()  # messages keep their own budget
    clock.advance(600.0)  # the learning period passes without a 429
    assert gap() == pytest.approx(1.0)


async def test_calls_in_flight_are_bounded_and_the_urgent_go_first(clock: ManualClock) -> None:
    scheduler = _scheduler(clock, max_in_flight=2)
    assert scheduler.ask(1, is_group=False).done()
    assert scheduler.ask(2, is_group=False, kind="draft").done()
    refresh = scheduler.ask(3, is_group=False, kind="draft", priority=Priority.REFRESH)
    final = scheduler.ask(4, is_group=False, priority=Priority.FINAL)
    clock.advance(5.0)  # budgets allow both; the connections do not
    assert not refresh.done()
    assert not final.done()
    scheduler.release()  # one call answered
    assert final.done()
    assert not refresh.done()
    scheduler.release()
    assert refresh.done()


async def test_a_cancelled_ask_gives_its_place_up(clock: ManualClock) -> None:
    scheduler = _scheduler(clock, global_per_second=1)
    assert scheduler.ask(0, is_group=False).done()
    gone = scheduler.ask(1, is_group=False, priority=Priority.FINAL)
    kept = scheduler.ask(2, is_group=False, priority=Priority.REFRESH)
    gone.cancel()
    clock.advance(1.0)
    assert kept.done()
    assert scheduler.waiting() == 0


async def test_slot_wakes_the_waiting_task_when_the_budget_allows(clock: ManualClock) -> None:
    scheduler = _scheduler(clock)
    await scheduler.slot(PRIVATE, is_group=False)
    waiter = asyncio.create_task(scheduler.slot(PRIVATE, is_group=False))
    await _settle()
    assert not waiter.done()
    clock.advance(1.0)
    await _settle()
    await _settle()
    assert waiter.done()
    waiter.result()


async def test_budgets_of_quiet_chats_are_forgotten(clock: ManualClock) -> None:
    store = MemoryBudgetStore()
    budgets = SendBudgets(
        global_per_second=100, idle_after=3600.0, sweep_every=300.0, max_in_flight=1000
    )
    scheduler = SendScheduler(budgets, clock, store)
    for chat_id in range(50):
        assert scheduler.ask(chat_id, is_group=False).done()
    assert store.tracked() == 51  # fifty chats and the global second
    scheduler.retry_after(7, "message", 7200)  # a chat under a long 429 is kept
    clock.advance(3601.0)
    assert scheduler.ask(PRIVATE, is_group=False).done()  # a send sweeps now and then
    assert store.tracked() == 3  # chat 7, this chat, and the global second
    assert store.held_until((7, "message")) > clock()


def test_the_budgets_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = send_budgets(load_settings(None).telegram)
    assert defaults == SendBudgets()  # Telegram's published figures, a little under
    for name, value in {
        "SEND_GLOBAL_PER_SECOND": "100",
        "SEND_DRAFTS_COUNT_GLOBAL": "true",
        "SEND_ACTIONS_COUNT_GLOBAL": "1",
        "SEND_DRAFT_INTERVAL": "0.5",
        "SEND_GROUP_PER_MINUTE": "19",
        "SEND_LEARN_SECONDS": "60",
    }.items():
        monkeypatch.setenv(name, value)
    budgets = send_budgets(load_settings(None).telegram)
    assert (budgets.global_per_second, budgets.draft_interval, budgets.group_per_minute) == (
        100,
        0.5,
        19,
    )
    assert budgets.drafts_count_global
    assert budgets.actions_count_global
    assert budgets.learn_seconds == 60.0
    monkeypatch.setenv("SEND_GLOBAL_PER_SECOND", "0")
    monkeypatch.setenv("SEND_PRIVATE_INTERVAL", "-1")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert "SEND_GLOBAL_PER_SECOND" in str(caught.value)
    assert "SEND_PRIVATE_INTERVAL" in str(caught.value)
