"""Bulk control: ``cancel_jobs`` and ``retry_jobs`` change every matching job in one bounded
statement, as ``cancel`` and ``retry`` change one."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from pgqueue import JobContext, JobStatus, PgQueue
from pgqueue.testing import drain

from .conftest import FAST


async def _ready_ids(db: asyncpg.Connection) -> set[int]:
    return {row["id"] for row in await db.fetch("SELECT id FROM pgqueue.ready")}


async def test_cancel_jobs_cancels_queued_and_scheduled_jobs_matching_the_filter(
    pgq: PgQueue, db: asyncpg.Connection
) -> None:
    @pgq.task(queue="mail")
    async def send(n: int) -> None: ...

    @pgq.task(queue="mail")
    async def other(n: int) -> None: ...

    queued = [await send.enqueue(i) for i in range(5)]
    scheduled = await send.using(delay=3600).enqueue(99)
    kept = await other.enqueue(1)
    elsewhere = await send.using(queue="sms").enqueue(2)

    n = await pgq.cancel_jobs(queue="mail", task=send.name)

    assert n == 6
    for job in [*queued, scheduled]:
        assert (await pgq.get_job(job.id)).status == JobStatus.CANCELLED
    assert (await pgq.get_job(kept.id)).status == JobStatus.QUEUED
    assert (await pgq.get_job(elsewhere.id)).status == JobStatus.QUEUED
    assert await _ready_ids(db) == {kept.id, elsewhere.id}  # no stale ready rows left behind
    assert (await pgq.stats())["mail"] == {"queued": 1, "cancelled": 6}
    assert await pgq.cancel_jobs(queue="mail", task=send.name) == 0


async def test_cancel_jobs_by_status_leaves_the_other_statuses(pgq: PgQueue) -> None:
    @pgq.task
    async def noop() -> None: ...

    queued = await noop.enqueue()
    scheduled = await noop.using(delay=3600).enqueue()
    assert await pgq.cancel_jobs(status="scheduled") == 1
    assert (await pgq.get_job(scheduled.id)).status == JobStatus.CANCELLED
    assert (await pgq.get_job(queued.id)).status == JobStatus.QUEUED


async def test_cancel_jobs_stops_running_jobs_on_their_worker(database_url: str) -> None:
    # Heartbeats (which also notice cancelled jobs) far apart: the statement's notification
    # must be what stops the jobs.
    pgq = PgQueue(dsn=database_url, **{**FAST, "heartbeat_interval": 600, "rescue_after": 1800})
    async with pgq:
        await _cancel_two_running_jobs(pgq)


async def _cancel_two_running_jobs(pgq: PgQueue) -> None:
    started: list[int] = []
    stopped: list[int] = []
    all_started, all_stopped = asyncio.Event(), asyncio.Event()

    @pgq.task(queue="long")
    async def long(ctx: JobContext) -> None:
        started.append(ctx.job.id)
        if len(started) == 2:
            all_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.append(ctx.job.id)
            if len(stopped) == 2:
                all_stopped.set()
            raise

    jobs = [await long.enqueue(), await long.enqueue()]
    async with pgq.worker(concurrency=2):
        await asyncio.wait_for(all_started.wait(), 30)
        assert await pgq.cancel_jobs(status="running", queue="long") == 2
        await asyncio.wait_for(all_stopped.wait(), 30)  # stopped on the worker, not at its exit
        for job in jobs:
            assert (await pgq.wait(job.id, timeout=30)).status == JobStatus.CANCELLED
    assert (await pgq.stats())["long"] == {"cancelled": 2}


async def test_retry_jobs_puts_failed_jobs_back_to_run_now_with_one_more_attempt(
    pgq: PgQueue, db: asyncpg.Connection
) -> None:
    @pgq.task(queue="flaky", max_attempts=1)
    async def flaky(n: int, ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first time")
        return n

    @pgq.task(queue="flaky", max_attempts=1)
    async def broken() -> None:
        raise RuntimeError("always")

    jobs = [await flaky.enqueue(i) for i in range(3)]
    other = await broken.enqueue()
    await drain(pgq)
    assert (await pgq.stats())["flaky"] == {"failed": 4}

    assert await pgq.retry_jobs(task=flaky.name) == 3
    assert {job.id for job in jobs} <= await _ready_ids(db)
    for job in jobs:
        now = await pgq.get_job(job.id)
        assert (now.status, now.attempts, now.max_attempts) == (JobStatus.QUEUED, 1, 2)
    assert (await pgq.get_job(other.id)).status == JobStatus.FAILED
    assert (await pgq.stats())["flaky"] == {"queued": 3, "failed": 1}

    await drain(pgq)
    assert [(await pgq.get_job(j.id)).result for j in jobs] == [0, 1, 2]
    assert (await pgq.stats())["flaky"] == {"succeeded": 3, "failed": 1}


async def test_retry_jobs_of_cancelled_jobs_and_of_both(pgq: PgQueue) -> None:
    @pgq.task(max_attempts=1)
    async def fails() -> None:
        raise RuntimeError("no")

    failed = await fails.enqueue()
    await drain(pgq)
    cancelled = await fails.using(delay=3600).enqueue()
    await pgq.cancel(cancelled.id)
    assert await pgq.retry_jobs(status="cancelled") == 1
    assert (await pgq.get_job(failed.id)).status == JobStatus.FAILED
    await pgq.cancel(cancelled.id)
    assert await pgq.retry_jobs(status=None) == 2
    assert (await pgq.stats())["default"] == {"queued": 2}


async def test_a_bulk_call_changes_at_most_its_limit(pgq: PgQueue) -> None:
    @pgq.task
    async def noop() -> None: ...

    jobs = [await noop.enqueue() for _ in range(5)]
    assert await pgq.cancel_jobs(limit=2) == 2
    statuses = [(await pgq.get_job(job.id)).status for job in jobs]
    assert statuses == [JobStatus.CANCELLED] * 2 + [JobStatus.QUEUED] * 3  # oldest first
    assert await pgq.retry_jobs(status="cancelled", limit=1) == 1
    assert await pgq.cancel_jobs() == 4


@pytest.mark.parametrize(
    ("call", "kwargs", "message"),
    [
        ("cancel_jobs", {"status": "succeeded"}, "cannot cancel succeeded jobs"),
        ("cancel_jobs", {"status": "nope"}, "unknown status 'nope'"),
        ("retry_jobs", {"status": "running"}, "cannot retry running jobs"),
        ("retry_jobs", {"queue": ""}, "queue must be a non-empty string"),
        ("cancel_jobs", {"limit": 0}, "limit must be a positive integer"),
    ],
)
async def test_bad_filters_are_refused_before_anything_changes(
    pgq: PgQueue, call: str, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await getattr(pgq, call)(**kwargs)


async def test_bulk_cancel_racing_workers_keeps_every_count_right(
    pgq: PgQueue, db: asyncpg.Connection
) -> None:
    """Cancels while workers claim and finish the same jobs: each job ends once, the kept counts
    match the rows, and no ready row is left behind."""

    @pgq.task(queue="race")
    async def quick(n: int) -> int:
        await asyncio.sleep(0.001)
        return n

    await quick.using().enqueue_many(list(range(600)))
    cancelled = 0
    async with pgq.worker(concurrency=8), pgq.worker(concurrency=8):
        for _ in range(20):
            cancelled += await pgq.cancel_jobs(queue="race", limit=15)
            await asyncio.sleep(0)
        while await db.fetchval("SELECT count(*) FROM pgqueue.jobs WHERE status IN "
                                "('queued', 'running')"):
            await asyncio.sleep(0.05)
    rows = {r["status"]: r["n"] for r in await db.fetch(
        "SELECT status::text, count(*) AS n FROM pgqueue.jobs GROUP BY status")}
    assert rows.get("cancelled", 0) == cancelled > 0
    assert (await pgq.stats())["race"] == rows
    assert sum(rows.values()) == 600
    assert await db.fetchval("SELECT count(*) FROM pgqueue.ready") == 0
