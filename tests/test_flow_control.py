"""Flow control: limits kept in the database and enforced by the claim, across worker processes;
fair claims between groups; what a task may decide (Snooze, Fail).

How many jobs ran at once is measured from the runs the tasks record themselves (``test_runs``),
never from pgqueue's own counters.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import asyncpg
import pytest

from pgqueue import Fail, Job, JobContext, JobStatus, PgQueue, Snooze

from .conftest import RESCUE_QUICKLY
from .helpers import eventually, start_worker, stop_worker

SLEEPY = "tests.worker_tasks.sleepy"
GATED = "tests.worker_tasks.gated"
NOOP = "tests.worker_tasks.noop"


async def _most_at_once(db: asyncpg.Connection, job_ids: list[int]) -> int:
    """The most runs of these jobs that were between their recorded start and end at once (runs
    of a killed worker, which never recorded an end, are left out)."""
    rows = await db.fetch(
        """
        SELECT s.at AS started, e.at AS ended FROM test_runs s
        JOIN test_runs e ON e.job_id = s.job_id AND e.attempt = s.attempt AND e.event = 'end'
        WHERE s.event = 'start' AND s.job_id = ANY($1)
        """,
        job_ids,
    )
    edges = sorted([(row["started"], 1) for row in rows] + [(row["ended"], -1) for row in rows])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


async def _count(db: asyncpg.Connection, status: str, queue: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM pgqueue.jobs WHERE status::text = $1 AND queue = $2", status, queue
    )


# -- the limits themselves ---------------------------------------------------------------------


async def test_limits_are_kept_and_change_one_at_a_time(pgq: PgQueue) -> None:
    none = {"concurrency": None, "rate": None, "period": None, "group_concurrency": None}
    assert await pgq.queue_limits("emails") == none
    assert await pgq.configure_queue("emails", concurrency=5) == {**none, "concurrency": 5}
    await pgq.configure_queue("emails", rate=100, period=60)
    await pgq.configure_queue("emails", group_concurrency=1)
    assert await pgq.queue_limits("emails") == {
        "concurrency": 5, "rate": 100, "period": 60.0, "group_concurrency": 1}
    await pgq.configure_queue("emails", rate=None)
    assert await pgq.queue_limits("emails") == {**none, "concurrency": 5, "group_concurrency": 1}
    await pgq.configure_queue("emails", rate=10)  # the period given before stays
    assert (await pgq.queue_limits("emails"))["period"] == 60.0
    await pgq.configure_queue("emails", period=0.25)
    assert (await pgq.queue_limits("emails"))["period"] == 0.25
    await pgq.configure_queue("emails", concurrency=None, rate=None, group_concurrency=None)
    assert await pgq.queue_limits("emails") == none
    assert await pgq.queue_limits("never-configured") == none


@pytest.mark.parametrize("limits", [
    {"concurrency": 0}, {"concurrency": 2.5}, {"concurrency": True}, {"rate": -1},
    {"rate": "100"}, {"period": 0}, {"period": float("nan")}, {"group_concurrency": 0},
])
async def test_bad_limits_are_refused_and_nothing_changes(pgq: PgQueue, limits: dict) -> None:
    await pgq.configure_queue("emails", concurrency=3)
    name = next(iter(limits))
    with pytest.raises(ValueError, match=name):
        await pgq.configure_queue("emails", **limits)
    assert (await pgq.queue_limits("emails"))["concurrency"] == 3


# -- enforced across worker processes ----------------------------------------------------------


@pytest.mark.slow
async def test_concurrency_limit_holds_across_worker_processes(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    await producer.configure_queue("limited", concurrency=3)
    jobs = await producer.using(SLEEPY, queue="limited").enqueue_many([(0.3,)] * 24)
    workers = [start_worker(database_url, "--concurrency", "8") for _ in range(3)]
    try:
        async def all_done() -> bool:
            return await _count(tasks_db, "succeeded", "limited") == 24

        await eventually(all_done, timeout=120, what="24 limited jobs to succeed")
    finally:
        for proc in workers:
            stop_worker(proc)
    assert await _most_at_once(tasks_db, [job.id for job in jobs]) <= 3


@pytest.mark.slow
async def test_rate_limit_holds_across_worker_processes(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    await producer.configure_queue("metered", rate=4, period=1)
    await producer.using(NOOP, queue="metered").enqueue_many(range(16))
    workers = [start_worker(database_url, "--concurrency", "8") for _ in range(2)]
    try:
        async def all_done() -> bool:
            return await _count(tasks_db, "succeeded", "metered") == 16

        await eventually(all_done, timeout=120, what="16 rate-limited jobs to succeed")
    finally:
        for proc in workers:
            stop_worker(proc)
    starts = [row["started_at"] for row in await tasks_db.fetch(
        "SELECT started_at FROM pgqueue.jobs WHERE queue = 'metered' ORDER BY started_at")]
    window = timedelta(seconds=1)
    most = max(sum(1 for t in starts[i:] if t < first + window) for i, first in enumerate(starts))
    assert most <= 4


@pytest.mark.slow
async def test_a_killed_worker_does_not_keep_its_limited_slots(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    await producer.configure_queue("limited", concurrency=2)
    jobs = await producer.using(GATED, queue="limited").enqueue_many([("open",)] * 4)
    doomed = start_worker(database_url, "--concurrency", "4")
    try:
        async def both_slots_taken() -> bool:
            return await _count(tasks_db, "running", "limited") == 2

        await eventually(both_slots_taken, what="the first worker to take both slots")
    finally:
        stop_worker(doomed, signal.SIGKILL)  # its slots are never handed back
    await tasks_db.execute("INSERT INTO test_gates VALUES ('open')")
    rescuer = start_worker(database_url, "--concurrency", "4",
                           env={"TEST_RESCUE_AFTER": str(RESCUE_QUICKLY)})
    try:
        async def all_done() -> bool:
            return await _count(tasks_db, "succeeded", "limited") == 4

        await eventually(all_done, timeout=120, what="all four jobs to succeed after the kill")
    finally:
        stop_worker(rescuer)
    assert await _most_at_once(tasks_db, [job.id for job in jobs]) <= 2


@pytest.mark.slow
async def test_a_changed_limit_applies_from_the_next_claim(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    await producer.configure_queue("limited", concurrency=1)
    await producer.using(GATED, queue="limited").enqueue_many([("open",)] * 4)
    worker = start_worker(database_url, "--concurrency", "8")
    try:
        async def one_running() -> bool:
            return await _count(tasks_db, "running", "limited") == 1

        await eventually(one_running, what="the one job the limit allows")
        # A job of another queue runs only after a claim that also looked at the limited queue.
        probe = await producer.enqueue(NOOP, 1)
        assert (await producer.wait(probe.id, timeout=60)).status is JobStatus.SUCCEEDED
        assert await _count(tasks_db, "running", "limited") == 1

        await producer.configure_queue("limited", concurrency=3)

        async def three_running() -> bool:
            return await _count(tasks_db, "running", "limited") == 3

        await eventually(three_running, what="the raised limit to start two more jobs")
        await tasks_db.execute("INSERT INTO test_gates VALUES ('open')")

        async def all_done() -> bool:
            return await _count(tasks_db, "succeeded", "limited") == 4

        await eventually(all_done, what="all jobs to succeed")
    finally:
        stop_worker(worker)


@pytest.mark.slow
async def test_groups_are_served_fairly_and_limited_each(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    await producer.configure_queue("exports", group_concurrency=1)
    big = await producer.using(SLEEPY, queue="exports", group="tenant-a").enqueue_many(
        [(0.2,)] * 12)
    small = await producer.using(SLEEPY, queue="exports", group="tenant-b").enqueue(0.2)
    assert small.group == "tenant-b"
    worker = start_worker(database_url, "--concurrency", "4")
    try:
        done = await producer.wait(small.id, timeout=120)
        assert done.status is JobStatus.SUCCEEDED and done.group == "tenant-b"

        async def all_done() -> bool:
            return await _count(tasks_db, "succeeded", "exports") == 13

        await eventually(all_done, timeout=120, what="the big group's backlog to finish")
    finally:
        stop_worker(worker)
    big_ids = [job.id for job in big]
    # tenant-b's one job was not served after tenant-a's backlog: it started among the first.
    order = [row["job_id"] for row in await tasks_db.fetch(
        "SELECT job_id FROM test_runs WHERE event = 'start' ORDER BY at")]
    assert order.index(small.id) <= 2
    assert await _most_at_once(tasks_db, big_ids) == 1


# -- what a task may decide --------------------------------------------------------------------


async def test_snoozing_does_not_count_as_an_attempt(pgq: PgQueue) -> None:
    runs: list[int] = []

    @pgq.task(max_attempts=2)
    async def poll_export(ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        if len(runs) <= 2:
            raise Snooze(0.05)
        return "ready"

    job = await poll_export.enqueue()
    async with pgq.worker(concurrency=2):
        done = await pgq.wait(job.id, timeout=60)
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, "ready", 1)
    assert runs == [1, 1, 1]


async def test_a_snoozed_job_is_scheduled_with_its_attempts(pgq: PgQueue) -> None:
    @pgq.task
    async def not_yet() -> None:
        raise Snooze(3600)

    job = await not_yet.enqueue()
    async with pgq.worker(concurrency=1):
        async def snoozed() -> Job | None:
            found = await pgq.get_job(job.id)
            return found if found and found.status is JobStatus.SCHEDULED else None

        later = await eventually(snoozed, what="the job to be snoozed")
    assert later.attempts == 0 and later.run_at > job.run_at + timedelta(minutes=59)


async def test_fail_fails_now_with_the_message_and_calls_on_failure(pgq: PgQueue) -> None:
    failed: list[Job] = []
    hook_called = asyncio.Event()

    async def on_failure(job: Job) -> None:
        failed.append(job)
        hook_called.set()

    @pgq.task(max_attempts=5, on_failure=on_failure)
    async def export(export_id: int) -> None:
        raise Fail(f"export {export_id} was deleted")

    job = await export.enqueue(7)
    async with pgq.worker(concurrency=1):
        done = await pgq.wait(job.id, timeout=60)
        await asyncio.wait_for(hook_called.wait(), timeout=60)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "export 7 was deleted" in done.error
    assert failed[0].id == job.id


def test_snooze_takes_seconds() -> None:
    with pytest.raises(ValueError, match="seconds"):
        Snooze(-1)
