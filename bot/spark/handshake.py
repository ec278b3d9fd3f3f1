"""A Spark WebSocket opened ahead of its request.

Opening the socket (TCP, the HTTP upgrade of a freshly signed URL) takes a round trip or two;
a front end that knows which model it will ask can have it done while it still writes the
answer's row and reads the history (:meth:`~bot.spark.client.SparkClient.open_ahead`), then
hand the :class:`Handshake` to :meth:`~bot.spark.client.SparkClient.stream`, which sends its
request on that socket. Nothing is sent on it before then, so nothing is asked of Spark until
the caller has stored what it must.

Whoever holds a handshake closes it (:meth:`Handshake.aclose`) unless ``stream`` took its
socket: closing is idempotent and does nothing once the socket is taken.
"""

from __future__ import annotations

import asyncio

import aiohttp


class Handshake:
    """The opening of one WebSocket to ``url``, under way or done; see the module docstring."""

    def __init__(self, url: str, opening: asyncio.Task[aiohttp.ClientWebSocketResponse]) -> None:
        self.url = url
        self._opening = opening
        self._taken = False
        # Retrieved here so that a failure nobody waits for (the caller gave up first) is not
        # reported as "never retrieved"; a caller that waits gets it raised.
        opening.add_done_callback(_retrieve)

    async def socket(self) -> aiohttp.ClientWebSocketResponse:
        """The open socket, now the caller's to close; the opening's error if it failed
        (the client's own: :class:`~bot.spark.errors.SparkError` and its kinds)."""
        if self._taken:
            raise RuntimeError("this handshake's socket was taken already")
        self._taken = True
        return await self._opening

    async def aclose(self) -> None:
        """Give the socket up unused: stop the opening, or close what it opened."""
        if self._taken:
            return
        self._taken = True
        opening = self._opening
        if not opening.done():
            opening.cancel()
        await asyncio.wait([opening])  # its own failure stays in it; the caller's cancel does not
        if not opening.cancelled() and opening.exception() is None:
            await opening.result().close(code=aiohttp.WSCloseCode.OK)


def _retrieve(task: asyncio.Task[aiohttp.ClientWebSocketResponse]) -> None:
    if not task.cancelled():
        task.exception()
