"""Load benchmark of the Telegram front end: N people asking at once.

Run: ``.venv/bin/python benchmarks/load.py`` (``--sizes 1 10 100`` for a shorter list,
``--policies ours`` to leave out the peers, ``--help`` for the rest). Prints a table per
policy and writes every figure as JSON (``--json``). ``--replicas 1 2 3`` runs the bot as
that many processes sharing PostgreSQL (``--postgres``) and Redis (``--redis``), the
questions posted round-robin to their webhooks as a load balancer would; CPU and RSS are then
the sum over the processes.

Three processes per size and policy:

- the Spark simulator (spawned child) with a fixed pacing: answers of 800–1600 characters
  (``[[long:N]]``), 20 characters a frame every 0.1 s (200 characters a second). It notes
  when each request arrived and when it sent each answer's first and last frame
  (``time.monotonic``, one clock for every process on Linux);
- the bot as its own process in webhook mode (``benchmarks/load_bot.py``: the real
  :func:`bot.telegram.app.run` over SQLite, with an event-loop lag probe beside it), or one of
  the two peer policies of :mod:`benchmarks.load_peers` on the same webhook;
- this one: the Bot API fake of the tests with its default limits (which answers 429 and
  records violations), the users (70 % private chats, 30 % groups asking with ``/ask``), who
  post their questions to the webhook spread evenly over 2 s (as Telegram delivers: at most
  the webhook's ``max_connections`` at once, 40 unless setWebhook asked for more, over
  connections kept open), and the measurements, all from the fake's record of calls.

Figures per N (p50 / p95 unless said): 429s, the fake's violations, answers whose final
visible text differs from Spark's, first feedback (the first draft, chat action or message)
and first visible text after the question, by chat kind; question → Spark request; Spark's
first frame → first visible text; Spark's last frame → final text (the call that made the
visible text whole), by chat kind; intermediate visible updates per answer (p50); Bot API
calls per answer by method; bot CPU per answer (its CPU time during the burst / N); peak RSS;
the event loop's lag during the burst (p50 / p99 / max).

Beside them, the lower bound of the timing figures under the configured global budget
(``--budget``, the calls a second the bot allows itself): the same ready moments (the
question's arrival for first feedback, Spark's first frame for first text, Spark's last frame
for the final text) served in the order they became ready at that rate, the calls that count
toward it only; and our p95 as a multiple of the bound's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.spark.simulator import Credentials, SimulatorOptions, SparkSimulator
from bot.spark.simulator_content import long_answer
from bot.spark.simulator_streams import Plan, RecordedRequest
from tests.support.fake_telegram import FakeTelegram, RecordedCall
from tests.support.telegram_driver import TelegramDriver, TgChat, TgUser

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("ours", "ptb-limiter", "every-frame")
SECRET = "load-bench-secret"
TAG = re.compile(r"\bq(\d+)\b")
SHOWN_TEXT = {"sendMessage", "editMessageText", "sendMessageDraft"}
FEEDBACK = {"sendMessage", "sendMessageDraft", "sendChatAction"}


# -- the simulator process -------------------------------------------------------------------


class TimedSimulator(SparkSimulator):
    """The simulator, noting when each question's request came and its frames went out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timings: dict[int, dict[str, float]] = {}

    def _plan(self, raw: str | bytes, record: RecordedRequest, injected: Any) -> Plan:
        arrived = time.monotonic()
        plan = super()._plan(raw, record, injected)
        text = raw.decode() if isinstance(raw, bytes) else raw
        match = TAG.search(text)
        if match is not None:
            entry = self.timings[int(match.group(1))] = {"request": arrived}
            plan.frames = _timed(plan.frames, entry)
        return plan


def _timed(
    frames: Iterator[tuple[str, int]], entry: dict[str, float]
) -> Iterator[tuple[str, int]]:
    # The stream asks for the next frame right before it sends it.
    for item in frames:
        now = time.monotonic()
        entry.setdefault("first", now)
        entry["last"] = now
        yield item


