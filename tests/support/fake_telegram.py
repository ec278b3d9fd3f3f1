"""A Bot API server fake on 127.0.0.1 that python-telegram-bot reaches through `base_url`.

`FakeTelegram` owns the HTTP side (routing by token and method, decoding form, multipart,
query and JSON parameters like Telegram, long polling, file downloads), the record of every
call, scripted faults, and the queries tests use to see what users see. Method semantics live
in fake_telegram_messages / fake_telegram_bot_methods, flood control in fake_telegram_limits,
the stored world in fake_telegram_state; the user side is tests/support/telegram_driver.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from tests.support.clocks import ManualClock
from tests.support.fake_telegram_bot_methods import BOT_METHODS, commands_key
from tests.support.fake_telegram_call import ApiCall, Handler
from tests.support.fake_telegram_errors import BotApiError, FaultScript, JsonDict
from tests.support.fake_telegram_http import decode_params
from tests.support.fake_telegram_limits import (
    Clock,
    FloodControl,
    FloodKind,
    FloodLimits,
    FloodViolation,
)
from tests.support.fake_telegram_messages import MESSAGE_METHODS
from tests.support.fake_telegram_state import (
    ChatState,
    DraftFrame,
    FakeState,
    RecordedCall,
    StoredDocument,
    StoredMessage,
    UploadedFile,
)

__all__ = [
    "DEFAULT_TOKEN",
    "DRAFT_TTL",
    "BotApiError",
    "DraftFrame",
    "FakeTelegram",
    "FloodLimits",
    "FloodViolation",
    "ManualClock",
    "RecordedCall",
    "StoredDocument",
    "StoredMessage",
    "UploadedFile",
]

DEFAULT_TOKEN = "123456:TEST-fake-token-for-tests-only-000000"
DRAFT_TTL = 30.0
MAX_UPLOAD = 50 * 1024 * 1024
HANDLERS: dict[str, Handler] = {**MESSAGE_METHODS, **BOT_METHODS}
# Telegram's method names are case-insensitive.
_CANONICAL = {name.lower(): name for name in [*HANDLERS, "getUpdates"]}
FLOOD_KINDS: dict[str, FloodKind] = {
    "sendMessage": "message",
    "editMessageText": "message",
    "editMessageReplyMarkup": "message",
    "sendDocument": "message",
    "sendMessageDraft": "draft",
}
T = TypeVar("T")


def _same(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    # chat_id=123 should match a chat_id sent as "123"
    kinds = (int, str)
    return (
        isinstance(actual, kinds) and isinstance(expected, kinds) and str(actual) == str(expected)
    )


class FakeTelegram:
    """A Telegram Bot API server for one bot, with what its users see kept for assertions."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "spark_test_bot",
        *,
        limits: FloodLimits | None = None,
        clock: Clock = time.monotonic,
        privacy_mode: bool = True,
        drafts_supported: bool = True,
        bot_first_name: str = "Spark Test Bot",
    ) -> None:
        self.token = token
        self.clock = clock
        self.privacy_mode = privacy_mode
        self.drafts_supported = drafts_supported
        bot_user = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": not privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.state = FakeState(bot_user)
        self.flood = FloodControl(limits or FloodLimits(), clock)
        self.calls: list[RecordedCall] = []
        self._faults = FaultScript()
        self._runner: web.AppRunner | None = None
        self._root_url: str | None = None
        self._changed: asyncio.Event | None = None
        self._closing = False
        self._poll_generation = 0
        self.polls_waiting = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        # The access log would print request paths, and they contain the bot token.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._root_url = f"http://127.0.0.1:{port}"
        self._changed = asyncio.Event()

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        if self._root_url is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._root_url

    @property
    def base_url(self) -> str:
        """What to pass as ptb's base_url."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.root_url}/file/bot"

    @property
    def bot_id(self) -> int:
        return self.state.bot_id

    @property
    def bot_username(self) -> str:
        return str(self.state.bot_user["username"])

    # -- what the bot did and what users see --------------------------------------------

    def calls_to(self, method: str, /, **match: Any) -> list[RecordedCall]:
        return [
            call
            for call in self.calls
            if call.method == method
            and all(_same(call.params.get(key), value) for key, value in match.items())
        ]

    @property
    def violations(self) -> list[FloodViolation]:
        return self.flood.violations

    @property
    def withheld_updates(self) -> list[JsonDict]:
        """Updates Telegram would not deliver to this bot (group privacy mode)."""
        return self.state.withheld_updates

    def chat(self, chat_id: int) -> ChatState:
        chat = self.state.chats.get(chat_id)
        if chat is None:
            raise KeyError(f"no chat {chat_id} in the fake; create it with the driver first")
        return chat

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """Every message of the chat, users' and the bot's, deleted ones included."""
        return list(self.chat(chat_id).messages.values())

    def message(self, chat_id: int, message_id: int) -> StoredMessage:
        return self.chat(chat_id).messages[message_id]

    def visible_messages(self, chat_id: int, thread_id: int | None = None) -> list[StoredMessage]:
        """The bot's messages as users see them now: edits applied, deleted ones gone."""
        return [
            m
            for m in self.chat(chat_id).messages.values()
            if m.from_bot
            and not m.deleted
            and (thread_id is None or m.message_thread_id == thread_id)
        ]

    def visible_texts(self, chat_id: int, thread_id: int | None = None) -> list[str]:
        return [m.text or m.caption or "" for m in self.visible_messages(chat_id, thread_id)]

    def drafts(self, chat_id: int) -> list[DraftFrame]:
        return list(self.chat(chat_id).drafts)

    def draft_history(self, chat_id: int) -> list[str]:
        return [frame.text for frame in self.chat(chat_id).drafts]

    def current_draft(self, chat_id: int) -> str | None:
        """The draft preview on screen: gone after ~30 s or once the bot sends a message."""
        chat = self.chat(chat_id)
        if not chat.drafts:
            return None
        frame = chat.drafts[-1]
        sent = chat.last_bot_send_at
        if (sent is not None and sent >= frame.at) or self.clock() - frame.at > DRAFT_TTL:
            return None
        return frame.text

    def documents(self, chat_id: int) -> list[StoredDocument]:
        return list(self.chat(chat_id).documents)

    def chat_actions(self, chat_id: int) -> list[str]:
        return list(self.chat(chat_id).actions)

    def commands(self, scope: JsonDict | None = None, language_code: str = "") -> list[JsonDict]:
        return list(self.state.commands.get(commands_key(scope, language_code), []))

    def callback_answer(self, query_id: str) -> JsonDict | None:
        return self.state.callback_answers.get(query_id)

    # -- scripted faults and user actions ------------------------------------------------

    def fail_next(
        self, method: str, error: BotApiError, *, times: int = 1, chat_id: int | None = None
    ) -> None:
        """Answer the next `times` calls of `method` (to `chat_id`, if given) with `error`."""
        self._faults.add(method, error, times=times, chat_id=chat_id)

    def block_user(self, chat_id: int) -> None:
        self.chat(chat_id).blocked = True

    def unblock_user(self, chat_id: int) -> None:
        self.chat(chat_id).blocked = False

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A user deleted the message: later edits answer "message to edit not found"."""
        self.message(chat_id, message_id).deleted = True
        self._notify()

    def set_bot_admin(self, chat_id: int, admin: bool = True) -> None:
        """An admin bot receives every group message even with privacy mode on."""
        self.chat(chat_id).bot_admin = admin

    def push_update(self, kind: str, payload: JsonDict) -> JsonDict:
        """Queue an update for getUpdates, unless Telegram would withhold it from this bot."""
        update_id = self.state.next_update_id()
        update = {"update_id": update_id, kind: payload}
        self.state.sent_updates[update_id] = update
        if kind in ("message", "edited_message") and not self.state.delivered(
            payload, privacy_mode=self.privacy_mode
        ):
            self.state.withheld_updates.append(update)
        else:
            self.state.updates.append(update)
        self._notify()
        return update

    def delivered_at(self, update_id: int) -> float | None:
        """When getUpdates first handed update ``update_id`` to the bot (on the fake's clock)."""
        return self.state.delivered_at.get(update_id)

    def redeliver(self, update_id: int) -> JsonDict:
        """Deliver update `update_id` once more, with the next getUpdates whatever its offset,
        as Telegram does when it never learnt that the bot got it."""
        update = self.state.sent_updates.get(update_id)
        if update is None:
            raise KeyError(f"no update {update_id} was ever queued")
        self.state.redeliveries.append(dict(update))
        self._notify()
        return update

    # -- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def _changed_within(self, seconds: float) -> None:
        if self._changed is None or seconds <= 0:
            return
        event = self._changed
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 5.0,  # noqa: ASYNC109 - a plain argument reads better in tests
    ) -> T:
        """Wait until predicate() is truthy and return its value; raise TimeoutError if not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = [f"{c.method}:{c.status}" for c in self.calls[-10:]]
                raise TimeoutError(f"condition not met within {timeout} s; last calls {recent}")
            # also poll: the predicate may look at things the fake does not announce
            await self._changed_within(min(remaining, 0.05))

    async def wait_for_call(
        self,
        method: str,
        /,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - as in wait_for
        count: int = 1,
        **match: Any,
    ) -> RecordedCall:
        """Wait for the `count`-th recorded call of `method` whose params match."""

        def found() -> RecordedCall | None:
            calls = self.calls_to(method, **match)
            return calls[count - 1] if len(calls) >= count else None

        return await self.wait_for(found, timeout)

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        at = self.clock()
        raw_method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._answer(RecordedCall(raw_method, {}, at), BotApiError.unauthorized())
        method = _CANONICAL.get(raw_method.lower())
        try:
            params = await decode_params(request)
        except BotApiError as error:
            return self._answer(RecordedCall(method or raw_method, {}, at), error)
        call = RecordedCall(method or raw_method, params, at)
        try:
            if method is None or (method == "sendMessageDraft" and not self.drafts_supported):
                raise BotApiError.not_found()
            if method == "getUpdates":
                result = await self._get_updates(params)
            else:
                result = self._serve(method, params, at)
        except BotApiError as error:
            return self._answer(call, error)
        call.result = result
        return self._answer(call, None)

    def _answer(self, call: RecordedCall, error: BotApiError | None) -> web.Response:
        if error is not None:
            call.status, call.error = error.error_code, error.description
            body = error.to_json()
        else:
            body = {"ok": True, "result": call.result}
        self.calls.append(call)
        self._notify()
        return web.json_response(body, status=call.status)

    def _serve(self, method: str, params: JsonDict, at: float) -> Any:
        chat: ChatState | None = None
        if params.get("chat_id") not in (None, ""):
            try:
                chat = self.state.chat(params["chat_id"])
            except BotApiError:
                chat = None
        kind = FLOOD_KINDS.get(method)
        fault = self._faults.take(method, chat.id if chat is not None else None)
        if fault is not None:
            if fault.retry_after is not None and chat is not None:
                self.flood.announce(chat.id, kind or "message", fault.retry_after)
            raise fault
        if chat is not None:
            if chat.blocked:
                raise BotApiError.blocked_by_user()
            if chat.bot_left:
                raise BotApiError.forbidden(f"bot is not a member of the {chat.type} chat")
            if kind is not None:
                self.flood.check_deadline(method, chat.id, kind)
        return HANDLERS[method](ApiCall(method, params, self.state, self.flood, at))

    async def _get_updates(self, params: JsonDict) -> list[JsonDict]:
        if self.state.webhook.get("url"):
            raise BotApiError.conflict(
                "can't use getUpdates method while webhook is active; use deleteWebhook to "
                "delete the webhook first"
            )
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0.0), 50.0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self.state.allowed_updates = [str(kind) for kind in allowed] or None
        self.state.confirm_updates(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.polls_waiting += 1
        try:
            while True:
                if self._closing:
                    return []
                if generation != self._poll_generation:
                    raise BotApiError.conflict(
                        "terminated by other getUpdates request; make sure that only one bot "
                        "instance is running"
                    )
                pending = self.state.updates_to_deliver(max(offset, 0), limit)
                if pending or loop.time() >= deadline:
                    handed_out = self.clock()
                    for update in pending:
                        self.state.delivered_at.setdefault(int(update["update_id"]), handed_out)
                    return pending
                await self._changed_within(deadline - loop.time())
        finally:
            self.polls_waiting -= 1

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(BotApiError.unauthorized().to_json(), status=401)
        record = self.state.file_by_path(request.match_info["path"])
        if record is None:
            return web.json_response(BotApiError.not_found().to_json(), status=404)
        return web.Response(body=record.data, content_type=record.mime_type)
