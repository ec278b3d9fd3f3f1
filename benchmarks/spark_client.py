"""Benchmark of the Spark client: frames/s, client CPU per frame, memory per open stream.

Run: ``.venv/bin/python benchmarks/spark_client.py`` (``--help`` for options).

The simulator runs in a child process (``multiprocessing``, spawn) so that this process's CPU
time is the client's alone: ``time.process_time()`` here never counts the server. Three phases:

1. ``parse_frame`` alone on a typical answer frame (µs per frame).
2. Throughput: for each N, N concurrent streams of ``[[long:CHARS]]`` answers with zero server
   pacing; frames/s and client CPU µs per frame (process time / frames).
3. Memory: N streams that stop mid-answer (``[[hang-after:K]]``: K frames, then silence) are
   held open together; the RSS growth over the idle baseline, divided by N, is the memory per
   open stream. The streams are then cancelled, which also checks that cancellation closes
   every socket promptly.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.spark.client import SparkClient, SparkOptions, SparkTimeouts
from bot.spark.models import get_model
from bot.spark.protocol import parse_frame
from bot.spark.retry import RetryPolicy
from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from bot.spark.types import ChatMessage, TextDelta

MODEL = get_model("max")


def _serve(conn: Connection, chars_per_frame: int, backlog: int) -> None:
    """Child process: run a simulator until the parent says stop.

    The simulator's app is served on a site with a deep accept backlog: with aiohttp's default
    of 128, a thousand simultaneous connects lose SYNs and wait out the kernel's 1 s
    retransmit, which would measure the listener rather than the client.
    """

    async def main() -> None:
        simulator = SparkSimulator(
            Credentials.demo(), SimulatorOptions(chars_per_frame=chars_per_frame)
        )
        runner = web.AppRunner(simulator.app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=backlog)
            await site.start()
            conn.send(f"ws://127.0.0.1:{runner.addresses[0][1]}")
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def bench_parse(iterations: int) -> float:
    """CPU µs per parse_frame call on a middle frame of a streamed answer (best of 5)."""
    frame = json.dumps(
        {
            "header": {
                "code": 0,
                "message": "Success",
                "sid": "cht000cb087@dx18793cd421fb894542",
                "status": 1,
            },
            "payload": {
                "choices": {
                    "status": 1,
                    "seq": 42,
                    "text": [{"content": "星火认知大模型", "role": "assistant", "index": 0}],
                }
            },
        },
        ensure_ascii=False,
    )
    for _ in range(1000):
        parse_frame(frame)
    # Best of five: the fastest run is the one least disturbed by other work on the machine.
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(iterations):
            parse_frame(frame)
        best = min(best, time.process_time() - start)
    return best / iterations * 1e6


@dataclass
class Throughput:
    streams: int
    frames: int
    chars: int
    seconds: float
    cpu_seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds

    @property
    def cpu_us_per_frame(self) -> float:
        return self.cpu_seconds / self.frames * 1e6


def _client(session: aiohttp.ClientSession, base_url: str) -> SparkClient:
    credentials = Credentials.demo()
    options = SparkOptions(
        app_id=credentials.app_id,
        api_key=credentials.api_key,
        api_secret=credentials.api_secret,
        model=MODEL,
        url=base_url,
        timeouts=SparkTimeouts(connect=60, first_frame=60, idle=60, total=600),
        retry=RetryPolicy(max_attempts=1),
    )
    return SparkClient(session, options)


async def _consume(client: SparkClient, question: str, counts: list[int], uid: str) -> None:
    """Stream one answer; counts += [text frames, characters]."""
    async with aclosing(client.stream([ChatMessage("user", question)], uid)) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                counts[0] += 1
                counts[1] += len(event.text)


async def bench_throughput(base_url: str, streams: int, chars: int) -> Throughput:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = _client(session, base_url)
        counts = [0, 0]
        cpu = time.process_time()
        wall = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for index in range(streams):
                group.create_task(
                    _consume(client, f"q{index} [[long:{chars}]]", counts, f"bench{index}")
                )
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return Throughput(streams, counts[0], counts[1], wall, cpu)


async def _hold_open(
    client: SparkClient, question: str, ready: asyncio.Event, frames: int, uid: str
) -> None:
    # One uid per stream: Spark answers one question per uid at a time.
    seen = 0
    async with aclosing(client.stream([ChatMessage("user", question)], uid)) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                seen += 1
                if seen == frames:
                    ready.set()


async def bench_memory(base_url: str, streams: int, frames: int) -> tuple[int, float]:
    """(extra RSS bytes with every stream open mid-answer, seconds to close them all)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = _client(session, base_url)
        # One stream first, so imports and lazily built machinery are not counted.
        await _consume(client, "warm-up", [0, 0], "warm-up")
        gc.collect()
        baseline = _rss_bytes()
        readies = [asyncio.Event() for _ in range(streams)]
        question = "[[long:4000]] [[hang-after:{frames}]] m{index}"
        tasks = [
            asyncio.create_task(
                _hold_open(
                    client,
                    question.format(frames=frames, index=index),
                    readies[index],
                    frames,
                    f"bench{index}",
                )
            )
            for index in range(streams)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=60)
            gc.collect()
            extra = _rss_bytes() - baseline
        finally:
            started = time.perf_counter()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            closing = time.perf_counter() - started
    return extra, closing


