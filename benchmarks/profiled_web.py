"""``python -m bot web`` under cProfile timed by the process's CPU time, not the wall clock:
on a machine shared with other jobs, wall time would charge the gateway for the moments
another process held its core. Run: ``python benchmarks/profiled_web.py OUT`` (the web
command's settings from the environment, as usual); the statistics go to OUT on SIGTERM.
"""

from __future__ import annotations

import cProfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.__main__ import main as bot_main


def main() -> int:
    profile = cProfile.Profile(time.process_time)
    try:
        return int(profile.runcall(bot_main, ["web"]))
    finally:
        profile.dump_stats(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
