"""A few PostgreSQL connections kept checked out of the engine's pool for the units of work.

Checking a connection out of SQLAlchemy's pool and back costs about 0.15 ms of Python, as much
as the statement a turn runs on it; and under a burst the pool opens overflow connections and
closes them again, each new one paying a TLS attempt, type introspection and statement
preparation (measured: 500 offered turns/s fell to 230/s). Here ``size`` connections are
checked out once, on first need, and handed from one unit of work to the next (see
:mod:`storage.backends`); a burst waits
for one instead of opening more. They are the engine's own connections (same URL, server
settings and schema), returned to its pool by :meth:`ConnectionLease.close`.

A connection the server closed is dropped and replaced; so is one whose user was cancelled
mid-statement, since its protocol state is then unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class _Leased:
    connection: AsyncConnection
    # asyncpg.Connection (asyncpg ships no type information).
    driver: Any


class ConnectionLease:
    """Lends up to ``size`` long-held connections' asyncpg drivers, one unit at a time."""

    def __init__(self, engine: AsyncEngine, size: int, *, timeout: float = DEFAULT_TIMEOUT):
        if size < 1:
            raise ValueError(f"a lease needs at least one connection, got {size}")
        self._engine = engine
        self._size = size
        self._timeout = timeout
        # None wakes a waiter to open a connection in the place of one that was dropped.
        self._idle: asyncio.Queue[_Leased | None] = asyncio.Queue()
        self._all: set[_Leased] = set()
        self._opening = 0
        self._closed = False

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """An asyncpg connection in autocommit for the block (no transaction is open)."""
        leased = await self._acquire()
        try:
            yield leased.driver
        except Exception:
            await self._release(leased)
            raise
        except BaseException:
            await self._drop(leased)
            raise
        else:
            await self._release(leased)

    async def _acquire(self) -> _Leased:
        if self._closed:
            raise RuntimeError("the connection lease is closed")
        async with asyncio.timeout(self._timeout):
            while True:
                if self._idle.empty() and len(self._all) + self._opening < self._size:
                    return await self._open()
                leased = await self._idle.get()
                if leased is None:
                    continue
                if leased.driver.is_closed():
                    await self._drop(leased)
                    continue
                return leased

    async def _open(self) -> _Leased:
        self._opening += 1
        try:
            connection = await self._engine.connect()
            try:
                raw = await connection.get_raw_connection()
            except BaseException:
                await connection.close()
                raise
            leased = _Leased(connection, raw.driver_connection)
            self._all.add(leased)
            return leased
        finally:
            self._opening -= 1

    async def _release(self, leased: _Leased) -> None:
        if leased.driver.is_closed():
            await self._drop(leased)
        elif self._closed:
            self._all.discard(leased)
            await leased.connection.close()
        else:
            self._idle.put_nowait(leased)

    async def _drop(self, leased: _Leased) -> None:
        self._all.discard(leased)
        self._idle.put_nowait(None)
        try:
            await leased.connection.invalidate()
        finally:
            await leased.connection.close()

    async def close(self) -> None:
        """Return every idle connection to the engine's pool; later ones on release."""
        self._closed = True
        while not self._idle.empty():
            leased = self._idle.get_nowait()
            if leased is not None:
                self._all.discard(leased)
                await leased.connection.close()
