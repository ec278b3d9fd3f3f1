"""Short replies (command answers, queue notes, apologies) inside Telegram's send budgets.

A reply asks :class:`~bot.telegram.flood.FloodControl` for its turn like an answer does, and asks
again after every wait: a streaming answer may have taken the slot meanwhile, and a reply sent on a
stale answer meets a 429. A 429 is recorded and waited out; a network failure is tried again. A
reply gives up only when the chat is held longer than ``max_wait``, and says so in the log. Waits
are on the flood control's clock, the one its budgets are counted in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram.error import NetworkError, RetryAfter, TelegramError

from bot.telegram.flood import FloodControl

log = logging.getLogger(__name__)

# How long a reply may wait for the chat's budget: replies are awaited in update order, so a
# longer wait would hold up the chat's next update (a /stop, say).
REPLY_MAX_WAIT = 10.0
NETWORK_ATTEMPTS = 3
NETWORK_RETRY_DELAY = 1.0


async def send_budgeted(
    flood: FloodControl,
    chat_id: int,
    send: Callable[[], Awaitable[object]],
    *,
    is_group: bool,
    max_wait: float = REPLY_MAX_WAIT,
) -> bool:
    """Send one reply when the chat's budget allows; True when Telegram took it."""
    sleep = flood.clock.sleep
    give_up_at = flood.now() + max_wait
    failures = 0
    while True:
        delay = flood.delay(chat_id, is_group=is_group)
        if delay > 0:
            if flood.now() + delay > give_up_at:
                log.warning(
                    "chat %s: reply not sent: the chat's send budget is held for %.1f s more",
                    chat_id,
                    delay,
                )
                return False
            with flood.waiting(chat_id):  # previews leave this reply the next slot
                await sleep(delay)
            continue  # ask again: another reply may have used the slot meanwhile
        flood.record_send(chat_id, is_group=is_group)
        try:
            await send()
            return True
        except RetryAfter as exc:
            flood.record_retry_after(chat_id, exc.retry_after)
            log.info("chat %s: reply met Telegram's flood control; waiting", chat_id)
        except NetworkError as exc:
            failures += 1
            if failures >= NETWORK_ATTEMPTS:
                log.warning("chat %s: reply not sent: %s", chat_id, exc)
                return False
            await sleep(NETWORK_RETRY_DELAY * failures)
        except TelegramError as exc:
            log.warning("chat %s: reply not sent: %s", chat_id, exc)
            return False
