"""Benchmark of the HTTP API's saturation throughput with 1 and 2 gateway replicas on one
PostgreSQL database and one Redis, and where the machine's CPU goes per request.

Run: ``.venv/bin/python benchmarks/gateway_replicas.py`` (``--help`` for options). Needs
PostgreSQL on 127.0.0.1:5432 (user postgres) and Redis on 127.0.0.1:6379.

Each run gets a database of its own (created, migrated, dropped at the end) and a Redis prefix
of its own (its keys deleted at the end), and API keys with a daily token quota and a rate, so
every request goes through the shared counts replicas keep in Redis. The Spark simulator runs
in a process of its own, unpaced, with short answers. Then, for each replica count in turn
(``--replicas 1 2``, ``--rounds`` times, alternating), that many ``python -m bot web``
processes are started the way an operator starts them (``DATABASE_URL``, ``REDIS_URL``, a
``PORT`` each), and this process drives a closed loop: ``--concurrency`` workers, each sending
``POST /v1/chat/completions`` one after another over keep-alive connections, round-robin over
the replicas like a balancer. Requests completed within the measured window (after a warm-up)
are counted; CPU time is read from ``/proc`` for every process kind over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.closed_loop import AiohttpSender, RawSender, Sender, Tally, worker
from benchmarks.cpu_meter import CpuSnapshot, pids_named, postgres_pids, sample_waits, snapshot
from benchmarks.gateway import _free_port, _percentile, machine_ready, spark_process
from bot.spark.simulator import Credentials
from bot.web.keys import new_key
from storage.database import create_database
from storage.migrate import upgrade
from storage.repositories.api_keys import key_hash

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
MODEL = "max"
READY_SECONDS = 60.0
KINDS = ("gateways", "simulator", "client", "postgres", "redis")


# -- the gateways ----------------------------------------------------------------------------


@dataclass(slots=True)
class Gateway:
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def _gateway_env(spark_url: str, database_url: str, prefix: str, port: int) -> dict[str, str]:
    credentials = Credentials.demo()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only when HOME is unset
        "PYTHONPATH": str(ROOT),
        "SPARK_APP_ID": credentials.app_id,
        "SPARK_API_KEY": credentials.api_key,
        "SPARK_API_SECRET": credentials.api_secret,
        "SPARK_URL": spark_url,
        "SPARK_MODEL": MODEL,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS,
        "REDIS_PREFIX": prefix,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHUTDOWN_GRACE_SECONDS": "1",
    }


def _wait_ready(gateway: Gateway) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise SystemExit(f"gateway exited: {gateway.log.read_text()[-2000:]}")
        url = f"http://127.0.0.1:{gateway.port}/healthz"
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"gateway on {gateway.port} not ready: {gateway.log.read_text()[-2000:]}")


@contextlib.contextmanager
def gateways(
    count: int, spark_url: str, database_url: str, prefix: str, logs: Path, profile: str | None
) -> Iterator[list[Gateway]]:
    """``count`` ``python -m bot web`` processes (under cProfile with ``profile``, the first
    one's statistics written there), stopped with SIGTERM at the end."""
    started: list[Gateway] = []
    try:
        for index in range(count):
            port = _free_port()
            log = logs / f"gateway-{count}-{index}-{port}.log"
            command = [sys.executable, "-m", "bot", "web"]
            if profile is not None and index == 0:
                command = [sys.executable, str(ROOT / "benchmarks" / "profiled_web.py"), profile]
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    command,
                    cwd=ROOT,
                    env=_gateway_env(spark_url, database_url, prefix, port),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(Gateway(port, process, log))
        for gateway in started:
            _wait_ready(gateway)
        yield started
    finally:
        for gateway in started:
            gateway.process.send_signal(signal.SIGTERM)
        for gateway in started:
            try:
                gateway.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gateway.process.kill()
                gateway.process.wait()


# -- the load --------------------------------------------------------------------------------


@dataclass(slots=True)
class PhaseResult:
    replicas: int
    load: float
    window: float
    completed: int
    errors: int
    latencies: list[float]
    cpu: dict[str, float]
    busy: float
    waits: dict[str, float]
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.completed / self.window


def _body(stream: bool, chars: int) -> bytes:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Hello [[long:{chars}]]"}],
        "stream": stream,
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def run_phase(
    ports: Sequence[int],
    keys: Sequence[str],
    pids: dict[str, list[int]],
    admin: asyncpg.Connection,
    database: str,
    args: argparse.Namespace,
) -> tuple[Tally, CpuSnapshot, CpuSnapshot, dict[str, float]]:
    body = _body(args.stream, args.chars)
    begin = time.monotonic()
    window = (begin + args.warmup, begin + args.warmup + args.duration)
    tally = Tally()
    turns = itertools.count()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        senders: list[Sender] = [
            AiohttpSender(session, ports, keys[i % len(keys)], body)
            if args.client == "aiohttp"
            else RawSender(ports, keys[i % len(keys)], body)
            for i in range(args.concurrency)
        ]
        workers = [
            asyncio.create_task(worker(sender, len(ports), turns, window, args.stream, tally))
            for sender in senders
        ]
        await asyncio.sleep(max(0.0, window[0] - time.monotonic() - 0.5))
        pids = {**pids, "postgres": await postgres_pids(admin, database)}  # pooled by now
        await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
        first = snapshot(pids)
        waits = await sample_waits(admin, database, window[1])
        last = snapshot(pids)
        await asyncio.gather(*workers)
    return tally, first, last, waits


# -- the run ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_database(admin: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"bench_replicas_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _create_keys(url: str, count: int) -> list[str]:
    await upgrade(url)
    database = create_database(url)
    keys = []
    try:
        for index in range(count):
            key = new_key()
            # A quota and a rate every request is checked against, far above what is used.
            await database.api_keys.create(
                f"bench-{index}",
                key_hash(key),
                daily_tokens=2_000_000_000,
                rate_per_minute=2_000_000_000,
            )
            keys.append(key)
    finally:
        await database.dispose()
    return keys


def _order(replicas: Sequence[int], rounds: int) -> list[int]:
    return [count for _ in range(rounds) for count in replicas]


async def run(args: argparse.Namespace, spark_url: str, spark_pid: int) -> list[PhaseResult]:
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    redis = Redis.from_url(REDIS)
    prefix = f"bench-replicas-{secrets.token_hex(4)}:"
    results: list[PhaseResult] = []
    try:
        async with fresh_database(admin) as name:
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            keys = await _create_keys(url, args.keys)
            redis_pids = pids_named("redis-server")
            with tempfile.TemporaryDirectory() as logs:
                for number, count in enumerate(_order(args.replicas, args.rounds)):
                    load = os.getloadavg()[0]
                    profile = f"{args.profile}.{number}-{count}" if args.profile else None
                    with gateways(count, spark_url, url, prefix, Path(logs), profile) as started:
                        pids = {
                            "gateways": [gateway.process.pid for gateway in started],
                            "simulator": [spark_pid],
                            "client": [os.getpid()],
                            "redis": redis_pids,
                        }
                        ports = [gateway.port for gateway in started]
                        tally, first, last, waits = await run_phase(
                            ports, keys, pids, admin, name, args
                        )
                    result = PhaseResult(
                        replicas=count,
                        load=load,
                        window=last.at - first.at,
                        completed=tally.completed,
                        errors=tally.errors,
                        latencies=tally.latencies,
                        cpu={k: last.per_kind[k] - first.per_kind[k] for k in last.per_kind},
                        busy=last.busy - first.busy,
                        waits=waits,
                        first_error=tally.first_error,
                    )
                    results.append(result)
                    print_phase(result)
    finally:
        keys_left = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys_left:
            await redis.delete(*keys_left)
        await redis.aclose()
        await admin.close()
    return results


def print_phase(result: PhaseResult) -> None:
    """One line as soon as a phase ends, so a long run shows its progress."""
    print(
        f"  {result.replicas} replica(s): {result.rate:.0f} req/s, errors {result.errors}, "
        f"load {result.load:.2f}"
        + (f", first error: {result.first_error}" if result.errors else ""),
        flush=True,
    )
    waits = ", ".join(f"{what} {count:.2f}" for what, count in result.waits.items())
    print(f"    PostgreSQL statements running: {sum(result.waits.values()):.2f} ({waits})")


def print_table(results: Sequence[PhaseResult]) -> None:
    ones = [result.rate for result in results if result.replicas == 1]
    base = sum(ones) / len(ones) if ones else None
    per = " ".join(f"{kind[:9]:>9}" for kind in (*KINDS, "other"))
    print()
    print(
        "CPU per request in ms, by process kind; other = the machine's busy time less these; "
        "gw cores, busy: cores the gateways, the whole machine kept busy"
    )
    print(
        f"{'replicas':>8} {'load':>5} {'req/s':>7} {'×1':>5} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'errors':>6} {per} {'gw cores':>8} {'busy':>5}"
    )
    last_one: float | None = None
    for result in results:
        if result.replicas == 1:
            last_one = result.rate
        # Against the run of 1 replica just before it, so both saw about the same machine.
        reference = last_one or base
        ratio = f"{result.rate / reference:.2f}" if reference else "–"
        ours = sum(result.cpu.values())
        spent = [result.cpu.get(kind, 0.0) for kind in KINDS] + [result.busy - ours]
        cpu = " ".join(f"{seconds / max(1, result.completed) * 1e3:>9.3f}" for seconds in spent)
        latencies = result.latencies or [0.0]
        print(
            f"{result.replicas:>8} {result.load:>5.2f} {result.rate:>7.0f} {ratio:>5} "
            f"{_percentile(latencies, 50) * 1e3:>7.1f} {_percentile(latencies, 95) * 1e3:>7.1f} "
            f"{result.errors:>6} {cpu} {result.cpu.get('gateways', 0.0) / result.window:>8.2f} "
            f"{result.busy / result.window:>5.2f}"
        )
    ceiling(results)
    for count in sorted({result.replicas for result in results}):
        rates = [result.rate for result in results if result.replicas == count]
        mean = sum(rates) / len(rates)
        ratio = f", {mean / base:.2f}× 1 replica" if base else ""
        print(f"{count} replica(s): mean {mean:.0f} req/s over {len(rates)} run(s){ratio}")


def ceiling(results: Sequence[PhaseResult]) -> None:
    """What the CPU measured per request allows on this machine's cores, were no other job
    running: one gateway can use one core at most, and every process shares the cores."""
    done = sum(result.completed for result in results)
    if not done:
        return
    gateway = sum(result.cpu.get("gateways", 0.0) for result in results) / done
    rest = sum(sum(result.cpu.values()) for result in results) / done - gateway
    cores = multiprocessing.cpu_count()
    one = min(1 / gateway, cores / (gateway + rest))
    two = min(2 / gateway, cores / (gateway + rest))
    print(
        f"ceiling on {cores} idle cores at {gateway * 1e3:.2f} ms gateway + {rest * 1e3:.2f} ms "
        f"other processes' CPU per request: 1 replica {one:.0f} req/s, 2 replicas {two:.0f} "
        f"req/s = {two / one:.2f}×"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2, help="times each count is run")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--stream", action="store_true", help="stream: true requests")
    parser.add_argument("--chars", type=int, default=40, help="answer length ([[long:N]])")
    parser.add_argument("--keys", type=int, default=8, help="API keys the workers share")
    parser.add_argument(
        "--client", choices=("raw", "aiohttp"), default="raw", help="the load's HTTP client"
    )
    parser.add_argument(
        "--profile", default=None, help="cProfile the first gateway of each phase into PATH.N"
    )
    args = parser.parse_args(argv)

    machine_ready(args.concurrency * max(args.replicas))
    mode = "streamed" if args.stream else "non-streaming"
    print(
        f"{args.concurrency} connections, {mode} answers of {args.chars} characters, "
        f"{args.keys} keys, {args.warmup:g} s warm-up, {args.duration:g} s measured, "
        f"{args.client} client"
    )
    context = multiprocessing.get_context("spawn")
    with spark_process(context, 0.0, 4096, stamped=False, chars_per_frame=64) as (url, pid):
        results = asyncio.run(run(args, url, pid))
    print_table(results)
    if any(result.errors for result in results):
        raise SystemExit("some requests failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
