"""The job storage of migrations 0002 and 0006: the ready ring (unlogged, restored after a crash)
and the kept counts, and the way there from the schema of 0001."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from pgqueue import JobStatus, PgQueue
from pgqueue.migrate import upgrade
from pgqueue.worker.maintenance import Pruner
from pgqueue.worker.ring import ReadyRing

from .conftest import FAST
from .helpers import eventually
from .servers import PG_BIN, Cluster
from .test_plans import _nodes

FULL_COUNT = """
SELECT queue, status::text AS status, count(*) AS n FROM pgqueue.jobs
GROUP BY queue, status ORDER BY queue, status
"""


def _as_dict(rows: list[asyncpg.Record]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["queue"], {})[row["status"]] = row["n"]
    return counts


async def test_kept_counts_match_a_full_count_through_every_move(pgq: PgQueue, db) -> None:
    """Succeed, fail, cancel (queued and running), retry, rescue, prune: ``stats`` agrees with
    counting every row."""
    started = asyncio.Event()

    @pgq.task(queue="a")
    async def fine(i: int) -> int:
        return i

    @pgq.task(queue="b", max_attempts=1)
    async def broken() -> None:
        raise RuntimeError("no")

    @pgq.task(queue="b")
    async def endless() -> None:
        started.set()
        await asyncio.Event().wait()

    await fine.enqueue_many(range(5))
    failing = [await broken.enqueue() for _ in range(3)]
    await fine.using(delay=3600).enqueue(99)
    cancelled_queued = await fine.enqueue(100)
    assert await pgq.cancel(cancelled_queued.id)
    running = await endless.enqueue()
    async with pgq.worker(concurrency=4):
        for job in failing:
            assert (await pgq.wait(job.id, timeout=30)).status == JobStatus.FAILED
        await asyncio.wait_for(started.wait(), timeout=30)
        assert await pgq.cancel(running.id)
        assert await pgq.retry(failing[0].id)
        assert (await pgq.wait(failing[0].id, timeout=30)).status == JobStatus.FAILED
        assert await pgq.retry(cancelled_queued.id)
        assert (await pgq.wait(cancelled_queued.id, timeout=30)).status == JobStatus.SUCCEEDED
        await eventually(lambda: _settled(db), what="every job to settle")
    # A job whose worker is gone, on its last attempt: the rescuer fails it.
    await db.execute("INSERT INTO pgqueue.jobs (task, queue, status, attempts, max_attempts, "
                     "worker_id) VALUES ('gone', 'c', 'running', 1, 1, 424242)")
    old = await db.fetchval("INSERT INTO pgqueue.jobs (task, queue, status, finished_at) "
                            "VALUES ('old', 'a', 'succeeded', now() - interval '30 days') RETURNING id")
    await db.execute("INSERT INTO pgqueue.job_count_changes VALUES ('a', 'succeeded', 1)")
    async with pgq.worker():
        await eventually(lambda: _rescued(db), what="the rescue")
    await Pruner(pgq.backend).tick()  # prunes the old job, then folds the counts
    assert await db.fetchval("SELECT count(*) FROM pgqueue.jobs WHERE id = $1", old) == 0
    assert await db.fetchval("SELECT count(*) FROM pgqueue.job_count_changes") == 0
    assert await pgq.stats() == _as_dict(await db.fetch(FULL_COUNT))


async def _settled(db: asyncpg.Connection) -> bool:
    return not await db.fetchval(
        "SELECT count(*) FROM pgqueue.jobs WHERE status IN ('queued', 'running')")


async def _rescued(db: asyncpg.Connection) -> bool:
    return await db.fetchval("SELECT status::text FROM pgqueue.jobs WHERE task = 'gone'") == "failed"


async def test_stats_read_no_history_and_dashboards_share_a_read(pgq: PgQueue, db) -> None:
    await db.execute("INSERT INTO pgqueue.jobs (task, status, finished_at) "
                     "SELECT 't', 'succeeded', now() FROM generate_series(1, 20000)")
    async with pgq.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off; "  # as stats() reads
                           "SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {pgq.statements.stats}")
    jobs_scans = [node for node in _nodes(json.loads(plan)[0]["Plan"])
                  if node.get("Relation Name") == "jobs"]
    # Only the partial indexes of unfinished jobs: history is never read.
    assert sorted(node.get("Index Name") for node in jobs_scans) == [
        "jobs_running", "jobs_scheduled", "jobs_waiting"], jobs_scans
    first, second = await asyncio.gather(pgq.stats(max_age=5), pgq.stats(max_age=5))
    assert first is second  # one read, shared
    assert await pgq.stats(max_age=5) is first
    assert await pgq.stats() is not first  # max_age 0: read now


async def test_a_slot_is_never_truncated_under_an_uncommitted_enqueue(pgq: PgQueue, database_url: str) -> None:
    @pgq.task
    async def noop(i: int) -> int:
        return i

    producer = await asyncpg.connect(database_url)
    try:
        tx = producer.transaction()
        await tx.start()
        job = await noop.using(producer).enqueue(1)
        slot = await producer.fetchval("SELECT slot FROM pgqueue.ready WHERE id = $1", job.id)
        ring = ReadyRing(pgq.backend)

        async def slot_passed() -> bool:
            return await producer.fetchval("SELECT pgqueue.ready_slot()") != slot

        await eventually(slot_passed, what="the ring to move on")  # the slot is no longer current
        await ring.tick()  # the slot looks empty to everyone else, and is locked by the producer
        await tx.commit()
    finally:
        await producer.close()
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, 1)


async def test_upgrade_from_0001_moves_jobs_of_every_status(empty_database_url: str) -> None:
    await asyncio.to_thread(upgrade, empty_database_url, "pgqueue", "0001")
    db = await asyncpg.connect(empty_database_url)
    try:
        for status in ("queued", "scheduled", "running", "succeeded", "failed", "cancelled"):
            await db.execute(
                "INSERT INTO pgqueue.jobs (task, queue, status, attempts, run_at, finished_at) "
                "SELECT 'tests.t', 'q', $1::pgqueue.job_status, 1, now() - interval '1 hour', "
                "CASE WHEN $1 IN ('succeeded', 'failed', 'cancelled') THEN now() END "
                "FROM generate_series(1, 3)", status)
        await asyncio.to_thread(upgrade, empty_database_url, "pgqueue")
        ready = await db.fetchval("SELECT array_agg(j.status::text) FROM pgqueue.ready r "
                                  "JOIN pgqueue.jobs j ON j.id = r.id")
        assert ready == ["queued"] * 3
        pgq = PgQueue(dsn=empty_database_url, **FAST)
        async with pgq:
            assert await pgq.stats() == _as_dict(await db.fetch(FULL_COUNT))

            @pgq.task(name="tests.t", queue="q")
            async def t() -> str:
                return "ran"

            async with pgq.worker(queues=["q"]):
                await eventually(lambda: _no_queued(db), what="the moved jobs to run")
            assert await pgq.stats() == _as_dict(await db.fetch(FULL_COUNT))
    finally:
        await db.close()


async def _no_queued(db: asyncpg.Connection) -> bool:
    return not await db.fetchval("SELECT count(*) FROM pgqueue.jobs WHERE status = 'queued'")


@pytest.mark.slow
@pytest.mark.skipif(PG_BIN is None, reason="needs PostgreSQL's server binaries (initdb, pg_ctl)")
async def test_queued_jobs_are_claimable_again_after_the_server_crashes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ring is unlogged: crash recovery empties it. The worker's ring duty puts the queued
    jobs back, and each runs once."""
    cluster = Cluster("crash").initdb()
    try:
        cluster.start()
        dsn = cluster.url()
        await asyncio.to_thread(upgrade, dsn, "pgqueue")
        pgq = PgQueue(dsn=dsn, **FAST)
        runs: list[int] = []

        @pgq.task
        async def count(i: int) -> int:
            runs.append(i)
            return i

        async with pgq:
            jobs = await count.enqueue_many(range(30))
        await asyncio.to_thread(cluster.stop, "immediate")
        await asyncio.to_thread(cluster.start)
        db = await asyncpg.connect(dsn)
        try:
            emptied = await db.fetchrow("SELECT (SELECT count(*) FROM pgqueue.ready) AS ready, "
                                        "(SELECT count(*) FROM pgqueue.ready_intact) AS intact")
            assert (emptied["ready"], emptied["intact"]) == (0, 0)  # what a crash leaves
        finally:
            await db.close()
        async with pgq, pgq.worker(concurrency=4):
            done = [await pgq.wait(job.id, timeout=60) for job in jobs]
        assert [job.status for job in done] == [JobStatus.SUCCEEDED] * 30
        assert sorted(runs) == list(range(30))
        assert "put 30 queued jobs back" in caplog.text
    finally:
        cluster.remove()


