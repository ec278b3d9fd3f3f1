"""The closed loop of a load benchmark: workers sending one request after another, each to
a balancer's next replica, counted only inside the measured window.

:class:`RawSender` speaks through :mod:`benchmarks.raw_http` (keep-alive, pre-encoded);
:class:`AiohttpSender` sends the same requests through aiohttp's client, to show what the raw
client saves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp

from benchmarks.raw_http import RawConnection, encode_post


@dataclass(slots=True)
class Tally:
    """What the workers saw: requests completed in the window, their latencies, failures."""

    completed: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None

    def error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


class RawSender:
    """A worker's keep-alive connection to each replica, and its requests pre-encoded."""

    def __init__(self, ports: Sequence[int], key: str, body: bytes) -> None:
        self._ports = ports
        self._payloads = [
            encode_post(f"127.0.0.1:{port}", "/v1/chat/completions", _headers(key), body)
            for port in ports
        ]
        self._connections: list[RawConnection] = []

    async def open(self) -> None:
        self._connections = [await RawConnection.open("127.0.0.1", p) for p in self._ports]

    async def send(self, replica: int) -> tuple[int, bytes]:
        connection = self._connections[replica]
        if connection.closed:
            connection = await RawConnection.open("127.0.0.1", self._ports[replica])
            self._connections[replica] = connection
        return await connection.request(self._payloads[replica])

    async def close(self) -> None:
        for connection in self._connections:
            connection.close()


class AiohttpSender:
    """The same requests through one aiohttp client session (to measure what it costs)."""

    def __init__(
        self, session: aiohttp.ClientSession, ports: Sequence[int], key: str, body: bytes
    ) -> None:
        self._session = session
        self._urls = [f"http://127.0.0.1:{port}/v1/chat/completions" for port in ports]
        self._headers = _headers(key)
        self._body = body

    async def open(self) -> None:
        return None

    async def send(self, replica: int) -> tuple[int, bytes]:
        async with self._session.post(
            self._urls[replica], data=self._body, headers=self._headers
        ) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        return None


Sender = RawSender | AiohttpSender


async def worker(
    sender: Sender,
    replicas: int,
    turns: Iterator[int],
    window: tuple[float, float],
    stream: bool,
    tally: Tally,
) -> None:
    """Requests one after another until the window ends, each to the balancer's next
    replica."""
    await sender.open()
    start, end = window
    clock = time.monotonic
    try:
        while (sent := clock()) < end:
            try:
                status, body = await sender.send(next(turns) % replicas)
            except (ConnectionError, ValueError, aiohttp.ClientError) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                continue
            done = clock()
            if status != 200 or (stream and b"data: [DONE]" not in body):
                tally.error(body[-300:].decode(errors="replace"))
            elif sent >= start and done <= end:
                tally.completed += 1
                tally.latencies.append(done - sent)
    finally:
        await sender.close()
