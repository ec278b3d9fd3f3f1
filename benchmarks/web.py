"""Benchmark of the conversation API: latency added per delta, CPU per delta and RSS per open
stream, with N concurrent SSE conversation streams, beside the Spark client alone.

Run: ``.venv/bin/python benchmarks/web.py`` (``--help`` for options).

The same three processes and stamped frames as ``benchmarks/gateway.py`` (whose pieces it
uses): the simulator writes the moment it sends each frame into the frame's text, so the
reader of a ``delta`` event knows how long it took to arrive. Each stream is its own
conversation (one answer at a time per conversation), created before the clock starts; the
answers go through the whole conversation service: history read, question and answer stored,
checkpoints, ledger row.

The questions start spread over ``--spread`` seconds (2 by default: people do not all press
Enter in the same instant), and the answers are long enough (``--chars``, 400 by default:
ten seconds of frames) that every stream is open at once for most of the run; the benchmark
prints how many were open at once and for how long, and the latency per second of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gateway import (
    Cpu,
    _gateway,
    _percentile,
    direct_phase,
    machine_ready,
    print_latencies,
    spark_process,
)

Stamp = tuple[int, float]  # when Spark sent the frame (monotonic ns), its latency in ms
Span = tuple[int, int]  # when a stream was asked and when its last byte came (monotonic ns)


def _stamps(text: str, arrived_ns: int, out: list[Stamp]) -> int:
    """Record every stamp in ``text`` with its latency; returns how many there were."""
    count = 0
    for part in text.split("<")[1:]:
        sent = int(part.split(">", 1)[0])
        out.append((sent, (arrived_ns - sent) / 1e6))
        count += 1
    return count


async def _conversations(session: aiohttp.ClientSession, base: str, key: str, n: int) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"}
    numbers = []
    for _ in range(n):
        async with session.post(base + "/v1/conversations", json={}, headers=headers) as response:
            numbers.append(int((await response.json())["id"]))
    return numbers


async def _stream(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    number: int,
    question: str,
    latencies: list[Stamp] | None,
    ready: asyncio.Event | None = None,
    ready_after: int = 0,
    spans: list[Span] | None = None,
) -> int:
    """One conversation answer read as raw SSE; returns the deltas received."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    deltas = 0
    opened = time.monotonic_ns()
    async with session.post(
        f"{base}/v1/conversations/{number}/messages", json={"text": question}, headers=headers
    ) as response:
        if response.status != 200:
            raise SystemExit(f"server answered {response.status}: {await response.text()}")
        name = b""
        async for line in response.content:
            if line.startswith(b"event: "):
                name = line[7:].strip()
            elif line.startswith(b"data: ") and name == b"delta":
                arrived = time.monotonic_ns()
                text = json.loads(line[6:])["text"]
                deltas += _stamps(text, arrived, latencies) if latencies is not None else 1
                if ready is not None and deltas >= ready_after:
                    ready.set()
    if spans is not None:
        spans.append((opened, time.monotonic_ns()))
    return deltas


def all_open(spans: Sequence[Span]) -> tuple[int, float]:
    """The most streams open at once, and for how many seconds that many were open."""
    moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most, held, open_now, since = 0, 0, 0, 0
    for moment, step in moments:
        if open_now == most and most:
            held += moment - since
        open_now += step
        if open_now > most:
            most, held = open_now, 0
        since = moment
    return most, held / 1e9


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )


async def web_phase(
    conn: Connection, base: str, key: str, streams: int, chars: int, stagger: float
) -> tuple[list[Stamp], int, Cpu, int, list[Span]]:
    latencies: list[Stamp] = []
    spans: list[Span] = []
    async with _session() as session:
        numbers = await _conversations(session, base, key, streams)
        loop = asyncio.get_running_loop()
        conn.send("cpu")
        before = await loop.run_in_executor(None, conn.recv)
        started = time.monotonic_ns()
        tasks = []
        for index, number in enumerate(numbers):
            question = f"w{index} [[long:{chars}]]"
            stream = _stream(session, base, key, number, question, latencies, spans=spans)
            tasks.append(asyncio.create_task(stream))
            await asyncio.sleep(stagger)
        delivered = sum(await asyncio.gather(*tasks))
        conn.send("cpu")
        cpu = await loop.run_in_executor(None, conn.recv) - before
    return latencies, delivered, cpu, started, spans


