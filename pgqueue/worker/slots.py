"""The jobs a worker holds, from its claim until its outcome is written.

A held job is in one of three places: claimed and waiting for a free slot (``ready``), running
(``running``), or finished with its outcome not yet written. ``held`` is all three; the claim
loop sizes its next claim from them (``room``), and the jobs still held when a connection is lost
are the ones the database must not give to anyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import asyncpg

from ..context import JobContext
from ..job import Job
from .pace import ClaimPace

logger = logging.getLogger("pgqueue.worker")


@dataclass(slots=True)
class Running:
    job: Job
    ctx: JobContext
    task: asyncio.Task[None]
    stop_reason: str | None = None  # "cancelled" by a user, "shutdown", or None


class Slots:
    def __init__(self, concurrency: int, pace: ClaimPace) -> None:
        self.concurrency = concurrency
        self.pace = pace
        self.ready: deque[asyncpg.Record] = deque()
        self.running: dict[int, Running] = {}
        self.held: set[int] = set()
        self.freed = asyncio.Event()
        """Set when a slot frees up or an outcome is written: room for the next claim."""
        self._cancelled_ahead: set[int] = set()

    def room(self) -> int:
        """How many jobs to claim now: free slots, plus those to claim ahead (``ClaimPace``).
        Outcomes still waiting to be written hold slots beyond two concurrencies' worth, so a slow
        database pushes back on claiming instead of piling up results in memory."""
        unwritten = len(self.held) - len(self.running) - len(self.ready)
        return (
            self.concurrency
            + self.pace.ahead
            - len(self.running)
            - len(self.ready)
            - max(0, unwritten - 2 * self.concurrency)
        )

    def claimed(self, rows: list[asyncpg.Record]) -> None:
        self.ready.extend(rows)
        self.held.update(row["id"] for row in rows)

    def next_to_start(self) -> asyncpg.Record | None:
        """The next claimed job to start, if a slot is free (skipping jobs cancelled meanwhile)."""
        while self.ready and len(self.running) < self.concurrency:
            row = self.ready.popleft()
            if row["id"] not in self._cancelled_ahead:
                return row
            self._cancelled_ahead.discard(row["id"])
            self.held.discard(row["id"])
        return None

    def take_ready(self) -> list[int]:
        """Empty the claimed-but-not-started jobs (a stopping worker hands them back)."""
        ids = [row["id"] for row in self.ready]
        self.ready.clear()
        return ids

    def cancel(self, job_id: int) -> None:
        """The job was cancelled: stop it if it runs, never start it if it waits."""
        running = self.running.get(job_id)
        if running is None:
            if job_id in self.held:
                self._cancelled_ahead.add(job_id)
            return
        if running.stop_reason is None:
            logger.info("job %s %s: cancelled while running; stopping it", job_id, running.job.task)
            self.stop(running, "cancelled")

    @staticmethod
    def stop(running: Running, reason: str) -> None:
        running.stop_reason = reason
        running.ctx.signal_cancelled()
        running.task.cancel()

    def release(self, job_ids: list[int]) -> None:
        """These jobs' outcomes are written (or will never be): they are no longer held."""
        self.held.difference_update(job_ids)
        self.freed.set()
