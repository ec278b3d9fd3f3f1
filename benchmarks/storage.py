"""Storage benchmark: history reads and turn writes on a database the size of a busy bot.

For each backend (a SQLite file in a temporary directory; PostgreSQL in a throw-away schema
when TEST_DATABASE_URL or --postgres-url names one) it

1. migrates an empty database and bulk-loads ``--chats`` chats with ``--messages`` messages in
   all (question/answer pairs, mixed Chinese and English text) plus one ledger row per answer,
   printing how long the load took;
2. builds the prompt context for ``--samples`` turns in random chats, the way the conversation
   service does before calling Spark: the chat row and the history within the Spark Lite
   budget for the chat's open conversation (``bot.service.budget.load_prompt``: one read of
   ``Database.messages.prompt_history``), and prints p50 / p95 / max;
3. offers turn writes at ``--rate`` per second for ``--seconds`` seconds (open loop, every
   turn its own task), each as the service makes them with ``Database.messages``: the question
   (with its Telegram link), the streaming answer row, then the final answer with its
   Telegram link, ledger row and calibration; prints the achieved rate and the latency of a
   turn write. With ``--turn service`` each turn also does what the service does around
   those writes: the arrival (the chat and open conversation, read in one statement; written
   in a second unit only when new or changed) and the prompt's history before
   the answer row; with ``--turn update`` also the claim on the update's id first, i.e. all
   the storage work of one Telegram update that asks a question;
4. claims update ids (``Database.updates.claim``, what every Telegram update costs before
   any handler runs) with ``--claim-workers`` concurrent claimers for ``--claim-seconds``, on
   a table preloaded with ``--claim-rows`` claims spread over the last 25 hours, every tenth
   claim a re-delivery of an id already claimed (which must lose); after one prune of the
   claims older than a day, as the bot makes once a minute; prints claims/s, the latency of
   a claim and the prune's time;
5. drops everything it created.

``--phases claims`` runs only the claims (no seeding of messages: a claim touches nothing
else).

Usage: ``python benchmarks/storage.py`` (see ``--help``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory leads sys.path, and its name would hide the storage
# package this benchmark measures.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Iterator  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any, TypeVar  # noqa: E402
from urllib.parse import quote  # noqa: E402

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection  # noqa: E402

from bot.service.budget import CALIBRATION, PromptSettings, load_prompt  # noqa: E402
from bot.spark.models import get_model  # noqa: E402
from bot.spark.tokens import estimate_text_tokens  # noqa: E402
from storage.database import Database, create_database, create_engine, normalise_url  # noqa: E402
from storage.dto import (  # noqa: E402
    Calibration,
    ChatInfo,
    ConversationInfo,
    LedgerEntry,
    MessageStatus,
    TokenUsage,
)
from storage.migrate import upgrade  # noqa: E402
from storage.repositories.conversations import Arrival  # noqa: E402
from storage.repositories.messages import Finish  # noqa: E402

MODEL = get_model("lite")
BATCH = 20_000
BOT_ID = 7_000_000_001
# The bot forgets claims older than this (bot.telegram.dedup.RETENTION).
CLAIM_RETENTION = timedelta(hours=24)
T = TypeVar("T")
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "reply_to_id",
    "user_id",
    "role",
    "content",
    "tokens",
    "status",
    "usable",
    "telegram_message_ids",
    "model",
    "sid",
    "error_code",
    "created_at",
    "updated_at",
)
USAGE_COLUMNS = (
    "id",
    "created_at",
    "user_id",
    "chat_id",
    "conversation_id",
    "message_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "first_token_ms",
    "duration_ms",
    "sid",
    "error_code",
)

QUESTIONS = [
    "请用三句话解释一下量子纠缠是什么？",
    "How do I reverse a linked list in Python without recursion?",
    "帮我写一封请假邮件，语气正式一点。",
    "What is the difference between TCP and UDP, briefly?",
]
ANSWER = (
    "Here is a short answer with a few details. 这是一个比较详细的回答，包含了若干要点。 "
    "First, consider the structure of the problem; second, weigh the trade-offs; third, "
    "pick the simplest approach that works. 最后，记得测试你的代码。 "
) * 3


@dataclass(frozen=True)
class Figures:
    backend: str
    seed_seconds: float
    messages: int
    chats: int
    context_ms: list[float]
    pairs_included: float
    offered_rate: float
    achieved_rate: float
    write_ms: list[float]
    failures: int


@dataclass(frozen=True)
class ClaimFigures:
    backend: str
    preloaded: int
    prune_ms: float
    pruned: int
    workers: int
    claims_per_s: float
    claim_ms: list[float]
    redelivered: int
    wrongly_won: int
    failures: int


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-int(percent * len(ordered)) // 100))
    return ordered[min(rank, len(ordered)) - 1]


def sqlite_stamp(moment: datetime) -> str:
    # The text form SQLAlchemy's SQLite DATETIME reads back (naive UTC).
    return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_rows(
    chats: int, messages: int, start: datetime
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Batches of (message rows, ledger rows); chat i has conversation i, user i."""
    per_chat = max(2, messages // chats // 2 * 2)
    answer_tokens = estimate_text_tokens(ANSWER)
    question_tokens = [estimate_text_tokens(q) for q in QUESTIONS]
    message_id = 0
    message_batch: list[tuple[Any, ...]] = []
    usage_batch: list[tuple[Any, ...]] = []
    for chat in range(1, chats + 1):
        for turn in range(per_chat // 2):
            at = start + timedelta(seconds=chat * 7 + turn * 60)
            q_id, a_id = message_id + 1, message_id + 2
            message_id += 2
            sid = f"cht{a_id:012d}"
            which = turn % len(QUESTIONS)
            message_batch += [
                (q_id, chat, None, chat, "user", QUESTIONS[which], question_tokens[which],
                 "complete", True, "[]", None, None, None, at, at),
                (a_id, chat, q_id, chat, "assistant", ANSWER, answer_tokens,
                 "complete", True, "[]", MODEL.name, sid, None, at, at),
            ]  # fmt: skip
            usage_batch.append(
                (a_id // 2, at, chat, chat, chat, a_id, MODEL.name, 900, 180, 1080,
                 300 + turn % 700, 2000 + turn * 13 % 4000, sid, None)
            )  # fmt: skip
            if len(message_batch) >= BATCH:
                yield message_batch, usage_batch
                message_batch, usage_batch = [], []
    if message_batch:
        yield message_batch, usage_batch


async def seed(database: Database, chats: int, messages: int) -> tuple[float, int]:
    """Bulk-load the database; returns (seconds, messages stored)."""
    start = datetime.now(UTC) - timedelta(days=30)
    started = time.perf_counter()
    stored = 0
    async with database.engine.begin() as connection:
        people = [
            (chat, f"user{chat}", f"User {chat}", "zh", start, start)
            for chat in range(1, chats + 1)
        ]
        rooms = [
            (chat, "private", None, 1.0, secrets.token_hex(16), start, start)
            for chat in range(1, chats + 1)
        ]
        conversations = [(chat, chat, 0, 0, start, None) for chat in range(1, chats + 1)]
        await bulk(
            connection,
            "users",
            ("id", "username", "first_name", "language_code", "created_at", "updated_at"),
            people,
        )
        await bulk(
            connection,
            "chats",
            ("id", "type", "title", "token_ratio", "spark_uid", "created_at", "updated_at"),
            rooms,
        )
        await bulk(
            connection,
            "conversations",
            ("id", "chat_id", "thread_id", "scope_user_id", "created_at", "closed_at"),
            conversations,
        )
        for message_rows, usage_rows in seed_rows(chats, messages, start):
            await bulk(connection, "messages", MESSAGE_COLUMNS, message_rows)
            await bulk(connection, "usage_records", USAGE_COLUMNS, usage_rows)
            stored += len(message_rows)
        if connection.dialect.name == "postgresql":
            # Rows came with explicit ids: move the sequences past them.
            for name in ("conversations", "messages", "usage_records"):
                await connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608
                        f"(SELECT max(id) FROM {name}))"
                    )
                )
    async with database.engine.begin() as connection:
        # Fresh statistics, as autovacuum / a long-running SQLite database would have.
        await connection.execute(text("ANALYZE"))
    return time.perf_counter() - started, stored


