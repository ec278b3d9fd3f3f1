"""A cheap HTTP/1.1 client for load benchmarks: one keep-alive connection per
:class:`RawConnection`, pre-encoded requests, and only as much parsing as finding where a
response ends takes (its status, then ``Content-Length`` or the chunks of a chunked body).

aiohttp's client builds a request object, headers and a response object per request, which
costs the load generator more CPU than the server under test spends on a short answer; on a
machine with two cores that cap, not the server, would set the throughput measured.
"""

from __future__ import annotations

import asyncio


class ResponseError(Exception):
    """The server's bytes are not an HTTP/1.1 response this client understands."""


def encode_post(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The bytes of one ``POST`` with ``body``, ready to be written as they are."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_end(buffer: bytearray) -> tuple[int, int] | None:
    """``(status, length)`` of the whole first response in ``buffer``, or None while it is
    incomplete."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    if not buffer.startswith(b"HTTP/1.1 "):
        raise ResponseError(f"not an HTTP/1.1 response: {bytes(buffer[:40])!r}")
    status = int(buffer[9:12])
    head = bytes(buffer[:head_end]).lower()
    body_start = head_end + 4
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        end = body_start + length
        return (status, end) if len(buffer) >= end else None
    if b"\r\ntransfer-encoding: chunked" not in head:
        raise ResponseError("a response with neither Content-Length nor chunks")
    position = body_start
    while True:
        size_end = buffer.find(b"\r\n", position)
        if size_end < 0:
            return None
        size = int(bytes(buffer[position:size_end]).split(b";", 1)[0], 16)
        position = size_end + 2 + size + 2  # the chunk and its CRLF (the last: no trailers)
        if len(buffer) < position:
            return None
        if size == 0:
            return status, position


class RawConnection(asyncio.Protocol):
    """One keep-alive connection sending one request at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            found = response_end(self._buffer)
        except (ResponseError, ValueError) as exc:
            waiter.set_exception(exc)
            return
        if found is not None:
            status, end = found
            body = bytes(self._buffer[:end])
            del self._buffer[:end]
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        """Send ``payload`` (one whole request); the response's status and its bytes."""
        if self._transport is None or self.closed:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(payload)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