def _memory_child(conn: Connection, base_url: str, streams: int, frames: int) -> None:
    """Child process: one memory measurement in a fresh heap (earlier phases would otherwise
    have grown the heap already and hide the streams' cost)."""
    conn.send(asyncio.run(bench_memory(base_url, streams, frames)))


async def run_throughput(base_url: str, counts: Sequence[int], chars: int) -> None:
    # Warm up imports, the session machinery and the allocator before measuring.
    await bench_throughput(base_url, 20, 400)
    print(f"{'N':>6} {'frames':>9} {'wall s':>8} {'frames/s':>10} {'CPU µs/frame':>13}")
    for streams in counts:
        result = await bench_throughput(base_url, streams, chars)
        print(
            f"{streams:>6} {result.frames:>9} {result.seconds:>8.2f} "
            f"{result.frames_per_second:>10.0f} {result.cpu_us_per_frame:>13.1f}"
        )
        expected = streams * chars
        if result.chars != expected:
            raise SystemExit(f"streams lost text: {result.chars} of {expected} characters")


def run_memory(
    context: multiprocessing.context.SpawnContext,
    base_url: str,
    counts: Sequence[int],
    frames: int,
) -> None:
    print(f"{'N open':>6} {'extra RSS MiB':>14} {'KiB/stream':>11} {'cancel all s':>13}")
    for streams in counts:
        parent, child = context.Pipe()
        process = context.Process(target=_memory_child, args=(child, base_url, streams, frames))
        process.start()
        extra, closing = parent.recv()
        process.join()
        print(
            f"{streams:>6} {extra / 2**20:>14.1f} {extra / streams / 1024:>11.1f} {closing:>13.3f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--chars", type=int, default=4000, help="answer length ([[long:N]])")
    parser.add_argument("--chars-per-frame", type=int, default=8)
    parser.add_argument("--hang-frames", type=int, default=20, help="frames before holding")
    parser.add_argument("--parse-iterations", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=4096, help="simulator accept backlog")
    args = parser.parse_args(argv)

    # Each stream holds one socket here and one in the simulator process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * max(args.streams) + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    print(f"python {platform.python_version()}, aiohttp {aiohttp.__version__}, ", end="")
    print(f"{multiprocessing.cpu_count()} CPUs, {platform.machine()}, ", end="")
    # Other work on the machine inflates CPU per frame (shared caches, frequency).
    print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"parse_frame alone: {bench_parse(args.parse_iterations):.2f} µs/frame")
    print()

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(
        target=_serve, args=(child, args.chars_per_frame, args.backlog), daemon=True
    )
    server.start()
    try:
        base_url = parent.recv()
        asyncio.run(run_throughput(base_url, args.streams, args.chars))
        print()
        run_memory(context, base_url, args.streams, args.hang_frames)
    finally:
        parent.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
            server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
