"""Retention: finished jobs are pruned after their own retention, in batches that commit one by
one; unfinished jobs never are."""

from __future__ import annotations

import asyncio

import asyncpg

from pgqueue import PgQueue
from pgqueue.worker.maintenance import Pruner

from .helpers import eventually

HOUR = 3600.0


async def _insert(db: asyncpg.Connection, status: str, finished_hours_ago: float | None, n: int = 1) -> list[int]:
    return [row["id"] for row in await db.fetch(
        "INSERT INTO pgqueue.jobs (task, status, created_at, finished_at) "
        "SELECT 't', $1::pgqueue.job_status, now() - interval '90 days', "
        "now() - make_interval(secs => $2) FROM generate_series(1, $3) RETURNING id",
        status, None if finished_hours_ago is None else finished_hours_ago * HOUR, n,
    )]


async def test_each_final_status_is_kept_for_its_own_retention(database_url: str, db) -> None:
    pgq = PgQueue(dsn=database_url, retention=HOUR, failed_retention=24 * HOUR)
    kept = [
        *await _insert(db, "succeeded", 0.5),
        *await _insert(db, "cancelled", 0.5),
        *await _insert(db, "failed", 2),  # within the longer retention of failures
        *await _insert(db, "queued", None),
        *await _insert(db, "scheduled", None),
        *await _insert(db, "running", None),
    ]
    await _insert(db, "succeeded", 2)
    await _insert(db, "cancelled", 2)
    await _insert(db, "failed", 25)
    async with pgq:
        await Pruner(pgq.backend).tick()
    assert await db.fetchval("SELECT array_agg(id ORDER BY id) FROM pgqueue.jobs") == kept


async def test_each_batch_commits_before_the_next_one(database_url: str, db) -> None:
    """A row locked by someone else stops the second batch; the first is already gone for
    everyone (in one transaction it would still be there)."""
    pgq = PgQueue(dsn=database_url, retention=HOUR)
    pruner_batch = Pruner.batch
    ids = await _insert(db, "succeeded", 2, n=pruner_batch + 10)
    locker = await asyncpg.connect(database_url)
    try:
        await locker.execute("BEGIN")
        await locker.execute("SELECT 1 FROM pgqueue.jobs WHERE id = $1 FOR UPDATE", ids[-1])
        async with pgq:
            pruning = asyncio.create_task(Pruner(pgq.backend).tick())

            async def blocked() -> bool:
                return bool(await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM%'"))

            await eventually(blocked, what="the pruner to wait for the locked row")
            assert await db.fetchval("SELECT count(*) FROM pgqueue.jobs") == 10
            await locker.execute("ROLLBACK")
            await asyncio.wait_for(pruning, timeout=60)
    finally:
        await locker.close()
    assert await db.fetchval("SELECT count(*) FROM pgqueue.jobs") == 0
