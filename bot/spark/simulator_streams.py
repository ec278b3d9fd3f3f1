"""One simulated answer: what to send for a validated request, and sending it on a socket.

:func:`plan_answer` decides the frames (function call, search sources, reasoning, answer) and
the scripted cutoff; :class:`Stream` plays a :class:`Plan` with the configured pacing and ends
the connection the way the plan says. Both keep the connection's :class:`RecordedRequest` up
to date, so a test can read what was sent while the stream is still open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import WSCloseCode, web

from bot.spark.models import SparkModel
from bot.spark.simulator_content import (
    CutoffAction,
    Script,
    estimate_tokens,
    function_arguments,
    pick_function,
    reasoning_text,
    scripted_answer,
    search_sources,
    wants_search,
)
from bot.spark.simulator_frames import (
    error_frame,
    error_message,
    function_call_frame,
    plugins_frame,
    text_frames,
)
from bot.spark.simulator_requests import ValidRequest
from bot.spark.types import Usage


@dataclass(slots=True, eq=False)
class RecordedRequest:
    """One connection as the simulator saw it; updated while the answer streams."""

    path: str
    handshake_status: int | None = None  # 101 on upgrade; None when dropped before answering
    handshake_message: str | None = None  # the refusal's ``message``
    fault: str | None = None  # the injected fault that scripted this connection
    request: dict[str, Any] | None = None  # the request frame, when it was JSON
    model: SparkModel | None = None
    sid: str | None = None
    planned_answer: str = field(default="", repr=False)
    reasoning: str = field(default="", repr=False)
    answer_chars_sent: int = 0
    frames_sent: int = 0
    function_call: dict[str, str] | None = None  # {"name", "arguments"} when one was sent
    sources: list[dict[str, Any]] | None = None  # search sources, when a plugins frame was sent
    usage: Usage | None = None
    error_code: int | None = None
    error_message: str | None = None
    closed_abruptly: bool = False  # the server dropped the connection without a close frame
    hung: bool = False  # the server stopped answering on purpose
    client_closed_early: bool = False  # the client left before the server was done

    @property
    def answer_text(self) -> str:
        """The answer text sent so far (a prefix of ``planned_answer``)."""
        return self.planned_answer[: self.answer_chars_sent]

    @property
    def question(self) -> str | None:
        """The last message's content as sent, markers included."""
        try:
            return str(self.request["payload"]["message"]["text"][-1]["content"])  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None


@dataclass(slots=True)
class Plan:
    """The frames to send, then what happens after ``cutoff`` frames (if it comes first)."""

    frames: Iterator[tuple[str, int]]  # (frame, answer characters in it)
    cutoff: int | None = None
    action: CutoffAction | None = None
    code: int = 0  # error code for action "error"
    detail: str | None = None  # error detail; None means the code's usual wording
    first_delay: float = 0.0


def error_plan(code: int, detail: str | None = None) -> Plan:
    """An error frame instead of an answer."""
    return Plan(frames=iter(()), cutoff=0, action="error", code=code, detail=detail)


def plan_answer(
    valid: ValidRequest,
    text: str,
    script: Script,
    record: RecordedRequest,
    *,
    sid: str,
    chars_per_frame: int,
    first_frame_delay: float,
) -> Plan:
    """The frames answering ``text`` (the question without markers) as ``script`` says."""
    model = valid.model
    first_delay = script.slow_first if script.slow_first is not None else first_frame_delay
    plan = Plan(
        frames=iter(()),
        cutoff=script.cutoff,
        action=script.cutoff_action,
        code=script.cutoff_code,
        first_delay=first_delay,
    )
    function = pick_function(text, valid.functions) if model.supports_functions else None
    if function is not None:
        name, arguments = str(function["name"]), function_arguments(function, text)
        record.function_call = {"name": name, "arguments": arguments}
        record.usage = usage = _usage(valid, completion_tokens=0)
        plan.frames = iter([(function_call_frame(sid, name, arguments, usage), 0)])
        return plan
    answer = scripted_answer(text, script, model)
    reasoning = reasoning_text(text) if model.reasoning else ""
    record.planned_answer, record.reasoning = answer, reasoning
    completion = estimate_tokens(answer) + (estimate_tokens(reasoning) if reasoning else 0)
    record.usage = usage = _usage(valid, completion_tokens=completion)
    frames = text_frames(sid, answer, reasoning, chars_per_frame, usage)
    if wants_search(text, script, valid.chat, model):
        record.sources = sources = search_sources(text)
        frames = _prepend((plugins_frame(sid, sources), 0), frames)
    plan.frames = frames
    return plan


def _usage(valid: ValidRequest, *, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=valid.prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=valid.prompt_tokens + completion_tokens,
        question_tokens=valid.question_tokens,
    )


def _prepend(first: tuple[str, int], rest: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    yield first
    yield from rest


class Stream:
    """One upgraded connection playing its plan."""

    __slots__ = ("closing", "record", "request", "ws")

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, record: RecordedRequest
    ) -> None:
        self.ws = ws
        self.request = request
        self.record = record
        self.closing = False  # the server has begun its close handshake

    async def play(
        self, plan: Plan, *, frame_interval: float, clock: Callable[[], datetime]
    ) -> None:
        """Send the plan's frames, then close (1000), send an error, drop or hang."""
        record = self.record
        sent = 0
        try:
            if plan.first_delay > 0:
                await asyncio.sleep(plan.first_delay)
            while True:
                if sent and frame_interval > 0:
                    await asyncio.sleep(frame_interval)
                if sent == plan.cutoff:
                    await self._cut(plan, clock)
                    return
                item = next(plan.frames, None)
                if item is None:
                    break
                frame, chars = item
                await self.ws.send_str(frame)
                sent += 1
                record.frames_sent = sent
                record.answer_chars_sent += chars
            await self.close()
        except ConnectionResetError:
            record.client_closed_early = True

    async def _cut(self, plan: Plan, clock: Callable[[], datetime]) -> None:
        record = self.record
        if plan.action == "error":
            message = error_message(plan.code, plan.detail, clock())
            record.error_code, record.error_message = plan.code, message
            await self.ws.send_str(error_frame(plan.code, message, record.sid or ""))
            await self.close()
        elif plan.action == "abort":
            record.closed_abruptly = True
            transport = self.request.transport
            if transport is not None:
                transport.abort()
        else:
            record.hung = True

    async def close(self) -> None:
        self.closing = True
        await self.ws.close(code=WSCloseCode.OK)
