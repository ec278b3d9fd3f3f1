"""End to end: an answer's checkpoints run beside its stream, so a database that holds a
checkpoint's write back does not hold the answer's deltas back.

The web runtime over the Spark simulator and a SQLite file; the test takes the file's write
lock (as a long write of another process would hold it) while an answer streams for longer
than the checkpoint interval (3 s), and gives it back only once the reader has every delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from bot.spark.simulator import SimulatorOptions
from tests.support.gateway import start_gateway
from tests.support.web_client import Event, WebClient, answer_text, event_of

# 150 frames of 8 characters, 0.03 s apart: about 4.5 s of writing, one checkpoint due at 3 s.
LENGTH = 1200
SLOW = SimulatorOptions(frame_interval=0.03, chars_per_frame=8)


async def test_a_held_checkpoint_write_does_not_hold_the_deltas_back(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as resources:
        gateway = await start_gateway(tmp_path, resources, simulator_options=SLOW)
        web = WebClient(gateway.base_url, await gateway.create_key("alice"))
        resources.push_async_callback(web.aclose)
        conversation = await web.create()
        lock = sqlite3.connect(tmp_path / "gateway.sqlite3", isolation_level=None)
        resources.callback(lock.close)
        events: list[Event] = []
        async with web.stream(conversation["id"], f"[[long:{LENGTH}]] a long story") as source:
            reading = aiter(source.aiter_sse())
            async with asyncio.timeout(20):  # without the fix the stream waits for the lock
                while len(answer_text(events)) < LENGTH:
                    sse = await anext(reading)
                    if not sse.data:  # a keep-alive comment: Spark seemed silent
                        continue
                    events.append(event_of(sse))
                    if len(events) == 1:
                        lock.execute("BEGIN IMMEDIATE")  # every write waits from now on
            assert all(event.name == "delta" for event in events)  # not done: nothing stored
            lock.execute("ROLLBACK")
            events.extend([event_of(sse) async for sse in reading if sse.data])

        (request,) = gateway.spark.requests
        assert answer_text(events) == request.answer_text
        assert events[-1].name == "done"
        assert events[-1].data["status"] == "complete"
        stored = (await web.get(conversation["id"]))["messages"]
        assert [(m["role"], m["status"], m["content"]) for m in stored] == [
            ("user", "complete", f"[[long:{LENGTH}]] a long story"),
            ("assistant", "complete", request.answer_text),
        ]
