"""The bot process of ``benchmarks/load.py``: the real bot (or a peer policy) plus a lag probe.

``python benchmarks/load_bot.py ours`` runs :func:`bot.telegram.app.run` exactly as
``python -m bot`` does (settings from the environment, webhook mode when ``WEBHOOK_URL`` is
set); ``ptb-limiter`` and ``every-frame`` run a peer policy (:mod:`benchmarks.load_peers`)
on the same settings. Beside it, in the same event loop, a probe sleeps 20 ms at a time and
records how late it woke up: the event loop's lag. On SIGTERM the process stops as the bot does
and writes the probe's samples and its CPU time to ``LOAD_BENCH_OUT`` (JSON). With
``LOAD_BENCH_PROFILE`` set, the whole run is profiled with cProfile into that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import load_settings
from bot.logs import configure_logging

PROBE_INTERVAL = 0.02


async def _probe(samples: list[tuple[float, float]]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(PROBE_INTERVAL)
        samples.append((time.monotonic(), loop.time() - started - PROBE_INTERVAL))


async def _serve(policy: str) -> None:
    settings = load_settings()
    configure_logging(settings.log_level, [])
    if policy == "ours":
        from bot.telegram.app import run

        await run(settings)
        return
    from benchmarks.load_peers import serve_peer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve_peer(policy, settings, stop)


async def _main(policy: str, out: Path) -> None:
    samples: list[tuple[float, float]] = []
    probe = asyncio.create_task(_probe(samples))
    try:
        await _serve(policy)
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        # The loop is done with everything else: a blocking write is fine here.
        out.write_text(json.dumps({"lag": samples, "cpu": time.process_time()}))  # noqa: ASYNC240


def main() -> None:
    policy = sys.argv[1]
    out = Path(os.environ["LOAD_BENCH_OUT"])
    profile_path = os.environ.get("LOAD_BENCH_PROFILE")
    if not profile_path:
        asyncio.run(_main(policy, out))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_main(policy, out))
    finally:
        profiler.disable()
        profiler.dump_stats(profile_path)


if __name__ == "__main__":
    main()
