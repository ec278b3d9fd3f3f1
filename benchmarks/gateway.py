"""Benchmark of the HTTP API: latency the gateway adds per delta, its CPU per delta, its RSS per
open stream, with N concurrent streaming requests, beside the Spark client alone.

Run: ``.venv/bin/python benchmarks/gateway.py`` (``--help`` for options).

Three processes (``multiprocessing``, spawn): the simulator, the gateway (``python -m bot
web``'s runtime over SQLite) and this one, the clients. The simulator writes the moment it
sends each frame (``time.monotonic_ns()``, one clock for every process on Linux) into the
frame's text, so whoever reads a delta knows how long it took to arrive:

1. Direct: N concurrent :meth:`SparkClient.stream` calls against the simulator.
2. Gateway: N concurrent ``stream: true`` requests through the gateway, read as raw SSE
   (``data:`` lines, no SDK, so the client's own cost stays small).

Both phases pace the simulator alike (``--interval`` between frames), so the difference of
the two latency distributions is what the gateway adds. The gateway reports its own CPU time
(``time.process_time()`` in its process) across phase 2, divided by the deltas it delivered.
Then N streams are held open through the gateway mid-answer, and the growth of its RSS over
the idle baseline, divided by N, is the memory per open stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import math
import multiprocessing
import os
import platform
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import load_settings
from bot.spark.client import SparkClient, SparkOptions, SparkTimeouts
from bot.spark.models import get_model
from bot.spark.retry import RetryPolicy
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from bot.spark.simulator_streams import Plan, RecordedRequest
from bot.spark.types import ChatMessage, TextDelta
from bot.web.app import freeze_startup_heap, open_web_runtime
from bot.web.keys import new_key
from storage.database import create_database
from storage.repositories.api_keys import key_hash

MODEL = get_model("max")


def _stamped(frames: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    """The plan's frames with each text replaced by the moment it is sent: the stream asks for
    the next frame right before it sends it."""
    for frame, chars in frames:
        data = json.loads(frame)
        for item in ((data.get("payload") or {}).get("choices") or {}).get("text") or ():
            if item.get("content"):
                item["content"] = f"<{time.monotonic_ns()}>"
        yield json.dumps(data, separators=(",", ":")), chars


class StampingSimulator(SparkSimulator):
    def _plan(self, raw: str | bytes, record: RecordedRequest, injected: Any) -> Plan:
        plan = super()._plan(raw, record, injected)
        plan.frames = _stamped(plan.frames)
        return plan


def _serve_spark(
    conn: Connection, interval: float, backlog: int, stamped: bool, chars_per_frame: int
) -> None:
    async def main() -> None:
        kind = StampingSimulator if stamped else SparkSimulator
        simulator = kind(
            Credentials.demo(),
            SimulatorOptions(
                frame_interval=interval, chars_per_frame=chars_per_frame, max_recorded=1000
            ),
        )
        runner = web.AppRunner(simulator.app, access_log=None)
        await runner.setup()
        freeze_startup_heap()  # its collections' pauses would count against every path
        try:
            await web.TCPSite(runner, "127.0.0.1", 0, backlog=backlog).start()
            conn.send(f"ws://127.0.0.1:{runner.addresses[0][1]}")
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of the server process: all of it, its event loop's thread, and the
    process's user and system time (the socket calls are system time)."""

    total: float
    loop: float
    user: float
    system: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.total - other.total,
            self.loop - other.loop,
            self.user - other.user,
            self.system - other.system,
        )

    def line(self, deltas: int) -> str:
        return (
            f"{self.total:.2f} s for {deltas} deltas = {self.total / deltas * 1e6:.1f} µs/delta "
            f"(event loop thread {self.loop:.2f} s, other threads "
            f"{self.total - self.loop:.2f} s; user {self.user:.2f} s, system {self.system:.2f} s)"
        )


