"""``on_failure`` hooks: called once a job has failed for good, whatever failed it, and never in
the way of the outcomes of other jobs."""

from __future__ import annotations

import asyncio
import threading

import asyncpg

from pgqueue import Job, JobStatus, PgQueue

from .conftest import FAST


async def test_a_slow_hook_does_not_hold_up_the_outcomes_of_other_jobs(pgq: PgQueue) -> None:
    hook_started, release = asyncio.Event(), asyncio.Event()

    async def slow_hook(job: Job) -> None:
        hook_started.set()
        await release.wait()

    @pgq.task(max_attempts=1, on_failure=slow_hook)
    async def doomed() -> None:
        raise RuntimeError("no")

    @pgq.task
    async def fine() -> str:
        return "ok"

    failing = await doomed.enqueue()
    async with pgq.worker(concurrency=2):
        assert (await pgq.wait(failing.id, timeout=30)).status == JobStatus.FAILED
        await asyncio.wait_for(hook_started.wait(), timeout=30)
        later = await fine.enqueue()
        done = await pgq.wait(later.id, timeout=30)  # written while the hook still waits
        release.set()
    assert done.status == JobStatus.SUCCEEDED


async def test_a_sync_hook_runs_in_a_thread_and_a_raising_hook_is_logged(
    pgq: PgQueue, caplog
) -> None:
    called: list[tuple[int, str]] = []
    done = threading.Event()

    def sync_hook(job: Job) -> None:
        called.append((job.id, threading.current_thread().name))
        done.set()
        raise ValueError("the hook itself is broken")

    @pgq.task(max_attempts=1, on_failure=sync_hook)
    async def doomed() -> None:
        raise RuntimeError("no")

    job = await doomed.enqueue()
    async with pgq.worker():
        await pgq.wait(job.id, timeout=30)
        assert await asyncio.to_thread(done.wait, 30)
    assert called[0][0] == job.id and called[0][1].startswith("pgqueue-hook")
    assert "on_failure hook raised" in caplog.text


async def test_hooks_run_for_jobs_the_rescuer_fails_and_for_unknown_tasks(
    database_url: str, db: asyncpg.Connection
) -> None:
    seen: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    async def everything(job: Job) -> None:
        await seen.put(("queue", job.id))

    async def its_own(job: Job) -> None:
        await seen.put(("task", job.id))

    pgq = PgQueue(dsn=database_url, on_failure=everything, **FAST)

    @pgq.task(max_attempts=1, on_failure=its_own)
    async def orphaned() -> None: ...

    # A job whose worker is gone (no row in workers), on its last attempt: the rescuer fails it.
    rescued = await db.fetchval(
        "INSERT INTO pgqueue.jobs (task, status, attempts, max_attempts, worker_id) "
        "VALUES ($1, 'running', 1, 1, 424242) RETURNING id", orphaned.name)
    async with pgq:
        unknown = await pgq.using("gone.tasks.legacy", max_attempts=1).enqueue()
        async with pgq.worker():
            got = {await asyncio.wait_for(seen.get(), timeout=30) for _ in range(3)}
        assert (await pgq.get_job(rescued)).status == JobStatus.FAILED
    assert got == {("task", rescued), ("queue", rescued), ("queue", unknown.id)}
