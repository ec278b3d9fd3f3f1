"""The chat page: ``/`` and its static files (HTML, CSS, JavaScript, no build step).

The page talks to the conversation API with the key the user typed (kept in the browser's
localStorage). In demo mode (``python -m bot web --simulate``) ``/web/config.json`` hands
the demo key to pages opened from this machine, so they need none; the demo key works from
loopback only.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    # Nothing but our own files: no inline script, no third-party origin, no framing.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_loopback(request: web.Request) -> bool:
    remote = request.remote
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


class ChatPage:
    def __init__(self, *, demo_key: str | None = None) -> None:
        self._demo_key = demo_key

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/web/config.json", self.config)
        app.router.add_static("/static/", STATIC, append_version=False)

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def config(self, request: web.Request) -> web.StreamResponse:
        demo = self._demo_key is not None and is_loopback(request)
        return web.json_response(
            {"demo": demo, "key": self._demo_key if demo else None},
            headers={"Cache-Control": "no-store"},
        )