def _cpu() -> Cpu:
    """Called on the event loop's thread."""
    times = os.times()
    return Cpu(time.process_time(), time.thread_time(), times.user, times.system)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_gateway(
    conn: Connection, spark_url: str, directory: str, profile: str | None = None
) -> None:
    """Child process: the gateway; answers "cpu" (:class:`Cpu`) and "rss" until "stop".
    With ``profile``, the event loop's thread runs under cProfile from the first "cpu" to the
    second, and the statistics are written to that file (``python -m pstats`` reads it)."""

    async def main() -> None:
        credentials = Credentials.demo()
        url = f"sqlite+aiosqlite:///{directory}/gateway.sqlite3"
        settings = load_settings(
            None,
            spark={
                "app_id": credentials.app_id,
                "api_key": credentials.api_key,
                "api_secret": credentials.api_secret,
                "url": spark_url,
                "model": MODEL.name,
                "max_retries": 0,
                "first_frame_timeout": 120,
                "idle_timeout": 120,
            },
            telegram={"host": "127.0.0.1", "port": _free_port(), "shutdown_grace_seconds": 1},
            database={"url": url},
        )
        async with open_web_runtime(settings) as runtime:
            freeze_startup_heap()  # as python -m bot web does
            key = new_key()
            database = create_database(url)
            await database.api_keys.create("bench", key_hash(key))
            await database.dispose()
            conn.send((f"http://127.0.0.1:{runtime.port}", key))
            loop = asyncio.get_running_loop()
            profiler = cProfile.Profile() if profile is not None else None
            cpu_asked = 0
            while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
                gc.collect()
                if command == "cpu" and profiler is not None and profile is not None:
                    cpu_asked += 1
                    if cpu_asked == 1:
                        profiler.enable()
                    elif cpu_asked == 2:
                        profiler.disable()
                        profiler.dump_stats(profile)
                conn.send(_cpu() if command == "cpu" else _rss_bytes())

    asyncio.run(main())


def _latency_ms(text: str, arrived_ns: int, out: list[float]) -> int:
    """Record the latency of every stamp in ``text``; returns how many there were."""
    count = 0
    for part in text.split("<")[1:]:
        sent = int(part.split(">", 1)[0])
        out.append((arrived_ns - sent) / 1e6)
        count += 1
    return count


async def direct_phase(spark_url: str, streams: int, chars: int, stagger: float) -> list[float]:
    credentials = Credentials.demo()
    options = SparkOptions(
        app_id=credentials.app_id,
        api_key=credentials.api_key,
        api_secret=credentials.api_secret,
        model=MODEL,
        url=spark_url,
        timeouts=SparkTimeouts(connect=60, first_frame=120, idle=120, total=900),
        retry=RetryPolicy(max_attempts=1),
    )
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        client = SparkClient(session, options)

        async def one(index: int) -> None:
            question = [ChatMessage("user", f"d{index} [[long:{chars}]]")]
            async with aclosing(client.stream(question, f"direct{index}")) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        _latency_ms(event.text, time.monotonic_ns(), latencies)

        async with asyncio.TaskGroup() as group:
            for index in range(streams):
                group.create_task(one(index))
                await asyncio.sleep(stagger)
    return latencies


async def _sse(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    question: str,
    latencies: list[float] | None,
    ready: asyncio.Event | None = None,
    ready_after: int = 0,
) -> int:
    """One streamed request read as raw SSE; returns the deltas received."""
    body = {
        "model": MODEL.name,
        "stream": True,
        "messages": [{"role": "user", "content": question}],
    }
    deltas = 0
    async with session.post(
        base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        if response.status != 200:
            raise SystemExit(f"gateway answered {response.status}: {await response.text()}")
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            arrived = time.monotonic_ns()
            chunk = json.loads(line[6:])
            content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if content:
                deltas += _latency_ms(content, arrived, latencies) if latencies is not None else 1
                if ready is not None and deltas >= ready_after:
                    ready.set()
    return deltas


async def gateway_phase(
    base: str, key: str, streams: int, chars: int, stagger: float
) -> tuple[list[float], int]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        tasks = []
        for index in range(streams):
            tasks.append(
                asyncio.create_task(
                    _sse(session, base, key, f"g{index} [[long:{chars}]]", latencies)
                )
            )
            await asyncio.sleep(stagger)
        delivered = sum(await asyncio.gather(*tasks))
    return latencies, delivered


async def memory_phase(conn: Connection, base: str, key: str, streams: int, frames: int) -> int:
    """Extra gateway RSS with ``streams`` requests open mid-answer."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        await _sse(session, base, key, "warm-up", None)
        loop = asyncio.get_running_loop()
        conn.send("rss")
        baseline = await loop.run_in_executor(None, conn.recv)
        readies = [asyncio.Event() for _ in range(streams)]
        tasks = [
            asyncio.create_task(
                _sse(
                    session,
                    base,
                    key,
                    f"m{index} [[long:4000]] [[hang-after:{frames}]]",
                    None,
                    readies[index],
                    frames,
                )
            )
            for index in range(streams)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
            conn.send("rss")
            held = await loop.run_in_executor(None, conn.recv)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return int(held - baseline)


@contextlib.contextmanager
def _gateway(
    context: multiprocessing.context.SpawnContext, spark_url: str, profile: str | None = None
) -> Iterator[tuple[Connection, str, str]]:
    """A gateway process over ``spark_url`` with a database of its own; stopped (and its
    streams' ledger rows written) before its directory goes. ``profile``: see
    :func:`_serve_gateway`."""
    end, child = context.Pipe()
    with tempfile.TemporaryDirectory() as directory:
        process = context.Process(
            target=_serve_gateway, args=(child, spark_url, directory, profile)
        )
        process.start()
        try:
            base, key = end.recv()
            yield end, base, key
        finally:
            end.send("stop")
            process.join(timeout=30)


def _percentile(values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def machine_ready(streams: int) -> None:
    """Room for ``streams`` sockets on each side, a line on the machine and its load, and
    the clients' start-up heap out of their garbage collections (as the server's)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8 * streams)), hard))
    print(f"python {platform.python_version()}, aiohttp {aiohttp.__version__}, ", end="")
    print(f"{multiprocessing.cpu_count()} CPUs, {platform.machine()}, ", end="")
    print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    freeze_startup_heap()  # the clients' own collection pauses are not the server's latency


