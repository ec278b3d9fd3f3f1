"""``GET /v1/ws``: conversations over one WebSocket.

Browsers cannot set headers on a WebSocket, and a key in the URL would land in access logs,
so the client offers the subprotocol ``spark-chat.v1`` and beside it either ``key.<API key>``
or ``ticket.<ticket>`` (from ``POST /v1/ws/tickets`` with the key as a Bearer header; used
once, valid for 30 s). The server answers with ``spark-chat.v1`` only, never echoing the
credential. A socket without valid credentials is closed with code 4401.

Client → server: ``{"type": "ask", "conversation": N, "text": …}``, ``{"type": "cancel",
"conversation": N}``, ``{"type": "resume", "conversation": N, "last_event_id": …}``,
``{"type": "ping"}``. Server → client: ``accepted`` (the question's id), then ``delta`` /
``reasoning`` / ``sources`` / ``error`` / ``done`` with the same bodies as the SSE events plus
``conversation``, ``question_id`` and the event ``id``; ``pong``; ``error`` for a refused
message. Several questions may be asked in turn or at once (one answer at a time per
conversation: a later one waits). WebSocket pings keep the connection and find dead peers;
when the socket goes, its answers lose their reader and are cut short after the resume grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bot.errors import ConversationError
from bot.service.answer_feed import AnswerFeed
from bot.service.completions import ApiCaller
from bot.service.web_conversations import ConversationNotFound, StoredAnswer, WebConversations
from bot.web.conversation_events import EventId, entry_event, parse_event_id, stored_events
from bot.web.errors import api_error
from bot.web.keys import Unauthorized, authenticate, authenticate_key
from bot.web.tickets import Tickets
from storage.database import Database

log = logging.getLogger(__name__)

WS_ROUTE = "/v1/ws"
TICKETS_ROUTE = "/v1/ws/tickets"
SUBPROTOCOL = "spark-chat.v1"
UNAUTHORIZED_CLOSE = 4401
HEARTBEAT_SECONDS = 20.0
MAX_MESSAGE_BYTES = 256 * 1024


def _offered(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [part.strip() for part in header.split(",") if part.strip()]


class WebSocketApi:
    def __init__(
        self,
        *,
        database: Database,
        conversations: WebConversations,
        tickets: Tickets,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self._db = database
        self._web = conversations
        self._tickets = tickets
        self._heartbeat = heartbeat

    def mount(self, app: web.Application, wrap: Any) -> None:
        app.router.add_get(WS_ROUTE, wrap(WS_ROUTE, self.socket))
        app.router.add_post(TICKETS_ROUTE, wrap(TICKETS_ROUTE, self.ticket))

    async def ticket(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = await authenticate(self._db, request)
        except Unauthorized as exc:
            return web.json_response(exc.error.body(), status=401)
        return web.json_response(
            {"ticket": self._tickets.issue(caller), "expires_in": self._tickets.lifetime}
        )

    async def _caller(self, request: web.Request) -> ApiCaller | None:
        for offered in _offered(request):
            if offered.startswith("ticket."):
                return self._tickets.redeem(offered.removeprefix("ticket."))
            if offered.startswith("key."):
                with contextlib.suppress(Unauthorized):
                    return await authenticate_key(self._db, offered.removeprefix("key."))
                return None
        return None

    async def socket(self, request: web.Request) -> web.StreamResponse:
        caller = await self._caller(request)
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,), heartbeat=self._heartbeat, max_msg_size=MAX_MESSAGE_BYTES
        )
        await ws.prepare(request)
        if caller is None:
            await ws.close(code=UNAUTHORIZED_CLOSE, message=b"unauthorized")
            return ws
        session = _Session(ws, caller, self._web)
        try:
            await session.run()
        finally:
            await session.close()
        return ws


class _Session:
    """One socket: its messages read in order, its answers followed by tasks it owns."""

    def __init__(
        self, ws: web.WebSocketResponse, caller: ApiCaller, conversations: WebConversations
    ) -> None:
        self._ws = ws
        self._caller = caller
        self._web = conversations
        self._send_lock = asyncio.Lock()
        self._followers: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async for message in self._ws:
            if message.type is not WSMsgType.TEXT:
                if message.type is WSMsgType.ERROR:
                    return
                continue
            try:
                body = json.loads(message.data)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                await self._send(
                    {"type": "error", "code": "invalid_message", "message": "Send JSON objects."}
                )
                continue
            await self._handle(body)

    async def _handle(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        number = body.get("conversation")
        if kind == "ping":
            await self._send({"type": "pong"})
            return
        if kind not in ("ask", "cancel", "resume"):
            await self._send(
                {"type": "error", "code": "invalid_message", "message": f"Unknown type {kind!r}."}
            )
            return
        if not isinstance(number, int) or isinstance(number, bool):
            await self._send(
                {
                    "type": "error",
                    "code": "invalid_message",
                    "message": "`conversation` must be a number.",
                }
            )
            return
        try:
            if kind == "cancel":
                stopped = await self._web.stop(self._caller, number)
                await self._send({"type": "cancelled", "conversation": number, "stopped": stopped})
            elif kind == "ask":
                text = body.get("text")
                if not isinstance(text, str) or not text.strip():
                    await self._send(
                        {
                            "type": "error",
                            "conversation": number,
                            "code": "invalid_message",
                            "message": "`text` must be a non-empty string.",
                        }
                    )
                    return
                feed = await self._web.ask(self._caller, number, text.strip())
                await self._send(
                    {"type": "accepted", "conversation": number, "question_id": feed.question_id}
                )
                self._follow(number, feed, 0)
            else:
                await self._resume(number, parse_event_id(str(body.get("last_event_id") or "")))
        except ConversationNotFound:
            await self._send(
                {
                    "type": "error",
                    "conversation": number,
                    "code": "conversation_not_found",
                    "message": "No such conversation.",
                }
            )
        except ConversationError as exc:
            error = api_error(exc)
            await self._send(
                {
                    "type": "error",
                    "conversation": number,
                    "code": error.code,
                    "message": error.message,
                    "retry_after": error.retry_after,
                }
            )

    async def _resume(self, number: int, since: EventId | None) -> None:
        if since is None:
            await self._send(
                {
                    "type": "error",
                    "conversation": number,
                    "code": "invalid_message",
                    "message": "`last_event_id` is not an id this server sent.",
                }
            )
            return
        found = await self._web.resume(self._caller, number, since.question_id)
        if isinstance(found, StoredAnswer):
            for event_id, name, body in stored_events(
                since.question_id, found.message, since.offset
            ):
                await self._send(self._event(number, since.question_id, event_id, name, body))
        else:
            self._follow(number, found, since.seq)

    def _follow(self, number: int, feed: AnswerFeed, after: int) -> None:
        task = asyncio.create_task(self._relay(number, feed, after), name="ws-follow")
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)

    async def _relay(self, number: int, feed: AnswerFeed, after: int) -> None:
        question = feed.question_id
        async for entry in feed.follow(after):
            event = entry_event(question, entry)
            if event is None:
                continue
            name, body = event
            event_id = EventId(question, entry.seq, entry.offset)
            if not await self._send(self._event(number, question, event_id, name, body)):
                return

    @staticmethod
    def _event(
        number: int, question: int, event_id: EventId, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "type": name,
            "conversation": number,
            "question_id": question,
            "id": str(event_id),
            **body,
        }

    async def _send(self, body: dict[str, Any]) -> bool:
        if self._ws.closed:
            return False
        try:
            async with self._send_lock:
                await self._ws.send_str(json.dumps(body, ensure_ascii=False))
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def close(self) -> None:
        for task in list(self._followers):
            task.cancel()
        for task in list(self._followers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self._ws.closed:
            await self._ws.close(code=WSCloseCode.OK)
