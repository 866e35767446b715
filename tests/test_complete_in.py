"""``ctx.complete_in``: a job completed in the task's own transaction (CONTRACT §10).

The task's row and the job's completion commit together; what the task returns afterwards
changes nothing; a rolled-back transaction leaves the worker's own outcome to apply; a job that no
longer belongs to the run (cancelled, rescued) raises ``JobLost`` and nothing is written.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import asyncpg
import pytest

from pgqueue import JobStatus, PgQueue

from . import flow_tasks
from .conftest import RESCUE_QUICKLY
from .helpers import eventually, start_worker, stop_worker

FLOWS = "tests.flow_tasks:pgq"


@pytest.fixture
def worker(database_url: str, flows: PgQueue) -> Iterator[None]:
    proc = start_worker(database_url, "--concurrency", "4", app=FLOWS)
    yield
    stop_worker(proc)


async def _payments(db: asyncpg.Connection) -> list[tuple[int, int]]:
    return [tuple(r) for r in await db.fetch("SELECT job_id, attempt FROM payments ORDER BY 1, 2")]


async def test_the_tasks_row_and_the_completion_commit_together_once(
    flows: PgQueue, worker: None, db
) -> None:
    job = await flow_tasks.pay.enqueue(7)
    parent_of = await flow_tasks.step.using(after=[job]).enqueue("after payment")

    done = await flows.wait(job.id, timeout=60)

    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"paid": 7, "by": "complete_in"}  # the worker wrote no other outcome
    assert done.attempts == 1 and done.finished_at is not None and done.worker_id is None
    assert await _payments(db) == [(job.id, 1)]
    assert (await flows.wait(parent_of.id, timeout=60)).status is JobStatus.SUCCEEDED  # released
    assert (await flows.stats())["default"] == {"succeeded": 2}


async def test_a_rolled_back_completion_leaves_the_workers_outcome(
    flows: PgQueue, worker: None, db
) -> None:
    job = await flow_tasks.pay.enqueue(8, mode="rollback")
    done = await flows.wait(job.id, timeout=60)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"paid": 8, "by": "return"}
    assert await _payments(db) == []


@pytest.mark.parametrize("connection", [False, True], ids=["AsyncSession", "AsyncConnection"])
async def test_sqlalchemy_sessions_and_connections(flows: PgQueue, db, connection: bool) -> None:
    job = await flow_tasks.pay_orm.enqueue(9, connection=connection)
    async with flows.worker(concurrency=1):
        done = await flows.wait(job.id, timeout=60)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == ("orm connection" if connection else "orm session")
    assert await _payments(db) == [(job.id, 1)]


async def test_a_cancelled_job_is_lost_and_nothing_is_written(flows: PgQueue, db) -> None:
    job = await flow_tasks.pay.enqueue(10, sleep=3600)

    async def sleeping() -> bool:
        return await db.fetchval("SELECT count(*) FROM flow_events WHERE event = 'sleeping'") > 0

    async with flows.worker(concurrency=1):
        await eventually(sleeping, what="the payment to start")
        assert await flows.cancel(job.id)
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM flow_events WHERE event = 'lost'"),
            what="complete_in to raise JobLost",
        )
    assert (await flows.get_job(job.id)).status is JobStatus.CANCELLED
    assert await _payments(db) == []


async def test_a_rescued_job_is_lost_to_its_first_run_and_paid_once(
    database_url: str, flows: PgQueue, db
) -> None:
    """The first worker stalls (SIGSTOP) inside the payment's transaction, is declared dead, and
    another worker pays; the first, resumed, finds the job gone: JobLost, its row rolled back."""
    job = await flow_tasks.pay.enqueue(11, sleep=2)
    stalled = start_worker(database_url, app=FLOWS)
    rescuer = None
    try:
        await eventually(lambda: db.fetchval("SELECT count(*) FROM flow_events"),
                         what="the first run to start")
        stalled.send_signal(signal.SIGSTOP)
        rescuer = start_worker(database_url, app=FLOWS,
                               env={"TEST_RESCUE_AFTER": str(RESCUE_QUICKLY)})
        done = await flows.wait(job.id, timeout=90)
        assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
        stalled.send_signal(signal.SIGCONT)
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM flow_events WHERE event = 'lost'"),
            what="the first run's complete_in to raise JobLost",
        )
    finally:
        stalled.send_signal(signal.SIGCONT)
        stop_worker(stalled)
        if rescuer is not None:
            stop_worker(rescuer)
    assert await _payments(db) == [(job.id, 2)]
    assert await db.fetchval("SELECT attempt FROM flow_events WHERE event = 'lost'") == 1
    assert (await flows.get_job(job.id)).result == {"paid": 11, "by": "complete_in"}