async def bulk(
    connection: AsyncConnection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """The fastest load each driver offers: COPY on PostgreSQL, executemany on SQLite."""
    if connection.dialect.name == "postgresql":
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table, records=rows, columns=list(columns))
        return
    converted = [
        tuple(sqlite_stamp(v) if isinstance(v, datetime) else v for v in row) for row in rows
    ]
    marks = ", ".join("?" for _ in columns)
    await connection.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
        converted,
    )


QUESTION = "接着上面的话题，再举一个例子好吗？"
ANSWER_TOKENS = estimate_text_tokens(ANSWER)


def lite_settings(chat: ChatInfo | None) -> PromptSettings:
    return PromptSettings(MODEL, chat.system_prompt if chat is not None else None)


async def measure_context(
    database: Database, chats: int, samples: int
) -> tuple[list[float], float]:
    """The service's read before calling Spark: chat row and history (conversation i is the
    open conversation of chat i, as seeded; the service knows it from the question's turn)."""
    timings: list[float] = []
    included: list[int] = []
    rng = random.Random(7)
    for _ in range(samples):
        chat_id = rng.randint(1, chats)
        started = time.perf_counter()
        found = await load_prompt(
            database.messages, chat_id, chat_id, QUESTION, lite_settings, known=None
        )
        timings.append((time.perf_counter() - started) * 1000)
        assert found.chat is not None
        included.append(found.context.pairs_included)
    return timings, statistics.mean(included)


