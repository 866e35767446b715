"""Counts of jobs per queue and status, read so that many readers cost the database one query.

The query itself never counts history (see ``Statements.stats``). Dashboards, ``GET /stats`` and
``/metrics`` poll it every second or so, each; with ``max_age`` they share one read per interval
in this process, and callers that arrive while a read is under way wait for it instead of
starting their own.
"""

from __future__ import annotations

import asyncio
import time

from .backend import Backend

Counts = dict[str, dict[str, int]]


class StatsReader:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._latest: tuple[float, Counts] | None = None
        self._reading: asyncio.Future[Counts] | None = None

    async def read(self, max_age: float = 0.0) -> Counts:
        """Counts read at most ``max_age`` seconds ago; 0 reads now."""
        if max_age > 0:
            if self._latest is not None and time.monotonic() - self._latest[0] <= max_age:
                return self._latest[1]
            if self._reading is not None:
                return await asyncio.shield(self._reading)
        return await self._read()

    async def _read(self) -> Counts:
        started = time.monotonic()
        reading = asyncio.ensure_future(self._query())
        self._reading = reading
        try:
            counts = await asyncio.shield(reading)
        finally:
            if self._reading is reading:
                self._reading = None
        self._latest = (started, counts)
        return counts

    async def _query(self) -> Counts:
        async with self._backend.acquire() as conn:
            async with conn.transaction(readonly=True):
                # Never a seq scan of the jobs table, whatever the (possibly absent) statistics;
                # nor a bitmap scan, which unlike an index scan never marks the entries of
                # finished jobs dead, so it would visit them on every call until a vacuum; nor
                # JIT, which the seq scans priced out of the small count tables would trigger
                # (35 ms of compiling for a 0.3 ms read).
                await conn.execute("SET LOCAL enable_seqscan = off; "
                                   "SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off")
                rows = await conn.fetch(self._backend.statements.stats)
        counts: Counts = {}
        for row in rows:
            counts.setdefault(row["queue"], {})[row["status"]] = row["n"]
        return counts
