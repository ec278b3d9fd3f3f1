"""A process that takes one question of a conversation through shared lanes and hangs while
answering it, to be killed by a test (``python -m tests.support.lane_replica URL PREFIX KEY``).
Prints ``answering`` once its answer has started."""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from bot.service.shared_lanes import SharedLanes
from coordination.conversation_queue import ConversationQueues, Entry
from coordination.replicas import Replicas, new_replica_id
from coordination.signals import Signals


async def main(url: str, prefix: str, key: str, lease: float) -> None:
    redis = Redis.from_url(url)

    async def takeover(conversation: str, entry: Entry) -> None:
        raise AssertionError("nothing to take over here")

    lanes = SharedLanes(
        queues=ConversationQueues(redis, prefix),
        signals=Signals(redis, prefix),
        replicas=Replicas(redis, prefix),
        replica_id=new_replica_id(),
        takeover=takeover,
        lease_seconds=lease,
        poll_seconds=0.05,
    )
    await lanes.start()

    async def hang() -> None:
        print("answering", flush=True)
        await asyncio.Event().wait()

    await lanes.submit(key, hang, fields={"text": "cut off"})
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