async def turn_write(
    database: Database,
    conversation: ConversationInfo,
    n: int,
    *,
    service: bool = False,
    claim: bool = False,
) -> None:
    """A turn's writes as the conversation service makes them (three units of work: the
    question when it arrives, the answer row when its turn comes, the answer when it ends);
    with ``service`` also the user / chat / conversation unit and the prompt read; with
    ``claim`` first the claim on the update's id, as the bot makes before any handler."""
    messages = database.messages
    user_id = conversation.chat_id
    if claim and not await database.updates.claim(BOT_ID, 10**9 + n):
        raise RuntimeError(f"update {10**9 + n} claimed twice")
    chat: ChatInfo | None = None
    if service:
        chat, conversation = await database.conversations.arrive(arrival(conversation.chat_id))
    asked = f"benchmark question {n}"
    question = await messages.add_question(
        conversation,
        asked,
        tokens=estimate_text_tokens(asked),
        user_id=user_id,
        telegram_message_id=10**7 + n,
    )
    if service:
        await load_prompt(
            messages, conversation.id, conversation.chat_id, QUESTION, lite_settings, known=chat
        )
    answer = await messages.start_answer(
        conversation, question_id=question.id, model=MODEL.name, user_id=user_id
    )
    finish = Finish(
        status=MessageStatus.COMPLETE,
        text=ANSWER,
        tokens=ANSWER_TOKENS,
        sid=f"bench{n}",
        telegram_message_ids=[2 * 10**7 + n],
        ledger=LedgerEntry(
            model=MODEL.name,
            usage=TokenUsage(prompt_tokens=900, completion_tokens=180, total_tokens=1080),
            user_id=user_id,
            chat_id=conversation.chat_id,
            first_token_ms=400,
            duration_ms=3000,
        ),
        calibration=Calibration(conversation.chat_id, 850, 900, CALIBRATION),
    )
    await messages.finish_answer(answer.id, finish)


def arrival(chat_id: int) -> Arrival:
    """A question in private chat ``chat_id`` from its seeded user."""
    return Arrival(
        user_id=chat_id,
        username=f"user{chat_id}",
        first_name=f"User {chat_id}",
        language_code="zh",
        chat_id=chat_id,
        chat_type="private",
        title=None,
    )