def _simulator_main(
    conn: Connection, frame_interval: float, chars_per_frame: int, first_frame_delay: float
) -> None:
    async def serve() -> None:
        options = SimulatorOptions(
            frame_interval=frame_interval,
            chars_per_frame=chars_per_frame,
            first_frame_delay=first_frame_delay,
            max_recorded=100,
        )
        simulator = TimedSimulator(Credentials.demo(), options)
        async with simulator:
            conn.send(simulator.base_url)
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                if command == "timings":
                    conn.send(simulator.timings)
                else:
                    return

    asyncio.run(serve())


# -- the bot process -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- one run ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Asker:
    index: int
    chat_id: int
    group: bool
    length: int
    expected: str
    chat: TgChat
    user: TgUser
    sent_at: float = 0.0


@dataclass(slots=True)
class RunResult:
    n: int
    policy: str
    replicas: int
    load_average: tuple[float, float]
    calls_429: int
    violations: int
    differing: int
    figures: dict[str, float | None] = field(default_factory=dict)
    calls_per_answer: dict[str, float] = field(default_factory=dict)
    bounds: dict[str, float | None] = field(default_factory=dict)


async def run_once(
    n: int, policy: str, replicas: int, args: argparse.Namespace, workdir: Path
) -> RunResult:
    load_before = os.getloadavg()[0]
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    simulator = context.Process(
        target=_simulator_main,
        args=(
            child,
            args.chars_per_frame / args.chars_per_second,
            args.chars_per_frame,
            args.first_frame_delay,
        ),
        daemon=True,
    )
    simulator.start()
    spark_url = parent.recv()
    credentials = Credentials.demo()
    ports = [_free_port() for _ in range(replicas)]
    name = f"bot-{policy}-{n}" + (f"-x{replicas}" if replicas > 1 else "")
    redis_prefix = f"loadbench-{secrets.token_hex(4)}:"
    async with FakeTelegram() as fake:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": fake.token,
            "TELEGRAM_API_BASE_URL": fake.root_url,
            "WEBHOOK_URL": f"https://127.0.0.1:{ports[0]}/tg",
            "WEBHOOK_SECRET": SECRET,
            "HOST": "127.0.0.1",
            "SPARK_URL": spark_url,
            "SPARK_APP_ID": credentials.app_id,
            "SPARK_API_KEY": credentials.api_key,
            "SPARK_API_SECRET": credentials.api_secret,
            "SPARK_MAX_RETRIES": "0",
            "DATABASE_URL": await _database_url(args, workdir, name),
            "LOG_LEVEL": "WARNING",
            **dict(item.split("=", 1) for item in args.bot_env),
        }
        if replicas > 1:
            env.update(REDIS_URL=args.redis, REDIS_PREFIX=redis_prefix)
        outs = [workdir / f"{name}-{index}.json" for index in range(replicas)]
        with contextlib.ExitStack() as logs:
            bots: list[subprocess.Popen[bytes]] = []
            for index, port in enumerate(ports):
                log = logs.enter_context((workdir / f"{name}-{index}.log").open("wb"))
                own = {**env, "PORT": str(port), "LOAD_BENCH_OUT": str(outs[index])}
                if args.profile:
                    own["LOAD_BENCH_PROFILE"] = str(workdir / f"{name}-{index}.prof")
                bots.append(
                    subprocess.Popen(  # noqa: S603, ASYNC220 - our own script; reaped below
                        [sys.executable, str(ROOT / "benchmarks" / "load_bot.py"), policy],
                        cwd=workdir,
                        env=own,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                    )
                )
            try:
                await fake.wait_for_call("setWebhook", count=replicas, timeout=60)
                await asyncio.sleep(0.5)  # setWebhook is the last step before serving
                askers = _askers(n, fake, args)
                started = len(fake.calls)
                cpu_before = sum(_cpu_seconds(bot.pid) for bot in bots)
                own_cpu_before = time.process_time()
                burst_start = time.monotonic()
                await _ask_all(askers, fake, ports, args.spread)
                burst_end = await _wait_answers(askers, fake, args.deadline + 0.1 * n)
                cpu = sum(_cpu_seconds(bot.pid) for bot in bots) - cpu_before
                own_cpu = time.process_time() - own_cpu_before
                await asyncio.sleep(1.0)  # trailing calls (a last edit) are counted too
                rss = sum(_peak_rss_mb(bot.pid) for bot in bots)
            finally:
                for bot in bots:
                    bot.terminate()
                for bot in bots:
                    await asyncio.get_running_loop().run_in_executor(None, bot.wait, 30)
        if replicas > 1:
            await _forget_redis(args.redis, redis_prefix)
        parent.send("timings")
        timings: dict[int, dict[str, float]] = parent.recv()
        parent.send("stop")
        simulator.join(10)
        calls = fake.calls[started:]
        lags = [
            lag
            for out in outs
            if out.exists()
            for at, lag in json.loads(out.read_text())["lag"]
            if burst_start <= at <= burst_end
        ]
        result = RunResult(
            n=n,
            policy=policy,
            replicas=replicas,
            load_average=(load_before, os.getloadavg()[0]),
            calls_429=sum(1 for call in calls if call.status == 429),
            violations=len(fake.violations),
            differing=sum(
                1 for a in askers if "\n".join(fake.visible_texts(a.chat_id)) != a.expected
            ),
        )
        _measure(result, askers, calls, timings, args)
        result.figures["cpu_ms_per_answer"] = cpu / n * 1000
        # This process (the fake and the users) must not be what everything waits for.
        result.figures["driver_cpu_share"] = own_cpu / max(burst_end - burst_start, 1e-9)
        result.figures["burst_seconds"] = burst_end - burst_start
        result.figures["peak_rss_mb"] = rss
        result.figures["lag_p50"] = _pct(lags, 50)
        result.figures["lag_p99"] = _pct(lags, 99)
        result.figures["lag_max"] = max(lags) if lags else None
        return result


