"""Questions of one conversation, answered one at a time and in order, by whichever process
holds the conversation.

Each conversation has a Redis stream of its questions, in the order they were taken
(:meth:`ConversationQueues.enqueue`, called before the update is acknowledged, so the order
is Telegram's). A process that enqueues also tries to *claim* the conversation: the claim is
a lease with a fencing token (:mod:`coordination.lease`). The holder takes the entries after
the last one done, one at a time, marks each *current* when it starts it and *done* when it
has stored its answer, and lets the claim go only when nothing is left: releasing is refused
while entries wait, so a question enqueued while another process held the claim is never
stranded. Marks are fenced: a holder whose lease lapsed cannot move them.

Where only the process that took a question can answer it (its context lives in that
process's memory), the holder answers its own entry and *hands the claim on* instead
(:meth:`Claim.hand_on`): the lease goes whatever waits, and the owner of the next entry
claims it in turn.

A holder that dies leaves its claim to lapse. The conversation stays in the *active* set
until its queue is empty; :meth:`ConversationQueues.orphaned` lists the active ones nobody
holds, for a sweeper to claim. The new holder's first entry then comes back with
``started`` set when the old holder had started it: its answer was cut off.

Done entries are trimmed from the stream, so memory follows the questions waiting; a
conversation's keys expire a day after its queue last emptied (:data:`IDLE_KEYS_SECONDS`), so
Redis does not keep one per conversation ever held.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from coordination.lease import Grant, Leases

# KEYS: stream, state hash, lease, forgotten set. ARGV: holder|token, entry id, field.
# Sets state[field] while the lease is the caller's. 1 when set, 0 when it is not theirs.
_MARK = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
if ARGV[3] == 'done' then
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
  redis.call('SREM', KEYS[4], ARGV[2])
end
return 1
"""

# KEYS: stream, state hash, lease, active set. ARGV: holder|token, conversation, idle TTL.
# Releases the lease only when no entry waits after 'done'; then the conversation is no
# longer active. 1 released, 0 entries wait (keep working), -1 the lease is not the caller's.
_RELEASE_IF_EMPTY = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local done = redis.call('HGET', KEYS[2], 'done') or '0-0'
local after = redis.call('XRANGE', KEYS[1], '(' .. done, '+', 'COUNT', 1)
if #after > 0 then return 0 end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: stream, state hash, lease, active set. ARGV: holder|token, conversation, idle TTL.
# Lets the lease go whatever waits (the next entry may be another process's to answer);
# forgets the conversation when nothing waits. Returns the entries still waiting, -1 if not
# the caller's.
_HAND_ON = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[3])
local done = redis.call('HGET', KEYS[2], 'done') or '0-0'
local after = redis.call('XRANGE', KEYS[1], '(' .. done, '+', 'COUNT', 1)
if #after == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 0
end
return redis.call('XLEN', KEYS[1])
"""

# KEYS: stream, active set, state hash. ARGV: conversation, then field/value pairs.
_ENQUEUE = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[3])
redis.call('SADD', KEYS[2], ARGV[1])
return id
"""

# How long a conversation's stream and state outlive its last question answered.
IDLE_KEYS_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class Entry:
    """One question waiting: its stream id, the fields it was enqueued with, and whether a
    holder has started answering it (if that holder is gone, the answer was cut off)."""

    id: str
    fields: Mapping[str, str]
    started: bool
    forgotten: bool = False  # its process gave it up and told the user (see ``forget``)

    @property
    def order(self) -> tuple[int, int]:
        return stream_order(self.id)


def stream_order(entry_id: str) -> tuple[int, int]:
    """A stream id as numbers, so ids compare in the stream's order ("9-0" before "10-0")."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


@dataclass(frozen=True, slots=True)
class _Keys:
    """The Redis keys of one conversation's queue."""

    stream: str
    state: str
    lease: str
    active: str
    forgotten: str


