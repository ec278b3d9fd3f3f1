"""The SSE framing of a streamed answer, byte for byte, read off a raw socket.

The reader speaks HTTP/1.1 itself and undoes the chunked transfer encoding, so it sees every
write the server made: each holds whole events only, events are separated by one blank line,
every line of an event is ``data: <json>`` (or a ``:`` comment), and ``data: [DONE]`` is the
last. Parsing the bytes one at a time gives the same events as parsing them whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.spark.simulator import SimulatorOptions
from tests.support.gateway import RunningGateway, start_gateway


@pytest.fixture
async def resources() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


async def _raw_stream(
    gateway: RunningGateway, key: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], list[bytes]]:
    """(status, headers, the body's chunks as written) of one POST, read off the socket."""
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.runtime.port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {key}\r\n".encode()
            + b"Content-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        chunks: list[bytes] = []
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await reader.readline()).strip(), 16)
                if size == 0:
                    break
                chunks.append(await reader.readexactly(size))
                assert await reader.readexactly(2) == b"\r\n"
        else:
            chunks.append(await reader.read())
        return status, headers, chunks
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _events(data: bytes) -> list[str]:
    """An incremental SSE parser fed one byte at a time: the events' data, comments as
    ``:`` lines."""
    events: list[str] = []
    line = b""
    current: list[str] = []
    for byte in data:
        line += bytes([byte])
        if not line.endswith(b"\n"):
            continue
        text = line[:-1].decode()
        line = b""
        if text == "":
            if current:
                events.append("\n".join(current))
                current = []
        elif text.startswith(":"):
            events.append(text)
        else:
            assert text.startswith("data: "), text
            current.append(text.removeprefix("data: "))
    assert line == b""
    assert current == []
    return events


async def test_the_stream_is_whole_events_a_blank_line_apart_and_done_last(
    tmp_path: Path, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await start_gateway(tmp_path, resources)
    key = await gateway.create_key("app")
    status, headers, chunks = await _raw_stream(
        gateway,
        key,
        {
            "model": "max",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Tell me [[long:500]]"}],
        },
    )
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert chunks
    for chunk in chunks:  # no write ends inside an event
        assert chunk.endswith(b"\n\n")
        assert chunk.startswith(b"data: ")
    body = b"".join(chunks)
    assert b"\n\n\n" not in body
    events = _events(body)
    assert events[-1] == "[DONE]"
    assert body.endswith(b"data: [DONE]\n\n")
    parsed = [json.loads(event) for event in events[:-1]]
    assert {event["id"] for event in parsed} == {parsed[0]["id"]}
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in parsed if e["choices"])
    assert text == gateway.spark.requests[0].answer_text
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["total_tokens"] > 0
    # Parsed whole, event by event, the same.
    whole = [part.removeprefix("data: ") for part in body.decode().split("\n\n") if part]
    assert whole == events


async def test_a_silent_spark_gets_keep_alive_comments(
    tmp_path: Path, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await start_gateway(
        tmp_path, resources, http_api={"keepalive_seconds": 0.1}, spark={"first_frame_timeout": 5}
    )
    key = await gateway.create_key("app")
    status, _, chunks = await _raw_stream(
        gateway,
        key,
        {
            "model": "max",
            "stream": True,
            "messages": [{"role": "user", "content": "Wait [[slow-first:0.6]]"}],
        },
    )
    assert status == 200
    events = _events(b"".join(chunks))
    assert events[0] == ": keep-alive"
    assert events[-1] == "[DONE]"
    answer = [json.loads(e) for e in events if not e.startswith(":") and e != "[DONE]"]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in answer)
    assert text == gateway.spark.requests[0].answer_text


async def test_an_error_before_the_first_event_is_a_plain_http_error(
    tmp_path: Path, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await start_gateway(
        tmp_path, resources, simulator_options=SimulatorOptions(frame_interval=0.0)
    )
    key = await gateway.create_key("app")
    gateway.spark.inject("error:10110")
    status, headers, chunks = await _raw_stream(
        gateway,
        key,
        {"model": "max", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert status == 502
    assert headers["content-type"].startswith("application/json")
    assert headers["x-spark-sid"] == gateway.spark.requests[0].sid
    error = json.loads(b"".join(chunks))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "upstream_error"
