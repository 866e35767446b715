"""Sync applications: ``enqueue_sync`` through a psycopg 3 connection in its transaction, and
``SyncQueue`` for inspect, control and bulk calls without an event loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psycopg
import pytest

from pgqueue import DatabaseUnavailable, JobStatus, PgQueue, SchemaError, SyncQueue
from pgqueue.testing import drain


async def test_enqueue_sync_writes_in_the_psycopg_connections_transaction(
    pgq: PgQueue, database_url: str
) -> None:
    @pgq.task(queue="mail")
    async def welcome(user_id: int) -> int:
        return user_id

    def in_transactions() -> tuple[int, int]:
        with psycopg.connect(database_url) as conn:  # not autocommit: a transaction per block
            with conn.transaction():
                conn.execute("CREATE TABLE users (id int)")
            rolled_back = None
            with pytest.raises(RuntimeError), conn.transaction():
                rolled_back = welcome.using(conn).enqueue_sync(1)
                raise RuntimeError("the signup failed")
            with conn.transaction():
                conn.execute("INSERT INTO users VALUES (2)")
                kept = welcome.using(conn, priority=3).enqueue_sync(user_id=2)
                with psycopg.connect(database_url) as other:  # not visible before the commit
                    assert other.execute("SELECT count(*) FROM pgqueue.jobs").fetchone() == (0,)
            return rolled_back.id, kept.id

    rolled_back, kept = await asyncio.to_thread(in_transactions)
    assert await pgq.get_job(rolled_back) is None
    job = await pgq.get_job(kept)
    assert (job.status, job.queue, job.priority, job.kwargs) == (JobStatus.QUEUED, "mail", 3, {"user_id": 2})
    [ran] = await drain(pgq)
    assert (ran.id, ran.result) == (kept, 2)


async def test_enqueue_sync_through_psycopg_keeps_unique_keys_and_batches(
    pgq: PgQueue, database_url: str
) -> None:
    @pgq.task
    async def report(n: int) -> None: ...

    def enqueue() -> tuple[int, int, list[int]]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            first = report.using(conn, unique_key="daily").enqueue_sync(1)
            again = report.using(conn, unique_key="daily").enqueue_sync(2)
            many = report.using(conn).enqueue_many_sync([(3,), (4,)])
            return first.id, again.id, [job.id for job in many]

    first, again, many = await asyncio.to_thread(enqueue)
    assert first == again
    assert [job.args for job in await pgq.get_jobs(many)] == [[3], [4]]


async def test_sync_queue_inspects_and_controls_jobs(pgq: PgQueue, database_url: str) -> None:
    @pgq.task(queue="q", max_attempts=1)
    async def fails() -> None:
        raise RuntimeError("broken")

    @pgq.task(queue="q")
    async def later() -> None: ...

    failed = [await fails.enqueue(), await fails.enqueue()]
    await drain(pgq)
    waiting = await later.using(delay=3600).enqueue()

    def use(sq: SyncQueue) -> None:
        job = sq.get_job(waiting.id)
        assert (job.status, job.task) == (JobStatus.SCHEDULED, later.name)
        assert sq.get_job(10**9) is None
        assert [j.id for j in sq.list_jobs(status="failed")] == [failed[1].id, failed[0].id]
        assert sq.stats() == {"q": {"failed": 2, "scheduled": 1}}
        assert sq.cancel(waiting.id) is True
        assert sq.cancel(waiting.id) is False
        assert sq.retry(waiting.id) is True
        assert sq.cancel_jobs(queue="q") == 1
        assert sq.retry_jobs() == 2
        assert sq.stats() == {"q": {"queued": 2, "cancelled": 1}}
        sq.pause_queue("q")
        assert sq.paused_queues() == ["q"]
        sq.resume_queue("q")
        assert sq.paused_queues() == []
        assert sq.wait(waiting.id, timeout=5).status == JobStatus.CANCELLED
        with pytest.raises(TimeoutError, match="still queued"):
            sq.wait(failed[0].id, timeout=0.3, poll_interval=0.1)
        with pytest.raises(LookupError):
            sq.wait(10**9)

    with SyncQueue(dsn=database_url) as sq:
        await asyncio.to_thread(use, sq)


async def test_sync_queue_wait_polls_until_a_worker_finishes_the_job(pgq: PgQueue) -> None:
    @pgq.task
    async def double(n: int) -> int:
        return 2 * n

    job = await double.enqueue(21)
    sq = pgq.sync()
    try:
        async with pgq.worker():
            done = await asyncio.to_thread(sq.wait, job.id, 30, poll_interval=0.1)
    finally:
        sq.close()
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, 42)


async def test_sync_queue_says_what_is_wrong_with_the_database(empty_database_url: str) -> None:
    with SyncQueue(dsn=empty_database_url) as sq, pytest.raises(SchemaError, match="migrate"):
        await asyncio.to_thread(sq.stats)
    unreachable = SyncQueue(dsn="postgresql://postgres@127.0.0.1:1/test")
    with unreachable, pytest.raises(DatabaseUnavailable, match="127.0.0.1:1"):
        await asyncio.to_thread(unreachable.stats)


def test_importing_pgqueue_does_not_import_psycopg() -> None:
    code = "import sys, pgqueue; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
