"""Truncates the slots of the ready ring that hold nothing any more.

Claimable jobs are rows of ``ready``, a table partitioned into a ring of slots by the second each
row was written (migration 0002). A claim deletes the rows it takes; while some transaction holds
an old snapshot, those dead rows cannot be vacuumed, and every claim would step over more of them.
A slot that no longer holds a visible row is truncated whole instead, which needs no vacuum and
no snapshot's leave, so claims only ever step over the dead rows of the last few seconds.

The ring is unlogged (migration 0006): PostgreSQL empties it when it recovers from a crash and
when a standby is promoted. Every turn first asks the database to restore it from the queued jobs
if that happened, which is a look at a one-row table otherwise.

Truncating takes an exclusive lock on the slot, waited for at most ``LOCK_TIMEOUT``: a slot that
a transaction still writes to (or that a ``pg_dump`` reads) is skipped and tried again later.
"""

from __future__ import annotations

import logging

import asyncpg

from ..backend import Backend
from .maintenance import RING_LOCK, Service

logger = logging.getLogger("pgqueue.worker")

SLOTS = 8  # as in migration 0002
SLOT_SECONDS = 1.0
LOCK_TIMEOUT = "20ms"


class ReadyRing(Service):
    name = "truncating the ready ring"

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.truncated = 0
        """Slots truncated so far (for tests and metrics)."""

    def interval(self) -> float:
        return SLOT_SECONDS / 2

    async def tick(self) -> None:
        async with self.backend.acquire() as conn, self._alone(conn, RING_LOCK) as mine:
            if not mine:
                return
            turn = await conn.fetchrow(self.backend.statements.ring_turn)
            if turn["restored"]:
                logger.warning("the ready ring was empty after a crash or failover of the "
                               "database: put %s queued jobs back into it", turn["restored"])
            for slot in range(SLOTS):
                if slot != turn["current"]:
                    await self._truncate_if_spent(conn, slot)

    async def _truncate_if_spent(self, conn: asyncpg.Connection, slot: int) -> None:
        statements = self.backend.statements
        row = await conn.fetchrow(statements.ready_slot_has_rows(slot))
        if not row["written"] or row["live"]:
            return
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                await conn.execute(statements.lock_ready_slot(slot))
                # Rows committed between the look and the lock stay claimable.
                if (await conn.fetchrow(statements.ready_slot_has_rows(slot)))["live"]:
                    return
                await conn.execute(statements.truncate_ready_slot(slot))
        except asyncpg.exceptions.LockNotAvailableError:
            return  # in use; next time
        self.truncated += 1