async def _forget_redis(url: str, prefix: str) -> None:
    """Delete a run's keys from Redis."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _database_url(args: argparse.Namespace, workdir: Path, name: str) -> str:
    """A fresh database per run: an SQLite file, or a PostgreSQL database made anew."""
    if not args.postgres:
        return f"sqlite+aiosqlite:///{workdir / f'{name}.sqlite3'}"
    database = f"loadbench_{name.replace('-', '_')}"
    engine = create_async_engine(f"{args.postgres}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}"'))
            await connection.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        await engine.dispose()
    return f"{args.postgres}/{database}"


def _askers(n: int, fake: FakeTelegram, args: argparse.Namespace) -> list[Asker]:
    rng = random.Random(args.seed + n)
    groups = set(rng.sample(range(n), round(n * args.group_share)))
    driver = TelegramDriver(fake)
    askers: list[Asker] = []
    for index in range(n):
        length = rng.randint(args.min_chars, args.max_chars)
        user = driver.user(first_name=f"user{index}")
        chat = driver.group(f"group {index}") if index in groups else driver.private_chat(user)
        askers.append(
            Asker(index, chat.id, index in groups, length, long_answer(length), chat, user)
        )
    return askers


async def _ask_all(
    askers: Sequence[Asker], fake: FakeTelegram, ports: Sequence[int], spread: float
) -> None:
    """Every asker's question, posted to the webhooks in turn (a load balancer's round-robin),
    spread evenly over ``spread`` seconds."""
    driver = TelegramDriver(fake)
    urls = [f"http://127.0.0.1:{port}/tg" for port in ports]
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    update_ids = itertools.count(1)
    start = time.monotonic()
    # As Telegram delivers: at most the webhook's max_connections updates at once, over
    # connections kept open (40 unless the bot's setWebhook asked for another number).
    connections = int(fake.state.webhook["max_connections"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def ask(asker: Asker, at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            question = f"q{asker.index} [[long:{asker.length}]]"
            if asker.group:
                question = f"/ask {question}"
            payload = await driver.send_text(asker.chat, asker.user, question)
            asker.sent_at = time.monotonic()
            update = {"update_id": next(update_ids), "message": payload}
            url = urls[asker.index % len(urls)]
            async with session.post(url, json=update, headers=headers) as response:
                response.raise_for_status()

        step = spread / max(1, len(askers))
        await asyncio.gather(*(ask(a, i * step) for i, a in enumerate(askers)))


async def _wait_answers(askers: Sequence[Asker], fake: FakeTelegram, deadline: float) -> float:
    """Until every chat shows its whole answer (or the deadline); returns when."""
    give_up = time.monotonic() + deadline
    pending = list(askers)
    while pending and time.monotonic() < give_up:
        pending = [a for a in pending if "\n".join(fake.visible_texts(a.chat_id)) != a.expected]
        await asyncio.sleep(0.25)
    return time.monotonic()


# -- figures ---------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _served(ready: Sequence[float], rate: float) -> list[float]:
    """How long each item waits when served at ``rate`` a second in the order it is ready."""
    waits: list[float] = []
    free = float("-inf")
    for at in sorted(ready):
        start = max(at, free)
        waits.append(start - at)
        free = start + 1.0 / rate
    return waits


def _measure(
    result: RunResult,
    askers: Sequence[Asker],
    calls: Sequence[RecordedCall],
    timings: dict[int, dict[str, float]],
    args: argparse.Namespace,
) -> None:
    by_chat: dict[int, list[RecordedCall]] = defaultdict(list)
    methods: Counter[str] = Counter()
    for call in calls:
        methods[call.method] += 1
        if call.ok and call.params.get("chat_id") not in (None, ""):
            by_chat[int(call.params["chat_id"])].append(call)
    result.calls_per_answer = {m: count / len(askers) for m, count in sorted(methods.items())}
    series: dict[str, list[float]] = defaultdict(list)
    ready: dict[str, list[float]] = defaultdict(list)
    for asker in askers:
        kind = "group" if asker.group else "private"
        mine = [c for c in by_chat[asker.chat_id] if c.at >= asker.sent_at]
        spark = timings.get(asker.index, {})
        feedback = next((c.at for c in mine if c.method in FEEDBACK), None)
        shown = [c for c in mine if c.method in SHOWN_TEXT and str(c.params.get("text") or "")]
        if feedback is not None:
            series[f"first_feedback_{kind}"].append(feedback - asker.sent_at)
            series["first_feedback"].append(feedback - asker.sent_at)
        if shown:
            series[f"first_text_{kind}"].append(shown[0].at - asker.sent_at)
            series["first_text"].append(shown[0].at - asker.sent_at)
            series["intermediate_updates"].append(len(shown) - 1)
        if "request" in spark:
            series["question_to_spark"].append(spark["request"] - asker.sent_at)
        if "first" in spark and shown:
            series["spark_first_to_text"].append(shown[0].at - spark["first"])
        finals = [c for c in shown if c.method != "sendMessageDraft"]
        if "last" in spark and finals:
            series[f"final_{kind}"].append(finals[-1].at - spark["last"])
            series["final"].append(finals[-1].at - spark["last"])
            ready["final"].append(spark["last"])
        if "first" in spark:
            ready[f"first_text_{kind}"].append(spark["first"])
        ready[f"first_feedback_{kind}"].append(asker.sent_at)
    for name, values in sorted(series.items()):
        result.figures[f"{name}_p50"] = _pct(values, 50)
        result.figures[f"{name}_p95"] = _pct(values, 95)
    result.figures["question_to_spark_max"] = max(series["question_to_spark"], default=None)
    # Lower bounds: finals always count toward the global budget; first feedback and first
    # text count where the policy spends a counted call on them (a message, or a draft when
    # drafts count).
    budget = args.budget
    final_bound = _served(ready["final"], budget)
    result.bounds["final_p50"] = _pct(final_bound, 50)
    result.bounds["final_p95"] = _pct(final_bound, 95)
    counted_feedback = list(ready["first_text_group"])
    if args.drafts_counted and result.policy == "ours":
        counted_feedback += ready["first_feedback_private"]
    elif result.policy != "ours":
        counted_feedback += ready["first_text_private"]
    bound = _served(counted_feedback, budget)
    result.bounds["first_text_p95"] = _pct(bound, 95)
    ours, best = result.figures.get("final_p95"), result.bounds["final_p95"]
    result.bounds["final_p95_ratio"] = (
        ours / best if ours is not None and best is not None and best > 0.05 else None
    )


# -- output ----------------------------------------------------------------------------------


def _s(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pair(figures: dict[str, float | None], name: str) -> str:
    return f"{_s(figures.get(name + '_p50'))}/{_s(figures.get(name + '_p95'))}"


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


def table(results: Sequence[RunResult]) -> str:
    head = (
        "| policy | procs | N | 429 | viol. | differ | feedback p50/p95 priv · grp (s) "
        "| first text p50/p95 priv · grp (s) | q→Spark p50/max (s) | Spark first→text p95 (s) "
        "| last→final p50/p95 (s) [bound] | final p95 priv · grp (s) | updates/answer p50 "
        "| CPU ms/answer | RSS MB | lag p50/p99/max (ms) | load |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        f, b = r.figures, r.bounds
        lag = "/".join(_s(_ms(f.get(k)), 0) for k in ("lag_p50", "lag_p99", "lag_max"))
        lines.append(
            f"| {r.policy} | {r.replicas} | {r.n} | {r.calls_429} | {r.violations} "
            f"| {r.differing} "
            f"| {_pair(f, 'first_feedback_private')} · {_pair(f, 'first_feedback_group')} "
            f"| {_pair(f, 'first_text_private')} · {_pair(f, 'first_text_group')} "
            f"| {_s(f.get('question_to_spark_p50'))}/{_s(f.get('question_to_spark_max'))} "
            f"| {_s(f.get('spark_first_to_text_p95'))} "
            f"| {_s(f.get('final_p50'))}/{_s(f.get('final_p95'))} "
            f"[{_s(b.get('final_p50'))}/{_s(b.get('final_p95'))}] "
            f"| {_s(f.get('final_private_p95'))} · {_s(f.get('final_group_p95'))} "
            f"| {_s(f.get('intermediate_updates_p50'), 0)} "
            f"| {_s(f.get('cpu_ms_per_answer'), 1)} | {_s(f.get('peak_rss_mb'), 0)} "
            f"| {lag} | {r.load_average[0]:.1f}–{r.load_average[1]:.1f} |"
        )
    return "\n".join(lines)


def calls_table(results: Sequence[RunResult]) -> str:
    methods = sorted({m for r in results for m in r.calls_per_answer})
    lines = [
        "| policy | procs | N | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for r in results:
        cells = " | ".join(_s(r.calls_per_answer.get(m), 1) for m in methods)
        lines.append(f"| {r.policy} | {r.replicas} | {r.n} | {cells} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 300, 1000])
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--spread", type=float, default=2.0, help="seconds the questions span")
    parser.add_argument("--group-share", type=float, default=0.3)
    parser.add_argument("--min-chars", type=int, default=800)
    parser.add_argument("--max-chars", type=int, default=1600)
    parser.add_argument("--chars-per-second", type=float, default=200.0)
    parser.add_argument("--chars-per-frame", type=int, default=20)
    parser.add_argument(
        "--first-frame-delay",
        type=float,
        default=0.0,
        help="seconds before Spark's first frame (e.g. 8: the burst's work before Spark alone)",
    )
    parser.add_argument("--budget", type=float, default=28.0, help="global calls/s (bound)")
    parser.add_argument(
        "--drafts-counted",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whether the bot counts drafts toward the global budget (for the bound)",
    )
    parser.add_argument("--deadline", type=float, default=60.0, help="+0.1 s per asker")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--postgres",
        default=None,
        help="a PostgreSQL server (postgresql+asyncpg://user@host:port) instead of SQLite",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1],
        help="bot processes sharing PostgreSQL and Redis (more than 1: policy ours only)",
    )
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="Redis for --replicas above 1"
    )
    parser.add_argument("--bot-env", nargs="*", default=[], help="VAR=value for the bot")
    parser.add_argument("--profile", action="store_true", help="cProfile the bot process")
    parser.add_argument("--workdir", type=Path, default=None, help="logs, databases, profiles")
    parser.add_argument("--json", type=Path, default=Path("load-results.json"))
    return parser


async def _main(args: argparse.Namespace) -> None:
    # A peer stopped mid-request leaves the fake a connection reset: not a finding.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="load-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    if max(args.replicas) > 1 and not args.postgres:
        raise SystemExit("--replicas above 1 need --postgres: the processes share PostgreSQL")
    for n in args.sizes:
        for replicas in args.replicas:
            for policy in args.policies if replicas == 1 else ["ours"]:
                result = await run_once(n, policy, replicas, args, workdir)
                results.append(result)
                print(table([result]).splitlines()[-1], flush=True)
                args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    print()
    print(table(results))
    print()
    print(calls_table(results))
    print(f"\nworkdir: {workdir}; JSON: {args.json}")


if __name__ == "__main__":
    asyncio.run(_main(_parser().parse_args()))
