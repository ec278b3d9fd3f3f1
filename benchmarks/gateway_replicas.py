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
import collections
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
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gateway import _free_port, _percentile, machine_ready, spark_process
from benchmarks.raw_http import RawConnection, encode_post
from bot.spark.simulator import Credentials
from bot.web.keys import new_key
from storage.database import create_database
from storage.migrate import upgrade
from storage.repositories.api_keys import key_hash

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
MODEL = "max"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_SECONDS = 60.0
KINDS = ("gateways", "simulator", "client", "postgres", "redis")


# -- CPU time from /proc ---------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_busy() -> float:
    """CPU seconds every core spent busy since boot (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() == name:
                    found.append(int(entry))
    return found


async def postgres_pids(admin: asyncpg.Connection, database: str) -> list[int]:
    """The server's processes working for this run: the backends of its database and the
    server's own (WAL writer, checkpointer...), not other databases' backends."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
        "AND (datname = $1 OR (datname IS NULL AND backend_type <> 'client backend'))",
        database,
    )
    return [int(row["pid"]) for row in rows]


async def sample_waits(admin: asyncpg.Connection, database: str, until: float) -> dict[str, float]:
    """How many of the database's backends are running a statement, on average, by what
    they wait for (``CPU``: nothing, they run), sampled every 50 ms until ``until``: a
    statement waiting on a lock or on the WAL flush is where replicas queue for one
    database."""
    seen: collections.Counter[str] = collections.Counter()
    samples = 0
    while time.monotonic() < until:
        rows = await admin.fetch(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid() AND state = 'active'",
            database,
        )
        samples += 1
        seen.update(
            f"{row['wait_event_type']}:{row['wait_event']}" if row["wait_event"] else "CPU"
            for row in rows
        )
        await asyncio.sleep(min(0.05, max(0.0, until - time.monotonic())))
    return {what: count / max(1, samples) for what, count in seen.most_common()}


@dataclass(slots=True)
class CpuSnapshot:
    per_kind: dict[str, float]
    busy: float
    at: float


def snapshot(pids: dict[str, list[int]]) -> CpuSnapshot:
    per_kind = {kind: sum(process_cpu(pid) for pid in found) for kind, found in pids.items()}
    return CpuSnapshot(per_kind, machine_busy(), time.monotonic())


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


@dataclass(slots=True)
class Tally:
    completed: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None

    def error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what


def _body(stream: bool, chars: int) -> bytes:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Hello [[long:{chars}]]"}],
        "stream": stream,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


class RawSender:
    """A worker's keep-alive connection to each replica, and its requests pre-encoded."""

    def __init__(self, ports: Sequence[int], key: str, body: bytes) -> None:
        self._ports = ports
        self._payloads = [
            encode_post(f"127.0.0.1:{port}", "/v1/chat/completions", _headers(key), body)
            for port in ports
        ]
        self._connections: list[RawConnection] = []

    async def open(self) -> None:
        self._connections = [await RawConnection.open("127.0.0.1", p) for p in self._ports]

    async def send(self, replica: int) -> tuple[int, bytes]:
        connection = self._connections[replica]
        if connection.closed:
            connection = await RawConnection.open("127.0.0.1", self._ports[replica])
            self._connections[replica] = connection
        return await connection.request(self._payloads[replica])

    async def close(self) -> None:
        for connection in self._connections:
            connection.close()


class AiohttpSender:
    """The same requests through one aiohttp client session (to measure what it costs)."""

    def __init__(
        self, session: aiohttp.ClientSession, ports: Sequence[int], key: str, body: bytes
    ) -> None:
        self._session = session
        self._urls = [f"http://127.0.0.1:{port}/v1/chat/completions" for port in ports]
        self._headers = _headers(key)
        self._body = body

    async def open(self) -> None:
        return None

    async def send(self, replica: int) -> tuple[int, bytes]:
        async with self._session.post(
            self._urls[replica], data=self._body, headers=self._headers
        ) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        return None


Sender = RawSender | AiohttpSender


async def _worker(
    sender: Sender,
    replicas: int,
    turns: Iterator[int],
    window: tuple[float, float],
    stream: bool,
    tally: Tally,
) -> None:
    """Requests one after another until the window ends, each to the balancer's next
    replica."""
    await sender.open()
    start, end = window
    clock = time.monotonic
    try:
        while (sent := clock()) < end:
            try:
                status, body = await sender.send(next(turns) % replicas)
            except (ConnectionError, ValueError, aiohttp.ClientError) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                continue
            done = clock()
            if status != 200 or (stream and b"data: [DONE]" not in body):
                tally.error(body[-300:].decode(errors="replace"))
            elif sent >= start and done <= end:
                tally.completed += 1
                tally.latencies.append(done - sent)
    finally:
        await sender.close()


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
            asyncio.create_task(_worker(sender, len(ports), turns, window, args.stream, tally))
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