async def measure_writes(
    database: Database,
    chats: int,
    rate: float,
    seconds: float,
    *,
    service: bool = False,
    claim: bool = False,
) -> tuple[float, list[float], int]:
    """Open loop: start a turn write every 1/rate s; returns (achieved/s, latencies, failures)."""
    conversations = [
        (await database.conversations.arrive(arrival(c)))[1]
        for c in range(1, min(chats, 2000) + 1)
    ]
    latencies: list[float] = []
    failures = 0

    async def one(n: int) -> None:
        nonlocal failures
        started = time.perf_counter()
        try:
            await turn_write(
                database, conversations[n % len(conversations)], n, service=service, claim=claim
            )
        except Exception as exc:  # counted and reported; the run goes on
            failures += 1
            if failures <= 3:
                print(f"  turn write failed: {exc!r}", file=sys.stderr)
            return
        latencies.append((time.perf_counter() - started) * 1000)

    total = int(rate * seconds)
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in range(total):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(n))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, failures


async def seed_claims(database: Database, rows: int, now: datetime) -> None:
    """``rows`` claims of ids 1..rows, spread evenly over the 25 hours before ``now``."""
    step = timedelta(hours=25) / max(rows, 1)
    async with database.engine.begin() as connection:
        for first in range(0, rows, BATCH):
            batch = [
                (BOT_ID, n + 1, now - timedelta(hours=25) + n * step)
                for n in range(first, min(first + BATCH, rows))
            ]
            await bulk(
                connection, "processed_updates", ("bot_id", "update_id", "received_at"), batch
            )
    async with database.engine.begin() as connection:
        await connection.execute(text("ANALYZE"))


async def measure_claims(
    database: Database, first_id: int, workers: int, seconds: float
) -> tuple[float, list[float], int, int, int]:
    """Closed loop: ``workers`` claimers, each claiming a new id as soon as its last claim
    returned; every tenth claim repeats the claimer's previous id (a re-delivery). Returns
    (claims/s, latencies, re-deliveries, re-deliveries that won, failures)."""
    updates = database.updates
    ids = iter(range(first_id, first_id + 10**9))
    latencies: list[float] = []
    redelivered = wrongly_won = failures = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def claimer() -> None:
        nonlocal redelivered, wrongly_won, failures
        count, previous = 0, None
        while loop.time() < deadline:
            count += 1
            again = count % 10 == 0 and previous is not None
            update_id = previous if again and previous is not None else next(ids)
            started = time.perf_counter()
            try:
                won = await updates.claim(BOT_ID, update_id)
            except Exception as exc:  # counted and reported; the run goes on
                failures += 1
                if failures <= 3:
                    print(f"  claim failed: {exc!r}", file=sys.stderr)
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            redelivered += again
            wrongly_won += again and won
            previous = update_id

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(claimer())
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, redelivered, wrongly_won, failures


async def run_claims(backend: str, database: Database, args: argparse.Namespace) -> ClaimFigures:
    now = datetime.now(UTC)
    await seed_claims(database, args.claim_rows, now)
    await database.updates.claim(BOT_ID, 0)  # open the runner's connections first
    started = time.perf_counter()
    pruned = await database.updates.forget(now - CLAIM_RETENTION)
    prune_ms = (time.perf_counter() - started) * 1000
    rate, claim_ms, redelivered, wrongly_won, failures = await measure_claims(
        database, args.claim_rows + 1, args.claim_workers, args.claim_seconds
    )
    print(
        f"[{backend}] claims: {args.claim_workers} claimers for {args.claim_seconds:.0f} s "
        f"on {args.claim_rows:,} stored claims: {rate:.0f} claims/s, latency p50 "
        f"{percentile(claim_ms, 50):.2f} ms, p95 {percentile(claim_ms, 95):.2f} ms, "
        f"p99 {percentile(claim_ms, 99):.2f} ms, max {max(claim_ms):.1f} ms, "
        f"{redelivered} re-deliveries ({wrongly_won} won: must be 0), failures {failures}; "
        f"prune of {pruned:,} claims older than a day {prune_ms:.0f} ms"
    )
    return ClaimFigures(
        backend,
        args.claim_rows,
        prune_ms,
        pruned,
        args.claim_workers,
        rate,
        claim_ms,
        redelivered,
        wrongly_won,
        failures,
    )


