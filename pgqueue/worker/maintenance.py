"""The worker's maintenance duties, one class each: rescue, schedule, prune, vacuum.

Each runs in its own asyncio task, survives database outages (one log line per outage) and is
cancelled when the worker stops. Duties that one worker should do at a time take an advisory lock
per schema and skip their turn if another worker holds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg

from ..backend import Backend
from ..database import CONNECTION_ERRORS
from ..job import Job, JobStatus
from .outage import OutageLog
from .registration import Registration

logger = logging.getLogger("pgqueue.worker")

# Advisory lock keys, per schema (the other key is the schema's hash).
RESCUE_LOCK = 1
PRUNE_LOCK = 2
VACUUM_LOCK = 3
RING_LOCK = 4


class Service:
    """Calls ``tick()`` every ``interval()`` seconds until cancelled."""

    name = "service"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._outage = OutageLog(logger, self.name)

    def interval(self) -> float:
        raise NotImplementedError

    async def tick(self) -> float | None:
        """Do the duty once; may return how long to sleep before the next time."""
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            delay = None
            try:
                delay = await self.tick()
                self._outage.recovered()
            except (*CONNECTION_ERRORS, asyncpg.exceptions.PostgresConnectionError) as exc:
                self._outage.failed(exc)
            except asyncpg.PostgresError:
                logger.exception("%s failed; trying again later", self.name)
            await asyncio.sleep(self.interval() if delay is None else delay)

    @asynccontextmanager
    async def _alone(self, conn: asyncpg.Connection, lock: int) -> AsyncIterator[bool]:
        """This duty's session-scoped advisory lock for the block (work that commits as it goes,
        or cannot run in a transaction); yields False, holding nothing, if another worker has it.

        Behind a transaction pooler (``statement_cache_size=0``) a pooled connection is another
        server session from one statement to the next: a session lock would stay behind on one
        the pooler hands to others, and its release would miss it. There the duty runs without
        it: these duties are safe side by side (a delete waits for and skips rows another
        deletes, a slot's truncation takes the slot's lock with a timeout, vacuums queue on the
        table's lock), so several workers doing one at once only repeat work.
        """
        if not self.backend.settings.statement_cache_size:
            yield True
            return
        statements = self.backend.statements
        if not await conn.fetchval(statements.try_session_lock, lock):
            yield False
            return
        try:
            yield True
        finally:
            await conn.fetchval(statements.release_session_lock, lock)


class Rescuer(Service):
    """Gives the running jobs of dead workers back to the queue (or fails them when they are out
    of attempts: those go to ``on_failed``)."""

    name = "rescue"

    def __init__(
        self, backend: Backend, registration: Registration, on_failed: Callable[[Job], None]
    ) -> None:
        super().__init__(backend)
        self._registration = registration
        self._on_failed = on_failed

    def interval(self) -> float:
        return self.backend.settings.heartbeat_interval

    async def tick(self) -> None:
        statements = self.backend.statements
        async with self.backend.acquire() as conn:
            async with conn.transaction():
                if not await conn.fetchval(statements.try_maintenance_lock, RESCUE_LOCK):
                    return
                rows = await conn.fetch(statements.rescue, self.backend.settings.rescue_after,
                                        self._registration.id)
        for job in map(Job.from_row, rows):
            logger.warning(
                "job %s %s: its worker stopped heartbeating during attempt %s; %s",
                job.id, job.task, job.attempts,
                "requeued" if job.status is JobStatus.QUEUED else "failed, no attempts left",
            )
            if job.status is JobStatus.FAILED:
                self._on_failed(job)


class Scheduler(Service):
    """Moves scheduled jobs (delayed, or waiting out a retry backoff) to queued when they are due."""

    name = "scheduling"

    def interval(self) -> float:
        return self.backend.settings.poll_interval

    async def tick(self) -> float:
        async with self.backend.acquire() as conn:
            row = await conn.fetchrow(self.backend.statements.promote_scheduled)
        if row["promoted"] >= 1000:
            return 0.0  # more are due right now
        next_due: datetime | None = row["next_due"]
        if next_due is None:
            return self.interval()
        wait = (next_due - datetime.now(UTC)).total_seconds()
        return min(self.interval(), max(0.0, wait))


class Pruner(Service):
    """Deletes finished jobs older than their retention, in batches that commit one by one (a
    long prune holds no locks and leaves no long transaction behind), then folds the kept
    counts.

    A batch takes milliseconds, and back to back they would take a core from the workers'
    claims; after each one the pruner rests so that it works at most ``duty`` of the time (still
    millions of jobs an hour)."""

    name = "pruning"
    batch = 1000
    duty = 0.1

    def interval(self) -> float:
        return self.backend.settings.prune_interval

    async def tick(self) -> None:
        statements, settings = self.backend.statements, self.backend.settings
        async with self.backend.acquire() as conn, self._alone(conn, PRUNE_LOCK) as mine:
            if not mine:
                return
            last_id = 0
            while True:
                started = time.monotonic()
                row = await conn.fetchrow(
                    statements.prune, settings.retention, settings.failed_retention,
                    self.batch, last_id,
                )
                if row["deleted"]:
                    logger.info("pruned %s finished jobs past retention", row["deleted"])
                if row["last_id"] is None:
                    break
                last_id = row["last_id"]
                await asyncio.sleep((time.monotonic() - started) * (1 / self.duty - 1))
            await conn.execute(statements.fold_counts)


class Vacuumer(Service):
    """Vacuums the jobs table once dead row versions pile up.

    Each job leaves dead versions behind (claim and completion are updates); until a vacuum they
    bloat the table and the partial indexes that the rescuer, the scheduler and ``stats`` read
    (claims read the ready ring, which is truncated instead). Autovacuum normally takes care of
    it; where it is off or behind, this does, one worker at a time.
    """

    name = "vacuuming"
    min_dead = 20_000

    def interval(self) -> float:
        return self.backend.settings.vacuum_interval

    async def tick(self) -> None:
        statements = self.backend.statements
        async with self.backend.acquire() as conn:
            row = await conn.fetchrow(statements.jobs_dead_rows)
            if row is None or row["dead"] < self.min_dead + row["live"] // 20:
                return
            async with self._alone(conn, VACUUM_LOCK) as mine:
                if not mine:
                    return
                started = time.monotonic()
                await conn.execute(statements.vacuum_jobs)
                logger.info("vacuumed the jobs table (%s dead row versions) in %.1f s",
                            row["dead"], time.monotonic() - started)