@pytest.mark.slow
@pytest.mark.skipif(PG_BIN is None, reason="needs PostgreSQL's server binaries (initdb, pg_ctl)")
async def test_a_server_crash_mid_drain_loses_no_job() -> None:
    """The server is killed (no shutdown checkpoint) while a worker drains: claims it had not
    flushed are forgotten and the unlogged ring comes back empty, yet every job ends succeeded,
    having run at least once, and the worker carries on by itself."""
    cluster = Cluster("crash-drain").initdb()
    try:
        cluster.start()
        dsn = cluster.url()
        await asyncio.to_thread(upgrade, dsn, "pgqueue")
        pgq = PgQueue(dsn=dsn, **FAST)
        runs: list[int] = []
        under_way = asyncio.Event()

        @pgq.task
        async def step(i: int) -> int:
            runs.append(i)
            if len(runs) == 100:
                under_way.set()
            await asyncio.sleep(0.005)
            return i

        async with pgq:
            jobs = await step.enqueue_many(range(1000))
            async with pgq.worker(concurrency=8):
                await under_way.wait()
                await asyncio.to_thread(cluster.stop, "immediate")
                await asyncio.to_thread(cluster.start)
                done = [await pgq.wait(job.id, timeout=120) for job in jobs]
        assert [job.status for job in done] == [JobStatus.SUCCEEDED] * 1000
        assert [job.result for job in done] == list(range(1000))
        assert set(runs) == set(range(1000))
    finally:
        cluster.remove()
