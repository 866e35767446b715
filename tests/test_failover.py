"""Failover: a primary with a synchronous standby, a multi-host DSN, the primary killed mid-stream.

Two private clusters (``initdb``, ``pg_basebackup -R``), a producer enqueueing and a real worker
process, both on ``postgresql://…@primary,standby/…?target_session_attrs=read-write``. The primary
is killed (``pg_ctl stop -m immediate``) with jobs in flight and the standby promoted: every
enqueue that returned is on the new primary and runs there, and the worker never exits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pgqueue import PgQueue
from pgqueue.migrate import upgrade
from tests import worker_tasks
from tests.helpers import eventually, start_worker, stop_worker
from tests.servers import PG_BIN, Cluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PG_BIN is None or not (PG_BIN / "pg_basebackup").exists(),
                       reason="needs PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup)"),
]

STANDBY = "standby1"


@contextlib.asynccontextmanager
async def _primary_and_standby() -> AsyncIterator[tuple[Cluster, Cluster]]:
    primary = Cluster("primary")
    standby = Cluster(STANDBY)
    try:
        primary.initdb(synchronous_standby_names=STANDBY, wal_level="replica").start()
        await asyncio.to_thread(standby.standby_of, primary)
        standby.start()

        async def synchronous() -> bool:
            conn = await asyncpg.connect(primary.url())
            try:
                return await conn.fetchval("SELECT count(*) FROM pg_stat_replication "
                                           "WHERE application_name = $1 AND sync_state = 'sync'",
                                           STANDBY) == 1
            finally:
                await conn.close()

        await eventually(synchronous, timeout=30, what="the standby to replicate synchronously")
        yield primary, standby
    finally:
        primary.remove()
        standby.remove()


async def _produce(producer: PgQueue, acknowledged: list[int], stop: asyncio.Event) -> None:
    """Enqueue one job per transaction until ``stop``; keep the ids of those that returned."""
    i = 0
    while not stop.is_set():
        i += 1
        try:
            job = await producer.enqueue(worker_tasks.noop.name, i)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await asyncio.sleep(0.05)  # the database is away: pace the retries, not a sync point
            continue
        acknowledged.append(job.id)


async def test_a_failover_loses_no_acknowledged_job_and_the_worker_carries_on() -> None:
    async with asyncio.timeout(85), _primary_and_standby() as (primary, standby):
        hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
        dsn = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
        await asyncio.to_thread(upgrade, dsn, "pgqueue")
        conn = await asyncpg.connect(primary.url())
        await conn.execute(worker_tasks.CREATE_RUNS)
        await conn.close()

        worker = start_worker(dsn, "--concurrency", "8")
        acknowledged: list[int] = []
        stop = asyncio.Event()
        producer = PgQueue(dsn=dsn, pool_min_size=1, pool_max_size=2)
        output = ""
        try:
            async with producer:
                producing = asyncio.create_task(_produce(producer, acknowledged, stop))
                observer = await asyncpg.connect(primary.url())

                async def in_flight() -> bool:
                    # Some jobs done, some still queued or running: the kill lands mid-stream.
                    done, waiting = await observer.fetchrow(
                        "SELECT count(*) FILTER (WHERE status = 'succeeded'), "
                        "count(*) FILTER (WHERE status IN ('queued', 'running')) FROM pgqueue.jobs")
                    return done >= 20 and waiting > 0

                await eventually(in_flight, timeout=30, what="jobs in flight")
                await observer.close()
                await asyncio.to_thread(primary.stop, "immediate")
                at_kill = len(acknowledged)
                await asyncio.to_thread(standby.promote)
                await eventually(lambda: _more(acknowledged, at_kill + 50), timeout=30,
                                 what="enqueues to succeed on the new primary")
                stop.set()
                await producing

            new_primary = await asyncpg.connect(standby.url())
            try:
                async def all_ran() -> bool:
                    assert worker.poll() is None, "the worker exited"
                    return await new_primary.fetchval(
                        "SELECT count(*) FROM pgqueue.jobs WHERE id = ANY($1) "
                        "AND status = 'succeeded'", acknowledged) == len(acknowledged)

                await eventually(all_ran, timeout=40, what="every acknowledged job to run")
                ran = await new_primary.fetchval(
                    "SELECT count(DISTINCT job_id) FROM test_runs WHERE job_id = ANY($1)",
                    acknowledged)
                assert ran == len(acknowledged)
            finally:
                await new_primary.close()
            assert worker.poll() is None, "the worker exited"
        finally:
            stop.set()
            output = stop_worker(worker)
        # The worker's log names the server it reached after the failover, and the one before.
        assert (f"connected to 127.0.0.1:{standby.port}, no longer to 127.0.0.1:{primary.port}"
                in output), output
        assert "Traceback" not in output, output


async def _more(acknowledged: list[int], count: int) -> bool:
    return len(acknowledged) >= count
