"""The claim loop: one statement takes as many jobs as the worker has room for.

``FOR UPDATE SKIP LOCKED`` lets any number of workers share a queue without running a job twice.
The loop claims again at once while claims come back full, and otherwise sleeps until a
notification says work is ready, a slot frees up, or ``poll_interval`` passes (a scheduled job may
have come due).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..backend import Backend
from ..database import CONNECTION_ERRORS, Backoff, DedicatedConnection
from .outage import OutageLog
from .registration import Registration
from .slots import Slots
from .waiting import first_of

logger = logging.getLogger("pgqueue.worker")

# The claim has a connection of its own: no pool round trip on the hot path. Its planner settings
# travel with the claim function (migration 0004), not as startup parameters a pooler refuses.


class Claimer:
    def __init__(
        self,
        backend: Backend,
        slots: Slots,
        registration: Registration,
        queues: list[str] | None,
        *,
        wake: asyncio.Event,
        stopping: asyncio.Event,
        start_ready: Callable[[], None],
        burst: bool,
    ) -> None:
        self._backend = backend
        self._slots = slots
        self._registration = registration
        self._queues = queues
        self._wake = wake
        self._stopping = stopping
        self._start_ready = start_ready
        self._burst = burst
        self._outage = OutageLog(logger, "claiming jobs")
        # Claim in batches under load: wait for a quarter of the slots rather than claiming
        # one job per round trip as each finishes.
        self._batch_floor = max(1, slots.concurrency // 4)
        self._conn = DedicatedConnection(backend.settings.dsn or "")

    async def run(self) -> None:
        """Claim until stopping; in burst mode, also return once nothing is left to claim."""
        statement = self._backend.statements.claim
        limit = self._backend.settings.claim_batch
        slots = self._slots
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        claim_lost = False
        try:
            while not self._stopping.is_set():
                free = slots.room()
                if free < self._batch_floor and slots.held:
                    slots.freed.clear()
                    await first_of(slots.freed, self._stopping)
                    continue
                self._wake.clear()
                try:
                    if claim_lost:
                        await self._hand_back_lost_claims()
                        claim_lost = False
                    sent = loop.time()
                    rows = await self._conn.fetch(
                        statement, self._queues, min(free, limit), self._registration.id
                    )
                    slots.pace.claimed(loop.time() - sent)
                except CONNECTION_ERRORS as exc:
                    # The claim may have committed with its answer lost: look before the next one.
                    claim_lost = True
                    self._outage.failed(exc)
                    await first_of(self._stopping, timeout=backoff.next_delay())
                    continue
                backoff.reset()
                self._outage.recovered()
                slots.claimed(rows)
                self._start_ready()
                if len(rows) == min(free, limit):
                    continue  # there may be more right now
                if self._burst and not rows and not slots.running and not slots.ready:
                    logger.info("worker %s: nothing left to claim (burst mode)",
                                self._registration.id)
                    return
                # Fewer rows than asked for: the queue had no more. Wait for news (a notification
                # that came during the claim has set _wake again) rather than asking again at once;
                # the jobs just claimed start meanwhile.
                await first_of(self._wake, self._stopping, slots.freed if self._burst else None,
                               timeout=self._backend.settings.poll_interval)
        finally:
            await self._conn.close()

    async def _hand_back_lost_claims(self) -> None:
        rows = await self._conn.fetch(
            self._backend.statements.hand_back_lost_claims, list(self._slots.held),
            self._registration.id,
        )
        for row in rows:
            logger.warning("job %s %s: its claim was lost with a connection; handed back",
                           row["id"], row["task"])