async def run_backend(
    backend: str, url: str, args: argparse.Namespace
) -> list[Figures | ClaimFigures]:
    await upgrade(url)
    database = create_database(url, pool_size=20, max_overflow=30)
    results: list[Figures | ClaimFigures] = []
    try:
        if "turns" in args.phases:
            results.append(await run_turns(backend, database, args))
        if "claims" in args.phases:
            results.append(await run_claims(backend, database, args))
        return results
    finally:
        await database.dispose()


async def run_turns(backend: str, database: Database, args: argparse.Namespace) -> Figures:
    seconds, stored = await seed(database, args.chats, args.messages)
    print(
        f"[{backend}] seeded {stored:,} messages in {args.chats:,} chats "
        f"(+{stored // 2:,} ledger rows) in {seconds:.1f} s"
    )
    context_ms, pairs = await measure_context(database, args.chats, args.samples)
    print(
        f"[{backend}] context build: p50 {percentile(context_ms, 50):.2f} ms, "
        f"p95 {percentile(context_ms, 95):.2f} ms, max {max(context_ms):.2f} ms "
        f"({len(context_ms)} turns, {pairs:.1f} pairs included on average)"
    )
    achieved, write_ms, failures = await measure_writes(
        database,
        args.chats,
        args.rate,
        args.seconds,
        service=args.turn in ("service", "update"),
        claim=args.turn == "update",
    )
    print(
        f"[{backend}] turn writes: offered {args.rate:.0f}/s for {args.seconds:.0f} s, "
        f"achieved {achieved:.0f}/s, latency p50 {percentile(write_ms, 50):.1f} ms, "
        f"p95 {percentile(write_ms, 95):.1f} ms, failures {failures}"
    )
    return Figures(
        backend,
        seconds,
        stored,
        args.chats,
        context_ms,
        pairs,
        args.rate,
        achieved,
        write_ms,
        failures,
    )


async def with_schema(base_url: str, use: Callable[[str], Awaitable[T]]) -> T:
    schema = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(base_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in base_url else "?"
        return await use(f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}")
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


async def main(args: argparse.Namespace) -> int:
    results: list[Figures | ClaimFigures] = []
    started = time.perf_counter()
    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory(prefix="storage-bench-") as directory:
            url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.sqlite3'}"
            results += await run_backend("sqlite", url, args)
    if "postgresql" in args.backends:
        pg = args.postgres_url or os.environ.get("TEST_DATABASE_URL")
        if not pg:
            print("[postgresql] skipped: set TEST_DATABASE_URL or pass --postgres-url")
        else:
            base = normalise_url(pg)
            results += await with_schema(base, lambda url: run_backend("postgresql", url, args))
    print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    if args.json:
        print(
            json.dumps(
                [
                    {
                        name: None if isinstance(value, list) else value
                        for name, value in asdict(figures).items()
                    }
                    for figures in results
                ]
            )
        )
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1000, help="context builds to time")
    parser.add_argument("--rate", type=float, default=500.0, help="turn writes offered per s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the write run")
    parser.add_argument(
        "--turn",
        choices=["writes", "service", "update"],
        default="writes",
        help="writes: the three turn units; service: also the user/chat unit and prompt read; "
        "update: also the claim on the update's id",
    )
    parser.add_argument(
        "--phases", nargs="+", default=["turns", "claims"], choices=["turns", "claims"]
    )
    parser.add_argument("--claim-rows", type=int, default=1_000_000, help="claims preloaded")
    parser.add_argument("--claim-workers", type=int, default=64, help="concurrent claimers")
    parser.add_argument("--claim-seconds", type=float, default=5.0, help="length of the claims")
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
