"""FloodControl's budgets on a clock moved by hand: per chat, per group minute, global second,
429 deadlines, and forgetting chats that went quiet."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.telegram.flood import FloodControl, FloodPolicy, retry_after_seconds
from tests.support.clocks import ManualClock

PRIVATE, GROUP, OTHER_GROUP = 1, -100, -200


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def flood(clock: ManualClock) -> FloodControl:
    return FloodControl(clock=clock)


def test_a_new_chat_may_send_at_once(flood: FloodControl) -> None:
    assert flood.delay(PRIVATE, is_group=False) == 0.0
    assert flood.delay(GROUP, is_group=True) == 0.0


def test_a_private_chat_waits_its_interval_after_a_send(
    flood: FloodControl, clock: ManualClock
) -> None:
    flood.record_send(PRIVATE, is_group=False)
    assert flood.delay(PRIVATE, is_group=False) == pytest.approx(1.0)
    clock.advance(0.4)
    assert flood.delay(PRIVATE, is_group=False) == pytest.approx(0.6)
    clock.advance(0.6)
    assert flood.delay(PRIVATE, is_group=False) == 0.0


def test_a_preview_leaves_the_next_slot_to_a_message_waiting_for_it(
    flood: FloodControl, clock: ManualClock
) -> None:
    flood.record_send(PRIVATE, is_group=False)
    with flood.waiting(PRIVATE):
        assert flood.delay(PRIVATE, is_group=False) == pytest.approx(1.0)
        assert flood.delay(PRIVATE, is_group=False, disposable=True) == pytest.approx(2.0)
        clock.advance(1.0)
        # The waiting one's turn: a preview still waits for the slot after it.
        assert flood.delay(PRIVATE, is_group=False) == 0.0
        assert flood.delay(PRIVATE, is_group=False, disposable=True) == pytest.approx(1.0)
        assert flood.delay(GROUP, is_group=True, disposable=True) == 0.0  # other chats go on
    assert flood.delay(PRIVATE, is_group=False, disposable=True) == 0.0


def test_a_group_waits_the_longer_group_interval(flood: FloodControl, clock: ManualClock) -> None:
    flood.record_send(GROUP, is_group=True)
    assert flood.delay(GROUP, is_group=True) == pytest.approx(3.0)
    clock.advance(3.0)
    assert flood.delay(GROUP, is_group=True) == 0.0


def test_chats_have_separate_floors(flood: FloodControl) -> None:
    flood.record_send(PRIVATE, is_group=False)
    assert flood.delay(PRIVATE + 1, is_group=False) == 0.0


def test_a_group_has_twenty_messages_a_minute(clock: ManualClock) -> None:
    flood = FloodControl(FloodPolicy(group_interval=0.0), clock=clock)
    first_sent = clock()
    for _ in range(20):
        assert flood.delay(GROUP, is_group=True) == 0.0
        flood.record_send(GROUP, is_group=True)
        clock.advance(1.0)
    # The 21st waits until the first of the minute's twenty leaves the window.
    assert flood.delay(GROUP, is_group=True) == pytest.approx(first_sent + 60.0 - clock())
    assert flood.delay(OTHER_GROUP, is_group=True) == 0.0
    clock.advance(flood.delay(GROUP, is_group=True))
    assert flood.delay(GROUP, is_group=True) == 0.0


def test_the_whole_bot_has_a_per_second_budget(flood: FloodControl, clock: ManualClock) -> None:
    for chat_id in range(28):
        assert flood.delay(chat_id, is_group=False) == 0.0
        flood.record_send(chat_id, is_group=False)
    assert flood.delay(1000, is_group=False) == pytest.approx(1.0)
    clock.advance(0.5)
    assert flood.delay(1000, is_group=False) == pytest.approx(0.5)
    clock.advance(0.5)
    assert flood.delay(1000, is_group=False) == 0.0


def test_a_429_holds_the_chat_until_its_deadline(flood: FloodControl, clock: ManualClock) -> None:
    deadline = flood.record_retry_after(PRIVATE, 25)
    assert deadline == pytest.approx(clock() + 25.0)
    assert flood.deadline(PRIVATE) == deadline
    assert flood.delay(PRIVATE, is_group=False) == pytest.approx(25.0)
    assert flood.delay(PRIVATE + 1, is_group=False) == 0.0
    clock.advance(25.0)
    assert flood.delay(PRIVATE, is_group=False) == 0.0


def test_a_shorter_429_never_shortens_a_longer_deadline(
    flood: FloodControl, clock: ManualClock
) -> None:
    long_deadline = flood.record_retry_after(PRIVATE, timedelta(seconds=30))
    assert flood.record_retry_after(PRIVATE, 2) == long_deadline


def test_retry_after_accepts_seconds_and_timedeltas() -> None:
    assert retry_after_seconds(3) == 3.0
    assert retry_after_seconds(1.5) == 1.5
    assert retry_after_seconds(timedelta(milliseconds=2500)) == 2.5


def test_quiet_chats_are_forgotten_and_a_pending_429_is_kept(clock: ManualClock) -> None:
    flood = FloodControl(FloodPolicy(sweep_every=float("inf")), clock=clock)
    flood.record_send(PRIVATE, is_group=False)
    flood.record_retry_after(GROUP, 7200)
    clock.advance(3601.0)
    flood.record_send(OTHER_GROUP, is_group=True)
    assert flood.forget_idle() == 1
    assert flood.tracked_chats() == 2
    assert flood.delay(GROUP, is_group=True) > 0.0  # the 429 deadline outlived the sweep


def test_sending_sweeps_idle_chats_by_itself(clock: ManualClock) -> None:
    """A long-running bot's table holds the recent chats only, without anyone calling a sweep."""
    flood = FloodControl(FloodPolicy(idle_after=60.0, sweep_every=10.0), clock=clock)
    for chat_id in range(1000):
        flood.record_send(chat_id, is_group=False)
    assert flood.tracked_chats() == 1000
    clock.advance(61.0)
    flood.record_send(5000, is_group=False)
    assert flood.tracked_chats() == 1
    # A forgotten chat starts afresh, as a new one would.
    assert flood.delay(3, is_group=False) == 0.0
