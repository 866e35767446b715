"""Sync tasks that ignore their cancellation: Python cannot stop their threads, so what they may
cost is bounded, and their jobs are never run twice at once."""

from __future__ import annotations

import asyncio
import threading

import asyncpg
import pytest

from pgqueue import JobStatus, PgQueue

from . import worker_tasks
from .helpers import eventually, start_worker, stop_worker


async def test_sync_tasks_that_ignore_a_timeout_do_not_starve_later_sync_jobs(pgq: PgQueue) -> None:
    """Twice the concurrency of stuck threads, and a plain sync job still gets a thread."""
    release = threading.Event()

    @pgq.task(timeout=0.3, max_attempts=1)
    def stubborn(i: int) -> None:
        release.wait(120)  # ignores ctx.cancelled

    @pgq.task
    def plain(i: int) -> int:
        return i

    try:
        stuck = await stubborn.enqueue_many(range(4))
        async with pgq.worker(concurrency=2):
            for job in stuck:
                assert (await pgq.wait(job.id, timeout=60)).status == JobStatus.FAILED
            later = await plain.enqueue(7)
            done = await pgq.wait(later.id, timeout=60)
    finally:
        release.set()
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, 7)


async def test_a_worker_stops_once_too_many_threads_are_stuck(pgq: PgQueue) -> None:
    release = threading.Event()

    @pgq.task(timeout=0.3, max_attempts=1)
    def stubborn(i: int) -> None:
        release.wait(120)

    try:
        await stubborn.enqueue_many(range(5))
        worker = pgq.worker(concurrency=2)
        await asyncio.wait_for(worker.run(), timeout=120)  # it stops by itself
    finally:
        release.set()
    assert worker.gave_up is not None
    assert "5 sync tasks timed out or were cancelled but still run" in worker.gave_up


@pytest.mark.slow
async def test_a_stopping_worker_never_hands_back_a_job_whose_code_still_runs(
    database_url: str, db: asyncpg.Connection
) -> None:
    """After the grace period the job's thread is still running: it is handed back to run only
    after the rescue window, the process exits at once (its threads are daemons), and no other
    worker could have taken the job while its code ran."""
    worker_tasks.pgq.settings.dsn = database_url
    async with worker_tasks.pgq:
        job = await worker_tasks.stubborn.enqueue(3600)
    proc = start_worker(database_url, "--shutdown-grace", "0.5")

    async def running() -> bool:
        return await db.fetchval("SELECT status::text FROM pgqueue.jobs WHERE id = $1",
                                 job.id) == "running"

    await eventually(running, what="the stubborn job to start")
    output = stop_worker(proc, timeout=60)  # raises if the process outlives its stuck thread
    row = await db.fetchrow(
        "SELECT status::text, attempts, run_at > now() AS later FROM pgqueue.jobs WHERE id = $1",
        job.id,
    )
    assert proc.returncode == 0, output
    assert dict(row) == {"status": "scheduled", "attempts": 0, "later": True}, output
    assert "ignored its cancellation and still runs in this process" in output
