"""The worker's background duties, one class each: heartbeat, rescue, schedule, prune, periodic.

Each runs in its own asyncio task, survives database outages (one log line per outage) and is
cancelled when the worker stops. Duties that one worker should do at a time (rescue, prune) take a
transaction-scoped advisory lock and skip their turn if another worker holds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg

from ..database import CONNECTION_ERRORS
from ..queue import Periodic, PgQueue
from .outage import OutageLog

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("pgqueue.worker")

# Advisory lock keys, per schema (the other key is the schema's hash).
RESCUE_LOCK = 1
PRUNE_LOCK = 2
VACUUM_LOCK = 3


class Service:
    """Calls ``tick()`` every ``interval()`` seconds until cancelled."""

    name = "service"

    def __init__(self, pgq: PgQueue) -> None:
        self.pgq = pgq
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

    async def _locked(self, lock: int, work: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        async with self.pgq.acquire() as conn:
            async with conn.transaction():
                if await conn.fetchval(self.pgq.statements.try_maintenance_lock, lock):
                    await work(conn)


class Heartbeat(Service):
    """Proves the worker alive, re-registers it if it was declared dead, and catches
    cancellations whose notification was missed."""

    name = "heartbeat"

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.pgq)
        self.worker = worker

    def interval(self) -> float:
        return self.pgq.settings.heartbeat_interval

    async def tick(self) -> None:
        async with self.pgq.acquire() as conn:
            alive = await conn.fetchval(self.pgq.statements.heartbeat, self.worker.id)
            if alive is None:
                old = self.worker.id
                await self.worker.register(conn)
                logger.warning(
                    "worker %s was declared dead (no heartbeat for %s s) and its jobs were given "
                    "to others; carrying on as worker %s",
                    old, self.pgq.settings.rescue_after, self.worker.id,
                )
            running = self.worker.running_ids()
            if running:
                rows = await conn.fetch(self.pgq.statements.cancelled_among, running)
                for row in rows:
                    self.worker.cancel_running(row["id"])


class Rescuer(Service):
    """Gives the running jobs of dead workers back to the queue (or fails them when they are out
    of attempts)."""

    name = "rescue"

    def interval(self) -> float:
        return self.pgq.settings.heartbeat_interval

    async def tick(self) -> None:
        await self._locked(RESCUE_LOCK, self._rescue)

    async def _rescue(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(self.pgq.statements.rescue, self.pgq.settings.rescue_after)
        for row in rows:
            logger.warning(
                "job %s %s: its worker stopped heartbeating during attempt %s; %s",
                row["id"], row["task"], row["attempts"],
                "requeued" if row["status"] == "queued" else "failed, no attempts left",
            )


class Scheduler(Service):
    """Moves scheduled jobs (delayed, or waiting out a retry backoff) to queued when they are due."""

    name = "scheduling"

    def interval(self) -> float:
        return self.pgq.settings.poll_interval

    async def tick(self) -> float:
        async with self.pgq.acquire() as conn:
            row = await conn.fetchrow(self.pgq.statements.promote_scheduled)
        if row["promoted"] >= 1000:
            return 0.0  # more are due right now
        next_due: datetime | None = row["next_due"]
        if next_due is None:
            return self.interval()
        wait = (next_due - datetime.now(UTC)).total_seconds()
        return min(self.interval(), max(0.0, wait))


class Pruner(Service):
    """Deletes finished jobs older than their retention."""

    name = "pruning"
    batch = 1000

    def interval(self) -> float:
        return self.pgq.settings.prune_interval

    async def tick(self) -> None:
        await self._locked(PRUNE_LOCK, self._prune)

    async def _prune(self, conn: asyncpg.Connection) -> None:
        settings = self.pgq.settings
        while True:
            status = await conn.execute(
                self.pgq.statements.prune, settings.retention, settings.failed_retention, self.batch
            )
            deleted = int(status.split()[-1])
            if deleted:
                logger.info("pruned %s finished jobs past retention", deleted)
            if deleted < self.batch:
                return


class Vacuumer(Service):
    """Vacuums the jobs table once dead row versions pile up.

    Each job leaves dead versions behind (claim and completion are updates); until a vacuum, the
    claim index keeps their entries and claims step over them, slower with every job. Autovacuum
    normally takes care of it; where it is off or behind, this does, one worker at a time.
    """

    name = "vacuuming"
    min_dead = 20_000

    def interval(self) -> float:
        return self.pgq.settings.vacuum_interval

    async def tick(self) -> None:
        statements = self.pgq.statements
        async with self.pgq.acquire() as conn:
            row = await conn.fetchrow(statements.jobs_dead_rows)
            if row is None or row["dead"] < self.min_dead + row["live"] // 20:
                return
            if not await conn.fetchval(statements.try_session_lock, VACUUM_LOCK):
                return
            try:
                started = time.monotonic()
                await conn.execute(statements.vacuum_jobs)
                logger.info("vacuumed the jobs table (%s dead row versions) in %.1f s",
                            row["dead"], time.monotonic() - started)
            finally:
                await conn.fetchval(statements.release_session_lock, VACUUM_LOCK)


class PeriodicEnqueuer(Service):
    """Enqueues one periodic task on its cron schedule; the slot is taken in the same transaction
    as the enqueue, so each slot runs once across all workers and none is lost to a crash."""

    def __init__(self, pgq: PgQueue, periodic: Periodic) -> None:
        self.name = f"periodic {periodic.task.name}"
        super().__init__(pgq)
        self.periodic = periodic

    def interval(self) -> float:
        return self.pgq.settings.poll_interval

    async def tick(self) -> float:
        from croniter import croniter

        now = datetime.now(UTC)
        slot: datetime = croniter(self.periodic.cron, now).get_prev(datetime)
        async with self.pgq.acquire() as conn:
            async with conn.transaction():
                first = await conn.fetchval(
                    self.pgq.statements.claim_periodic, self.periodic.task.name, slot
                )
                if first is False:
                    slot_key = f"{self.periodic.task.name}@{slot.isoformat()}"
                    job = await self.periodic.task.using(conn, unique_key=slot_key).enqueue(
                        *self.periodic.args, **self.periodic.kwargs
                    )
                    logger.info("job %s %s: enqueued for the periodic slot %s", job.id, job.task,
                                slot.isoformat())
        upcoming: datetime = croniter(self.periodic.cron, now).get_next(datetime)
        return max(0.01, (upcoming - datetime.now(UTC)).total_seconds())