class ConversationQueues:
    """Every conversation's queue under ``prefix``."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self.leases = Leases(redis, prefix)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._mark = redis.register_script(_MARK)
        self._release = redis.register_script(_RELEASE_IF_EMPTY)
        self._hand_on = redis.register_script(_HAND_ON)

    def _keys(self, conversation: str) -> _Keys:
        prefix = self._prefix
        return _Keys(
            stream=f"{prefix}queue:{conversation}",
            state=f"{prefix}queue-state:{conversation}",
            lease=self.leases.key(conversation),
            active=f"{prefix}active",
            forgotten=f"{prefix}queue-forgotten:{conversation}",
        )

    async def enqueue(self, conversation: str, fields: Mapping[str, str]) -> str:
        """Add a question at the end of ``conversation``'s queue; its entry id."""
        keys = self._keys(conversation)
        flat = [item for pair in fields.items() for item in pair]
        entry = await self._enqueue(
            keys=[keys.stream, keys.active, keys.state], args=[conversation, *flat]
        )
        return _text(entry)

    async def claim(self, conversation: str, holder: str, ttl: float) -> Claim | None:
        """Hold ``conversation`` for ``ttl`` seconds (renew with :meth:`Claim.renew`), or
        None while another process holds it."""
        grant = await self.leases.acquire(conversation, holder, ttl)
        if grant is None:
            return None
        return Claim(self, conversation, grant)

    async def orphaned(self) -> list[str]:
        """Conversations with questions waiting and no holder."""
        active = [_text(name) for name in await self._redis.smembers(f"{self._prefix}active")]
        if not active:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in active:
                pipe.exists(self.leases.key(name))
            held = await pipe.execute()
        return sorted(name for name, is_held in zip(active, held, strict=True) if not is_held)

    async def waiting(self, conversation: str) -> int:
        """How many entries wait in ``conversation``'s queue (the current one included)."""
        return int(await self._redis.xlen(self._keys(conversation).stream))

    async def first_pending(self, conversation: str) -> Entry | None:
        """The first entry of ``conversation`` not done yet, or None."""
        keys = self._keys(conversation)
        state = {_text(k): _text(v) for k, v in (await self._redis.hgetall(keys.state)).items()}
        done = state.get("done", "0-0")
        found = await self._redis.xrange(keys.stream, min=f"({done}", max="+", count=1)
        if not found:
            return None
        entry_id, raw = found[0]
        assert entry_id is not None
        entry = _text(entry_id)
        fields = {_text(key): _text(value) for key, value in (raw or {}).items()}
        forgotten = bool(await self._redis.sismember(keys.forgotten, entry))
        return Entry(entry, fields, started=state.get("current") == entry, forgotten=forgotten)

    async def forget(self, conversation: str, entry_id: str) -> None:
        """Note that ``entry_id``'s process gave it up (and told its user): whoever finds it
        first marks it done without answering it."""
        await self._redis.sadd(self._keys(conversation).forgotten, entry_id)

    async def mark(self, grant: Grant, entry: Entry, field: str) -> bool:
        """Set ``field`` (current or done) to ``entry`` while ``grant`` holds the lease."""
        keys = self._keys(grant.name)
        marked = await self._mark(
            keys=[keys.stream, keys.state, keys.lease, keys.forgotten],
            args=[grant.value, entry.id, field],
        )
        return bool(marked)

    async def release_if_empty(self, grant: Grant) -> bool | None:
        """See :meth:`Claim.release`."""
        keys = self._keys(grant.name)
        released = await self._release(
            keys=[keys.stream, keys.state, keys.lease, keys.active],
            args=[grant.value, grant.name, IDLE_KEYS_SECONDS],
        )
        return {1: True, 0: False}.get(int(released))

    async def hand_on(self, grant: Grant) -> int | None:
        """Let ``grant`` go whatever waits, for the process whose entry is next; how many
        entries wait, or None when the lease was not ``grant``'s any more."""
        keys = self._keys(grant.name)
        waiting = int(
            await self._hand_on(
                keys=[keys.stream, keys.state, keys.lease, keys.active],
                args=[grant.value, grant.name, IDLE_KEYS_SECONDS],
            )
        )
        return None if waiting < 0 else waiting


class Claim:
    """One process's hold on one conversation's queue."""

    def __init__(self, queues: ConversationQueues, conversation: str, grant: Grant) -> None:
        self._queues = queues
        self.conversation = conversation
        self.grant = grant

    @property
    def token(self) -> int:
        """The fencing token: durable writes made under this claim carry it."""
        return self.grant.token

    async def renew(self, ttl: float) -> bool:
        return await self._queues.leases.renew(self.grant, ttl)

    async def next(self) -> Entry | None:
        """The first entry not done yet, or None."""
        return await self._queues.first_pending(self.conversation)

    async def start(self, entry: Entry) -> bool:
        """Mark ``entry`` as being answered; False when the claim has lapsed."""
        return await self._queues.mark(self.grant, entry, "current")

    async def done(self, entry: Entry) -> bool:
        """Mark ``entry`` answered (and forget it); False when the claim has lapsed."""
        return await self._queues.mark(self.grant, entry, "done")

    async def hand_on(self) -> int | None:
        """See :meth:`ConversationQueues.hand_on`."""
        return await self._queues.hand_on(self.grant)

    async def release(self) -> bool | None:
        """Let the conversation go if nothing waits: True released, False entries wait (take
        them with :meth:`next`), None the claim had lapsed already."""
        return await self._queues.release_if_empty(self.grant)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
