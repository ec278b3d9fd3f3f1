"""A client of the conversation API for tests: httpx for JSON, httpx-sse for the streams
(a real SSE parser), aiohttp for the WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, aconnect_sse


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    id: str
    data: dict[str, Any]


def event_of(sse: Any) -> Event:
    return Event(sse.event, sse.id, json.loads(sse.data))


class WebClient:
    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.key = key
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(30.0),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> WebClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def create(self, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/v1/conversations", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def get(self, number: int) -> dict[str, Any]:
        response = await self.http.get(f"/v1/conversations/{number}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    @asynccontextmanager
    async def stream(
        self, number: int, text: str | None = None, *, last_event_id: str | None = None
    ) -> AsyncIterator[EventSource]:
        """POST a question (or, with ``last_event_id``, resume) and read its events."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        body = {"text": text} if text is not None else {}
        async with aconnect_sse(
            self.http, "POST", f"/v1/conversations/{number}/messages", json=body, headers=headers
        ) as source:
            yield source

    async def ask_all(self, number: int, text: str) -> list[Event]:
        async with self.stream(number, text) as source:
            source.response.raise_for_status()
            return [event_of(sse) async for sse in source.aiter_sse()]

    async def resume_all(self, number: int, last_event_id: str) -> list[Event]:
        async with self.stream(number, last_event_id=last_event_id) as source:
            return [event_of(sse) async for sse in source.aiter_sse()]


def answer_text(events: list[Event]) -> str:
    return "".join(event.data["text"] for event in events if event.name == "delta")
