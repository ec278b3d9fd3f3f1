"""The conversation API end to end over real HTTP: the web runtime, the Spark simulator over
a real socket, SQLite. SSE is read by httpx-sse, a real SSE client; each test checks what the
client sees and what was stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.spark.simulator import SimulatorOptions
from tests.support import db_rows
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.web_client import Event, WebClient, answer_text, event_of

Factory = Callable[..., Awaitable[RunningGateway]]
SLOW = SimulatorOptions(frame_interval=0.03, chars_per_frame=8)


@pytest.fixture
async def resources() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
async def make(tmp_path: Path, resources: contextlib.AsyncExitStack) -> Factory:
    async def make(**groups: Any) -> RunningGateway:
        return await start_gateway(tmp_path, resources, **groups)

    return make


async def client(
    gateway: RunningGateway, resources: contextlib.AsyncExitStack, name: str, options: str = ""
) -> WebClient:
    web = WebClient(gateway.base_url, await gateway.create_key(name, options))
    resources.push_async_callback(web.aclose)
    return web


async def wait_status(web: WebClient, number: int, status: str) -> dict[str, Any]:
    """The conversation once its last answer has ``status`` (the answer ends on its own)."""
    async with asyncio.timeout(20):
        while True:
            conversation = await web.get(number)
            answers = [m for m in conversation["messages"] if m["role"] == "assistant"]
            if answers and answers[-1]["status"] == status:
                return dict(answers[-1])
            await asyncio.sleep(0.05)


async def test_conversations_are_created_listed_newest_first_in_pages_read_and_deleted(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make()
    web = await client(gateway, resources, "alice")
    created = [await web.create(model="x1", system_prompt="Be brief.") for _ in range(3)]
    assert [c["id"] for c in created] == [1, 2, 3]
    assert created[0]["model"] == "x1"
    assert created[0]["system_prompt"] == "Be brief."

    first = (await web.http.get("/v1/conversations?limit=2")).json()
    assert [c["id"] for c in first["data"]] == [3, 2]
    assert first["has_more"] is True
    assert first["next_before"] == 2
    rest = (await web.http.get("/v1/conversations?limit=2&before=2")).json()
    assert [c["id"] for c in rest["data"]] == [1]
    assert rest["has_more"] is False

    assert (await web.http.delete("/v1/conversations/2")).status_code == 204
    assert (await web.http.get("/v1/conversations/2")).status_code == 404
    listed = (await web.http.get("/v1/conversations")).json()
    assert [c["id"] for c in listed["data"]] == [3, 1]
    unknown = await web.http.post("/v1/conversations", json={"model": "no-such-model"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "model"


async def test_a_deleted_conversations_number_is_never_handed_out_again(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make()
    web = await client(gateway, resources, "alice")
    old = await web.create()
    await web.ask_all(old["id"], "[[answer:the old conversation]]")
    assert (await web.http.delete(f"/v1/conversations/{old['id']}")).status_code == 204

    new = await web.create(system_prompt="New one.")
    assert new["id"] != old["id"]
    # A client still holding the old number is told it is gone, never shown the new one.
    for method, path in [
        ("GET", f"/v1/conversations/{old['id']}"),
        ("POST", f"/v1/conversations/{old['id']}/reset"),
        ("DELETE", f"/v1/conversations/{old['id']}"),
    ]:
        response = await web.http.request(method, path)
        assert response.status_code == 404, (method, path)
    asked = await web.http.post(f"/v1/conversations/{old['id']}/messages", json={"text": "hi"})
    assert asked.status_code == 404
    kept = await web.get(new["id"])
    assert (kept["system_prompt"], kept["messages"]) == ("New one.", [])
    # The ledger row of the deleted conversation stays with its own chat, not the new one.
    ledger = await gateway.ledger()
    assert len(ledger) == 1
    chats = await db_rows.rows(gateway.database, "SELECT id FROM chats WHERE type = 'web'")
    assert ledger[0].chat_id not in [row.id for row in chats]


async def test_another_keys_conversation_is_not_found(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make()
    alice = await client(gateway, resources, "alice")
    bob = await client(gateway, resources, "bob")
    mine = await alice.create()
    await alice.ask_all(mine["id"], "[[answer:alice's secret]]")

    for method, path in [
        ("GET", "/v1/conversations/1"),
        ("DELETE", "/v1/conversations/1"),
        ("POST", "/v1/conversations/1/reset"),
        ("POST", "/v1/conversations/1/stop"),
    ]:
        response = await bob.http.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "conversation_not_found"
    asked = await bob.http.post("/v1/conversations/1/messages", json={"text": "hi"})
    assert asked.status_code == 404
    assert (await bob.http.get("/v1/conversations")).json()["data"] == []
    # Numbers are the server's, not per key: Bob's first one is another conversation.
    theirs = await bob.create()
    assert (await bob.get(theirs["id"]))["messages"] == []
    answer = (await alice.get(1))["messages"][-1]
    assert answer["content"] == "alice's secret"
    assert answer["status"] == "complete"
    async with httpx.AsyncClient(base_url=gateway.base_url) as anonymous:
        unauthorised = await anonymous.get("/v1/conversations")
    assert unauthorised.status_code == 401


async def test_an_answer_streams_as_named_events_with_ids_and_is_stored(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make()
    web = await client(gateway, resources, "alice")
    conversation = await web.create(model="x1")
    events = await web.ask_all(conversation["id"], "[[search]] Why is the sky blue?")

    names = [event.name for event in events]
    assert names[-1] == "done"
    assert "delta" in names
    assert "reasoning" in names
    assert names.index("reasoning") < names.index("delta")
    assert all(event.id for event in events)
    done = events[-1].data
    assert done["status"] == "complete"
    assert done["usage"]["total_tokens"] > 0
    stored = await web.get(conversation["id"])
    question, answer = stored["messages"]
    assert question["content"] == "[[search]] Why is the sky blue?"
    assert answer["id"] == done["message_id"]
    assert answer["status"] == "complete"
    assert answer["content"] == answer_text(events)
    assert stored["title"] == "[[search]] Why is the sky blue?"
    ledger = await gateway.wait_ledger(1)
    assert ledger[0].message_id == done["message_id"]
    assert ledger[0].total_tokens == done["usage"]["total_tokens"]


async def test_without_the_event_stream_accept_header_the_answer_comes_as_json(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make()
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    response = await web.http.post(
        f"/v1/conversations/{conversation['id']}/messages", json={"text": "[[answer:你好，世界]]"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["message"]["content"] == "你好，世界"
    assert body["message"]["status"] == "complete"
    assert body["usage"]["total_tokens"] > 0


async def test_a_reader_that_reconnects_with_last_event_id_gets_the_rest(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make(simulator_options=SLOW, http_api={"resume_grace_seconds": 30})
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    seen: list[Event] = []
    async with web.stream(conversation["id"], "[[long:600]]") as source:
        async for sse in source.aiter_sse():
            seen.append(event_of(sse))
            if len(seen) == 3:
                break  # the connection goes; the answer goes on being written
    rest = await web.resume_all(conversation["id"], seen[-1].id)
    assert rest[-1].name == "done"
    assert rest[-1].data["status"] == "complete"
    stored = await wait_status(web, conversation["id"], "complete")
    assert answer_text(seen) + answer_text(rest) == stored["content"]
    assert len(stored["content"]) == 600

    # Once stored, the same id gets the rest from storage, in one piece.
    again = await web.resume_all(conversation["id"], seen[-1].id)
    assert [event.name for event in again] == ["delta", "done"]
    assert answer_text(seen) + answer_text(again) == stored["content"]
    assert again[-1].data["message_id"] == stored["id"]


async def test_stop_cancels_the_answer_and_stores_what_was_written(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make()
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    events: list[Event] = []
    async with web.stream(conversation["id"], "[[hang-after:3]] [[long:400]]") as source:
        async for sse in source.aiter_sse():
            events.append(event_of(sse))
            if len(events) == 1:
                stop = await web.http.post(f"/v1/conversations/{conversation['id']}/stop")
                assert stop.json() == {"stopped": True}
    assert events[-1].name == "done"
    assert events[-1].data["status"] == "cancelled"
    stored = (await web.get(conversation["id"]))["messages"][-1]
    assert stored["status"] == "cancelled"
    assert stored["content"] == answer_text(events)
    assert stored["content"]


async def test_an_answer_whose_reader_left_is_stored_partial_after_the_grace(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make(http_api={"resume_grace_seconds": 0.2})
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    seen: list[Event] = []
    async with web.stream(conversation["id"], "[[hang-after:3]] [[long:400]]") as source:
        async for sse in source.aiter_sse():
            seen.append(event_of(sse))
            if seen[-1].name == "delta":
                break
    stored = await wait_status(web, conversation["id"], "partial")
    assert stored["content"].startswith(answer_text(seen))
    assert stored["content"]
    ledger = await gateway.wait_ledger(1)
    assert ledger[0].message_id == stored["id"]


async def test_one_answer_at_a_time_per_conversation(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make(simulator_options=SLOW)
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    order: list[str] = []
    writing = asyncio.Event()

    async def ask(name: str, text: str) -> list[Event]:
        async with web.stream(conversation["id"], text) as source:
            events = []
            async for sse in source.aiter_sse():
                events.append(event_of(sse))
                order.append(f"{name}:{sse.event}")
                writing.set()
            return events

    first = asyncio.create_task(ask("first", "[[long:200]]"))
    await writing.wait()  # the first answer is being written before the second is asked
    second = await ask("second", "[[answer:second answer]]")
    await first
    assert order.index("first:done") < order.index("second:delta")
    assert answer_text(second) == "second answer"
    messages = (await web.get(conversation["id"]))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[3]["reply_to"] == messages[2]["id"]


async def test_limits_refuse_before_spark_is_called_and_keep_the_question(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make(limits={"user_rate_limit": 1})
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    await web.ask_all(conversation["id"], "[[answer:one]]")
    refused = await web.http.post(
        f"/v1/conversations/{conversation['id']}/messages",
        json={"text": "two"},
        headers={"Accept": "text/event-stream"},
    )
    assert refused.status_code == 429
    assert refused.headers["Retry-After"]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    messages = (await web.get(conversation["id"]))["messages"]
    assert [(m["content"], m["status"]) for m in messages[-2:]] == [
        ("two", "complete"),
        ("", "failed"),
    ]
    assert len(await gateway.ledger()) == 1  # Spark was asked once


async def test_reset_starts_over_and_keeps_nothing_in_the_new_conversation(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make()
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    await web.ask_all(conversation["id"], "[[answer:before]]")
    reset = await web.http.post(f"/v1/conversations/{conversation['id']}/reset")
    assert reset.status_code == 200
    assert reset.json()["messages"] == []
    events = await web.ask_all(conversation["id"], "[[answer:after]]")
    assert answer_text(events) == "after"
    assert [m["content"] for m in (await web.get(conversation["id"]))["messages"]] == [
        "[[answer:after]]",
        "after",
    ]


async def test_a_silent_spark_gets_keep_alive_comments_then_the_answer(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make(http_api={"keepalive_seconds": 0.1}, spark={"first_frame_timeout": 5})
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    async with web.http.stream(
        "POST",
        f"/v1/conversations/{conversation['id']}/messages",
        json={"text": "Wait [[slow-first:0.6]]"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        body = b"".join([chunk async for chunk in response.aiter_bytes()]).decode()
    parts = [part for part in body.split("\n\n") if part]
    assert parts[0] == ": keep-alive"
    events = [part for part in parts if not part.startswith(":")]
    assert all(part.startswith("id: ") for part in events)
    assert events[-1].split("\n")[1] == "event: done"
    texts = [
        json.loads(part.split("\n")[2].removeprefix("data: "))["text"]
        for part in events
        if part.split("\n")[1] == "event: delta"
    ]
    stored = (await web.get(conversation["id"]))["messages"][-1]
    assert stored["status"] == "complete"
    assert "".join(texts) == stored["content"] == gateway.spark.requests[0].answer_text


async def test_keep_alive_comments_repeat_while_spark_stays_silent(
    make: Factory, resources: contextlib.AsyncExitStack
) -> None:
    gateway = await make(http_api={"keepalive_seconds": 0.05}, spark={"first_frame_timeout": 30})
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    seen = ""
    async with web.http.stream(
        "POST",
        f"/v1/conversations/{conversation['id']}/messages",
        json={"text": "[[hang]]"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        async for chunk in response.aiter_text():
            seen += chunk
            if seen.count(": keep-alive\n\n") >= 3:
                break
    assert seen == ": keep-alive\n\n" * 3


async def test_a_reader_that_stops_reading_gets_the_whole_answer_when_it_reads_again(
    tmp_path: Path, resources: contextlib.AsyncExitStack
) -> None:
    # Far more than the sockets hold between them: the server's own buffer fills while the
    # reader does not read, and the answer goes on being written into the feed meanwhile.
    gateway = await start_gateway(
        tmp_path,
        resources,
        simulator_options=SimulatorOptions(chars_per_frame=64 * 1024),
    )
    web = await client(gateway, resources, "alice")
    conversation = await web.create()
    async with web.http.stream(
        "POST",
        f"/v1/conversations/{conversation['id']}/messages",
        json={"text": "[[long:6000000]]"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        chunks = response.aiter_bytes()
        body = [await anext(chunks)]
        await gateway.wait_ledger(1)  # the whole answer is written while nobody reads
        body += [chunk async for chunk in chunks]
    events = [part for part in b"".join(body).decode().split("\n\n") if part]
    texts = [
        json.loads(part.split("\n")[2].removeprefix("data: "))["text"]
        for part in events
        if part.split("\n")[1] == "event: delta"
    ]
    assert events[-1].split("\n")[1] == "event: done"
    stored = (await web.get(conversation["id"]))["messages"][-1]
    assert stored["status"] == "complete"
    assert len(stored["content"]) == 6_000_000
    assert "".join(texts) == stored["content"]
