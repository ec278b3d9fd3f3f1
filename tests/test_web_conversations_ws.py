"""The conversation WebSocket end to end with aiohttp's client: credentials as a subprotocol
or a one-time ticket (never in the URL), questions in sequence, cancel, ping/pong."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.web.ws import SUBPROTOCOL, UNAUTHORIZED_CLOSE
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.web_client import WebClient


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with contextlib.AsyncExitStack() as resources:
        yield await start_gateway(tmp_path, resources)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> list[dict[str, Any]]:
    """Messages up to and including the first of ``kind``."""
    seen: list[dict[str, Any]] = []
    while True:
        message = await ws.receive_json(timeout=20)
        seen.append(message)
        if message["type"] == kind:
            return seen


def text_of(messages: list[dict[str, Any]]) -> str:
    return "".join(m["text"] for m in messages if m["type"] == "delta")


async def test_questions_in_sequence_on_one_socket_with_the_key_as_subprotocol(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    key = await gateway.create_key("alice")
    async with WebClient(gateway.base_url, key) as web:
        conversation = await web.create()
    url = gateway.base_url.replace("http", "ws") + "/v1/ws"
    async with http.ws_connect(url, protocols=(SUBPROTOCOL, f"key.{key}")) as ws:
        assert ws.protocol == SUBPROTOCOL  # the key is never echoed back
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json())["type"] == "pong"
        for text in ("first", "second"):
            await ws.send_json(
                {"type": "ask", "conversation": conversation["id"], "text": f"[[answer:{text}]]"}
            )
            messages = await until(ws, "done")
            assert messages[0]["type"] == "accepted"
            assert text_of(messages) == text
            done = messages[-1]
            assert done["status"] == "complete"
            assert done["message_id"]
            assert all(m["conversation"] == conversation["id"] for m in messages)
    async with WebClient(gateway.base_url, key) as web:
        stored = (await web.get(conversation["id"]))["messages"]
    assert [m["content"] for m in stored] == [
        "[[answer:first]]",
        "first",
        "[[answer:second]]",
        "second",
    ]


async def test_a_ticket_opens_one_socket_and_bad_credentials_close_it_with_4401(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    key = await gateway.create_key("alice")
    url = gateway.base_url.replace("http", "ws") + "/v1/ws"
    issued = await http.post(
        gateway.base_url + "/v1/ws/tickets", headers={"Authorization": f"Bearer {key}"}
    )
    ticket = (await issued.json())["ticket"]
    async with http.ws_connect(url, protocols=(SUBPROTOCOL, f"ticket.{ticket}")) as ws:
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json())["type"] == "pong"
    for offered in (f"ticket.{ticket}", "key.sk-spark-wrong", None):
        protocols = (SUBPROTOCOL, offered) if offered else (SUBPROTOCOL,)
        async with http.ws_connect(url, protocols=protocols) as ws:
            message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == UNAUTHORIZED_CLOSE


async def test_cancel_stops_the_answer_and_another_keys_conversation_is_not_found(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    alice = await gateway.create_key("alice")
    bob = await gateway.create_key("bob")
    async with WebClient(gateway.base_url, alice) as web:
        conversation = await web.create()
    url = gateway.base_url.replace("http", "ws") + "/v1/ws"
    async with http.ws_connect(url, protocols=(SUBPROTOCOL, f"key.{bob}")) as ws:
        await ws.send_json({"type": "ask", "conversation": conversation["id"], "text": "hi"})
        refused = await ws.receive_json()
        assert refused["type"] == "error"
        assert refused["code"] == "conversation_not_found"
    async with http.ws_connect(url, protocols=(SUBPROTOCOL, f"key.{alice}")) as ws:
        await ws.send_json(
            {"type": "ask", "conversation": conversation["id"], "text": "[[hang-after:3]] x"}
        )
        messages = await until(ws, "delta")
        await ws.send_json({"type": "cancel", "conversation": conversation["id"]})
        messages += await until(ws, "done")
        assert messages[-1]["status"] == "cancelled"
        assert any(m["type"] == "cancelled" and m["stopped"] for m in messages)
    async with WebClient(gateway.base_url, alice) as web:
        answer = (await web.get(conversation["id"]))["messages"][-1]
    assert answer["status"] == "cancelled"
    assert answer["content"] == text_of(messages)
