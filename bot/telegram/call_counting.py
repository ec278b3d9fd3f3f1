"""Bot API calls as they leave: each call's method and HTTP status, told to an observer.

The HTTP API's ``/metrics`` counts them (calls and 429s by method) when the bot serves it; the
request itself is the bot's :class:`~bot.telegram.bot_api_request.AiohttpRequest`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.telegram.bot_api_request import AiohttpRequest

CallObserver = Callable[[str, int], None]


class CountingRequest(AiohttpRequest):
    """:class:`AiohttpRequest` that tells ``observe(method, status)`` after every call."""

    def __init__(self, observe: CallObserver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observe = observe

    async def do_request(
        self, url: str, method: str, *args: Any, **kwargs: Any
    ) -> tuple[int, bytes]:
        status, payload = await super().do_request(url, method, *args, **kwargs)
        # The URL ends in the method's name; the token before it never leaves this function.
        self._observe(url.rsplit("/", 1)[-1], status)
        return status, payload
