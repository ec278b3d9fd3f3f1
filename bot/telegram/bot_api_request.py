"""Bot API requests over aiohttp, for python-telegram-bot (its :class:`BaseRequest` seam).

ptb's default transport, httpx, spends most of the bot's CPU under load: for every request its
connection pool walks every connection and every queued request, asking each socket whether it
is readable (measured in benchmarks/RESULTS.md, "Telegram under load"). aiohttp's connector
hands a free connection over in constant time, and the Spark client uses aiohttp already.
Parameters go as one JSON body, files (and the fields beside them) as multipart.

Timeouts mean what they mean for ptb: ``read`` per socket read, ``write`` for sending a body
(media get longer), ``connect`` to connect, ``pool`` to wait for a free connection. A timeout
is ptb's :class:`~telegram.error.TimedOut`, any other transport failure its
:class:`~telegram.error.NetworkError`, as with httpx, so callers see no difference.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

DEFAULT_TIMEOUT = 5.0
MEDIA_WRITE_TIMEOUT = 20.0
_JSON = {"Content-Type": "application/json"}


def _seconds(value: Any, default: float | None) -> float | None:
    """A ptb timeout argument: a number, None (no limit) or DEFAULT_NONE (use ours)."""
    if value is BaseRequest.DEFAULT_NONE:
        return default
    return None if value is None else float(value)


class AiohttpRequest(BaseRequest):
    """One aiohttp session with up to ``connection_limit`` connections to the Bot API."""

    def __init__(
        self,
        connection_limit: int = 64,
        *,
        read_timeout: float | None = DEFAULT_TIMEOUT,
        write_timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_TIMEOUT,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._limit = connection_limit
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data is not None else None
        body: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] | None = None
        if files:
            assert request_data is not None
            form = aiohttp.FormData()
            for name, value in request_data.json_parameters.items():
                form.add_field(name, value)
            for name, (filename, content, mime_type) in files.items():
                form.add_field(name, content, filename=filename, content_type=mime_type)
            body = form
        elif request_data is not None and (parameters := request_data.parameters):
            # One JSON body (the Bot API takes it for every call without files): a tenth of
            # the CPU of a form, whose fields are each JSON-encoded, then percent-encoded.
            body = json.dumps(parameters, ensure_ascii=False, separators=(",", ":")).encode()
            headers = _JSON
        read = _seconds(read_timeout, self._read)
        write = _seconds(write_timeout, MEDIA_WRITE_TIMEOUT if files else self._write)
        connect = _seconds(connect_timeout, self._connect)
        pool = _seconds(pool_timeout, self._pool)
        # aiohttp has no write timeout of its own: a body is written within sock_read's
        # first wait, so the longer of the two bounds a request's silence.
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=None if read is None or write is None else max(read, write),
        )
        try:
            async with session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
