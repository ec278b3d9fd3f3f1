"""``GET /healthz`` for every front end: 200 ``ok`` while the database (and Redis, where the
processes share state through it) can be used, else 503 with one line per part that cannot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.shared_state import SharedState
from storage.database import Database

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def problems(database: Database, shared: SharedState | None) -> list[str]:
    """What cannot be used now, one line each."""
    found: list[str] = []
    problem = await database.health()
    if problem is not None:
        found.append(f"database unavailable: {problem}")
    if shared is not None:
        problem = await shared.health()
        if problem is not None:
            found.append(f"redis unavailable: {problem}")
    return found


def healthz(database: Database, shared: SharedState | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        found = await problems(database, shared)
        if found:
            return web.Response(status=503, text="\n".join(found))
        return web.Response(text="ok")

    return handler
