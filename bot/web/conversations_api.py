"""The conversation API: a key's own conversations and their answers, streamed over SSE.

``POST /v1/conversations`` (model, system prompt), ``GET /v1/conversations`` (newest first,
``?limit=&before=``), ``GET``/``DELETE /v1/conversations/{id}``, ``POST …/{id}/reset``,
``POST …/{id}/stop`` and ``POST …/{id}/messages``: with ``Accept: text/event-stream`` the
answer streams as named events (:mod:`bot.web.conversation_events`), otherwise the whole
answer comes as JSON once stored. A request that carries ``Last-Event-ID`` resumes the
answer that id belongs to instead of asking again; ``GET …/{id}/events`` does the same for
``EventSource``, and without the header follows the answer being written (204 when none).
Another key's conversation is a 404, like one that never existed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.config import Settings
from bot.service.answer_feed import AnswerFeed, AnswerStored
from bot.service.clock import SYSTEM_CLOCK, Clock
from bot.service.completions import ApiCaller
from bot.service.events import Failed
from bot.service.web_conversations import (
    ConversationNotFound,
    ConversationView,
    StoredAnswer,
    UnknownModel,
    WebConversations,
)
from bot.web.conversation_events import (
    EventId,
    error_body,
    parse_event_id,
    stored_events,
    usage_body,
)
from bot.web.errors import ApiError, api_error
from bot.web.keys import Unauthorized, authenticate
from bot.web.sse import end_stream, open_stream, stream_feed, write_events
from storage.database import Database
from storage.dto import StoredMessage

log = logging.getLogger(__name__)

ROUTE = "/v1/conversations"
MAX_QUESTION_CHARS = 32_000
MAX_BODY_BYTES = 256 * 1024
PAGE_LIMIT = 100


def message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "status": message.status.value,
        "reply_to": message.reply_to_id,
        "model": message.model,
        "error_code": message.error_code,
        "created_at": message.created_at.isoformat(),
    }


def conversation_json(view: ConversationView, *, messages: bool = False) -> dict[str, Any]:
    info = view.info
    body: dict[str, Any] = {
        "id": info.number,
        "object": "conversation",
        "title": info.title,
        "model": view.model,
        "system_prompt": view.system_prompt,
        "created_at": info.created_at.isoformat(),
        "answering": view.answering,
    }
    if messages:
        body["messages"] = [message_json(message) for message in view.messages]
    return body


def not_found() -> ApiError:
    return ApiError(404, "No such conversation.", code="conversation_not_found")


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_request")


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers())


Route = Callable[[web.Request, ApiCaller], Awaitable[web.StreamResponse]]


class ConversationApi:
    """The routes over :class:`~bot.service.web_conversations.WebConversations`."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        conversations: WebConversations,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._db = database
        self._web = conversations
        self._keepalive = settings.http_api.keepalive_seconds
        self._clock = clock

    def mount(self, app: web.Application, wrap: Callable[[str, Any], Any]) -> None:
        routes = [
            ("POST", ROUTE, self.create),
            ("GET", ROUTE, self.page),
            ("GET", ROUTE + "/{id}", self.get),
            ("DELETE", ROUTE + "/{id}", self.delete),
            ("POST", ROUTE + "/{id}/reset", self.reset),
            ("POST", ROUTE + "/{id}/stop", self.stop),
            ("POST", ROUTE + "/{id}/messages", self.ask),
            ("GET", ROUTE + "/{id}/events", self.events),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, wrap(path, self._guarded(handler)))

    def _guarded(self, handler: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            caller: ApiCaller | None = None
            try:
                caller = await authenticate(self._db, request)
                return await handler(request, caller)
            except (Unauthorized, _Invalid) as exc:
                return error_response(exc.error)
            except ConversationNotFound:
                return error_response(not_found())
            except UnknownModel as exc:
                return error_response(
                    ApiError(404, str(exc), param="model", code="model_not_found")
                )
            except Exception as exc:
                error = api_error(exc)
                if error.status == 500:
                    raise
                name = caller.key_name if caller is not None else "?"
                level = logging.WARNING if error.status >= 500 else logging.INFO
                log.log(
                    level, "api key %s: refused %d %s: %s", name, error.status, error.code, exc
                )
                return error_response(error)

        return guarded

    # -- conversations -----------------------------------------------------------------------

    async def create(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        body = await _json(request)
        model = body.get("model")
        prompt = body.get("system_prompt")
        if model is not None and not isinstance(model, str):
            raise _Invalid("`model` must be a string.", "model")
        if prompt is not None and not isinstance(prompt, str):
            raise _Invalid("`system_prompt` must be a string.", "system_prompt")
        view = await self._web.create(caller, model=model, system_prompt=prompt)
        return web.json_response(conversation_json(view, messages=True), status=201)

    async def page(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        limit = _int_param(request, "limit", 20, 1, PAGE_LIMIT)
        before = _int_param(request, "before", None, 1, None)
        views = await self._web.page(caller, before=before, limit=limit + 1)
        more = len(views) > limit
        views = views[:limit]
        return web.json_response(
            {
                "object": "list",
                "data": [conversation_json(view) for view in views],
                "has_more": more,
                "next_before": views[-1].info.number if more else None,
            }
        )

    async def get(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        view = await self._web.get(caller, _number(request))
        return web.json_response(conversation_json(view, messages=True))

    async def delete(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        await self._web.delete(caller, _number(request))
        return web.Response(status=204)

    async def reset(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        view = await self._web.reset(caller, _number(request))
        return web.json_response(conversation_json(view, messages=True))

    async def stop(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        stopped = await self._web.stop(caller, _number(request))
        return web.json_response({"stopped": stopped})

    # -- answers -----------------------------------------------------------------------------

    async def ask(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        number = _number(request)
        resume = parse_event_id(request.headers.get("Last-Event-ID"))
        if resume is not None:
            return await self._resume(request, caller, number, resume)
        body = await _json(request)
        text = body.get("text", body.get("content"))
        if not isinstance(text, str) or not text.strip():
            raise _Invalid("`text` must be a non-empty string.", "text")
        if len(text) > MAX_QUESTION_CHARS:
            raise _Invalid(f"`text` is over {MAX_QUESTION_CHARS} characters.", "text")
        feed = await self._web.ask(caller, number, text.strip())
        if not _wants_events(request):
            async for _ in feed.follow(0):
                pass
            return await self._answer_json(caller, number, feed)
        response = await open_stream(request)
        await stream_feed(
            request, response, feed, after=0, keepalive=self._keepalive, clock=self._clock
        )
        await end_stream(response)
        return response

    async def events(self, request: web.Request, caller: ApiCaller) -> web.StreamResponse:
        number = _number(request)
        resume = parse_event_id(request.headers.get("Last-Event-ID"))
        if resume is not None:
            return await self._resume(request, caller, number, resume)
        feed = await self._web.following(caller, number)
        if feed is None:
            return web.Response(status=204)  # EventSource stops reconnecting on 204
        response = await open_stream(request)
        await stream_feed(
            request, response, feed, after=0, keepalive=self._keepalive, clock=self._clock
        )
        await end_stream(response)
        return response

    async def _resume(
        self, request: web.Request, caller: ApiCaller, number: int, since: EventId
    ) -> web.StreamResponse:
        found = await self._web.resume(caller, number, since.question_id)
        response = await open_stream(request)
        if isinstance(found, StoredAnswer):
            await write_events(
                response, stored_events(since.question_id, found.message, since.offset)
            )
        else:
            await stream_feed(
                request,
                response,
                found,
                after=since.seq,
                keepalive=self._keepalive,
                clock=self._clock,
            )
        await end_stream(response)
        return response

    async def _answer_json(
        self, caller: ApiCaller, number: int, feed: AnswerFeed
    ) -> web.StreamResponse:
        """The stored answer, with the ending's note, usage and error when there was one."""
        found = await self._web.resume(caller, number, feed.question_id)
        message = found.message if isinstance(found, StoredAnswer) else None
        body: dict[str, Any] = {
            "question_id": feed.question_id,
            "message": message_json(message) if message is not None else None,
            "usage": None,
            "note": feed.note(),
            "error": None,
        }
        for entry in feed.after(0):
            if isinstance(entry.item, AnswerStored):
                body["usage"] = usage_body(entry.item.usage)
            elif isinstance(entry.item, Failed):
                body["error"] = error_body(entry.item)
        return web.json_response(body)


class _Invalid(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.error = bad_request(message, param)


def _wants_events(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def _number(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise ConversationNotFound(raw)
    return int(raw)


def _int_param(
    request: web.Request, name: str, default: int | None, least: int, most: int | None
) -> Any:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise _Invalid(f"`{name}` must be a whole number.", name)
    value = int(raw)
    if value < least or (most is not None and value > most):
        raise _Invalid(f"`{name}` must be between {least} and {most}.", name)
    return value


async def _json(request: web.Request) -> dict[str, Any]:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise _Invalid(f"The request body is over {MAX_BODY_BYTES} bytes.")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise _Invalid(f"The request body is over {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _Invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _Invalid("The request body must be a JSON object.")
    return body