@contextlib.contextmanager
def spark_process(
    context: multiprocessing.context.SpawnContext,
    interval: float,
    backlog: int,
    *,
    stamped: bool = True,
    chars_per_frame: int = 8,
) -> Iterator[tuple[str, int]]:
    """The simulator (stamping its frames unless ``stamped`` is off) in a process of its
    own, for the block; yields its URL and the process id."""
    spark_end, spark_child = context.Pipe()
    spark = context.Process(
        target=_serve_spark,
        args=(spark_child, interval, backlog, stamped, chars_per_frame),
        daemon=True,
    )
    spark.start()
    try:
        yield spark_end.recv(), int(spark.pid or 0)
    finally:
        spark_end.send("stop")
        spark.join(timeout=15)


def print_latencies(rows: Sequence[tuple[str, Sequence[float]]], width: int) -> None:
    """A table of each path's deltas and their latency percentiles."""
    print()
    print(f"{'path':<{width}} {'deltas':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, values in rows:
        print(
            f"{name:<{width}} {len(values):>8} {_percentile(values, 50):>8.2f} "
            f"{_percentile(values, 95):>8.2f} {_percentile(values, 99):>8.2f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--chars", type=int, default=400, help="answer length ([[long:N]])")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between frames")
    parser.add_argument(
        "--stagger",
        type=float,
        default=None,
        help="seconds between starts (default: the interval over the streams, so frames "
        "arrive spread evenly rather than all at once)",
    )
    parser.add_argument("--hang-frames", type=int, default=5, help="frames before holding")
    parser.add_argument("--backlog", type=int, default=4096, help="simulator accept backlog")
    args = parser.parse_args(argv)
    stagger = args.stagger if args.stagger is not None else args.interval / args.streams

    machine_ready(args.streams)
    print(
        f"{args.streams} streams, {args.chars} characters in 8-character frames "
        f"every {args.interval:g} s"
    )

    context = multiprocessing.get_context("spawn")
    with spark_process(context, args.interval, args.backlog) as (spark_url, _):
        direct = asyncio.run(direct_phase(spark_url, args.streams, args.chars, stagger))
        with _gateway(context, spark_url) as (end, base, key):
            end.send("cpu")
            cpu_before = end.recv()
            through, delivered = asyncio.run(
                gateway_phase(base, key, args.streams, args.chars, stagger)
            )
            end.send("cpu")
            cpu = end.recv() - cpu_before
        # A fresh gateway, so the heap the load phase grew does not hide the streams' cost.
        with _gateway(context, spark_url) as (end, base, key):
            extra = asyncio.run(memory_phase(end, base, key, args.streams, args.hang_frames))
    print_latencies((("direct", direct), ("gateway", through)), 10)
    print(
        f"added by the gateway: p50 {_percentile(through, 50) - _percentile(direct, 50):.2f} ms,"
        f" p95 {_percentile(through, 95) - _percentile(direct, 95):.2f} ms"
    )
    print(f"gateway CPU: {cpu.line(delivered)}")
    print(
        f"gateway RSS with {args.streams} streams open: +{extra / 2**20:.1f} MiB = "
        f"{extra / args.streams / 1024:.1f} KiB/stream"
    )
    expected = args.streams * -(-args.chars // 8)
    if len(direct) != expected or delivered != expected:
        raise SystemExit(f"deltas lost: direct {len(direct)}, gateway {delivered} of {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
