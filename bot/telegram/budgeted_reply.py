"""Short replies (command answers, queue notes, apologies) inside Telegram's send budgets.

A reply asks the send scheduler (:mod:`bot.telegram.send_scheduler`) for a slot at the
``REPLY`` priority, after first texts and final answers, before intermediate texts. A 429 is
recorded and waited out (the scheduler holds the chat until its deadline); a network failure is
tried again. A reply gives up only when the chat is held by a 429 longer than ``max_wait``, and
says so in the log: replies are awaited in update order, so a longer wait would hold up the
chat's next update (a /stop, say).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Message
from telegram.constants import ChatType, ParseMode
from telegram.error import NetworkError, RetryAfter, TelegramError

from bot.telegram.send_scheduler import Priority, SendScheduler

log = logging.getLogger(__name__)

REPLY_MAX_WAIT = 10.0
NETWORK_ATTEMPTS = 3
NETWORK_RETRY_DELAY = 1.0


async def send_budgeted(
    scheduler: SendScheduler,
    chat_id: int,
    send: Callable[[], Awaitable[object]],
    *,
    is_group: bool,
    max_wait: float = REPLY_MAX_WAIT,
) -> bool:
    """Send one reply when the scheduler gives it a slot; True when Telegram took it."""
    sleep = scheduler.clock.sleep
    give_up_at = scheduler.now() + max_wait
    failures = 0
    while True:
        held = scheduler.held_until(chat_id) - scheduler.now()
        if scheduler.now() + held > give_up_at:
            log.warning(
                "chat %s: reply not sent: the chat's send budget is held for %.1f s more",
                chat_id,
                held,
            )
            return False
        await scheduler.slot(chat_id, is_group=is_group, priority=Priority.REPLY)
        try:
            try:
                await send()
            finally:
                scheduler.release()
            return True
        except RetryAfter as exc:
            scheduler.retry_after(chat_id, "message", exc.retry_after)
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


async def reply_budgeted(
    scheduler: SendScheduler, message: Message, body: str, *, html: bool = False
) -> bool:
    """``body`` in reply to ``message`` (quoted in groups, where several talk at once) inside
    the chat's budget; True when Telegram took it."""
    chat = message.chat
    is_group = chat.type != ChatType.PRIVATE
    return await send_budgeted(
        scheduler,
        chat.id,
        lambda: message.reply_text(
            body, parse_mode=ParseMode.HTML if html else None, do_quote=is_group
        ),
        is_group=is_group,
    )
