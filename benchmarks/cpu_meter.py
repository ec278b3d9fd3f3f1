"""Where a machine's CPU goes, for benchmarks: CPU seconds of processes from ``/proc``, the
machine's busy time, and what a PostgreSQL database's backends are doing.

Read at the start and the end of a measured window, the differences say how much CPU each kind
of process (and everything else on the machine) spent in it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