async def memory_phase(conn: Connection, base: str, key: str, streams: int, frames: int) -> int:
    """Extra server RSS with ``streams`` conversation answers open mid-answer."""
    async with _session() as session:
        numbers = await _conversations(session, base, key, streams + 1)
        await _stream(session, base, key, numbers.pop(), "warm-up", None)
        loop = asyncio.get_running_loop()
        conn.send("rss")
        baseline = await loop.run_in_executor(None, conn.recv)
        readies = [asyncio.Event() for _ in numbers]
        tasks = [
            asyncio.create_task(
                _stream(
                    session,
                    base,
                    key,
                    number,
                    f"m{index} [[long:4000]] [[hang-after:{frames}]]",
                    None,
                    readies[index],
                    frames,
                )
            )
            for index, number in enumerate(numbers)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--chars", type=int, default=400, help="answer length ([[long:N]])")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between frames")
    parser.add_argument(
        "--spread", type=float, default=2.0, help="seconds over which the questions start"
    )
    parser.add_argument(
        "--stagger", type=float, default=None, help="seconds between starts (overrides --spread)"
    )
    parser.add_argument("--hang-frames", type=int, default=5, help="frames before holding")
    parser.add_argument("--backlog", type=int, default=4096, help="simulator accept backlog")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS phase")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the server's event loop into FILE"
    )
    args = parser.parse_args(argv)
    stagger = args.stagger if args.stagger is not None else args.spread / args.streams

    machine_ready(args.streams)
    print(
        f"{args.streams} conversation streams, {args.chars} characters in 8-character frames "
        f"every {args.interval:g} s, started {stagger * 1000:g} ms apart"
    )
    context = multiprocessing.get_context("spawn")
    with spark_process(context, args.interval, args.backlog) as (spark_url, _):
        direct = asyncio.run(direct_phase(spark_url, args.streams, args.chars, stagger))
        with _gateway(context, spark_url, args.profile) as (end, base, key):
            stamped, delivered, cpu, started, spans = asyncio.run(
                web_phase(end, base, key, args.streams, args.chars, stagger)
            )
        extra = 0
        if not args.no_memory:
            with _gateway(context, spark_url) as (end, base, key):
                extra = asyncio.run(memory_phase(end, base, key, args.streams, args.hang_frames))
    through = [latency for _, latency in stamped]
    most, held = all_open(spans)
    run = (max(end for _, end in spans) - min(start for start, _ in spans)) / 1e9
    print(f"streams open at once: {most} of {len(spans)}, for {held:.1f} s of the {run:.1f} s run")
    print_latencies((("direct", direct), ("conversation", through)), 13)
    print(
        f"added: p50 {_percentile(through, 50) - _percentile(direct, 50):.2f} ms,"
        f" p95 {_percentile(through, 95) - _percentile(direct, 95):.2f} ms"
    )
    # Where the added time falls: per second of the run, by when Spark sent the frame.
    print("conversation p95 by second since the first question (frames sent in that second):")
    seconds: dict[int, list[float]] = {}
    for sent, latency in stamped:
        seconds.setdefault(max(0, (sent - started) // 10**9), []).append(latency)
    for second, values in sorted(seconds.items()):
        print(
            f"  {second}-{second + 1} s: {len(values):>6} deltas, "
            f"p95 {_percentile(values, 95):.2f} ms"
        )
    late = [latency for sent, latency in stamped if sent - started >= 10**9]
    if late:
        print(
            f"after the first second: {len(late)} deltas, p50 {_percentile(late, 50):.2f} ms, "
            f"p95 {_percentile(late, 95):.2f} ms (added p95 "
            f"{_percentile(late, 95) - _percentile(direct, 95):.2f} ms)"
        )
    print(f"server CPU: {cpu.line(delivered)}")
    if not args.no_memory:
        print(
            f"server RSS with {args.streams} streams open: +{extra / 2**20:.1f} MiB = "
            f"{extra / args.streams / 1024:.1f} KiB/stream"
        )
    expected = args.streams * -(-args.chars // 8)
    if len(direct) != expected or delivered != expected:
        raise SystemExit(f"deltas lost: direct {len(direct)}, web {delivered} of {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
