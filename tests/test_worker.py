"""The worker in-process: running tasks, results, errors, retries, timeouts, order, queues, control."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import asyncpg
import pytest
from pydantic import BaseModel

from pgqueue import Job, JobContext, JobStatus, PgQueue


async def test_async_and_sync_tasks_run_and_store_results(pgq: PgQueue) -> None:
    threads: list[str] = []

    @pgq.task(queue="emails")
    async def send(user_id: int, ctx: JobContext) -> dict:
        await ctx.progress(50, "rendering")
        await ctx.log("rendered")
        return {"sent": user_id, "attempt": ctx.attempt}

    @pgq.task
    def resize(path: str, ctx: JobContext) -> str:
        threads.append(threading.current_thread().name)
        ctx.progress(100)  # sync tasks call the same methods without await
        ctx.log("resized")
        return path.upper()

    a = await send.enqueue(42)
    b = await resize.enqueue("a.png")
    async with pgq.worker(concurrency=4):
        done_a = await pgq.wait(a.id, timeout=30)
        done_b = await pgq.wait(b.id, timeout=30)
    assert (done_a.status, done_a.result, done_a.attempts) == (
        JobStatus.SUCCEEDED, {"sent": 42, "attempt": 1}, 1
    )
    assert (done_b.status, done_b.result) == (JobStatus.SUCCEEDED, "A.PNG")
    assert done_a.started_at and done_a.finished_at and done_a.finished_at >= done_a.started_at
    assert threads and threads[0].startswith("pgqueue-job")
    assert (await pgq.get_job(a.id)).progress == 50
    assert [line.message for line in await pgq.job_logs(a.id)] == ["rendered"]
    assert [line.message for line in await pgq.job_logs(b.id)] == ["resized"]


async def test_errors_are_retried_then_failed_with_traceback_and_on_failure(pgq: PgQueue) -> None:
    failed_jobs: list[Job] = []
    attempts: list[int] = []

    async def on_failure(job: Job) -> None:
        failed_jobs.append(job)

    @pgq.task(max_attempts=3, retry_delay=0, on_failure=on_failure)
    async def flaky(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"boom on attempt {ctx.attempt}")

    job = await flaky.enqueue()
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
        while not failed_jobs:  # the hook runs right after the failure is written
            await asyncio.sleep(0.01)
    assert done.status == JobStatus.FAILED
    assert done.attempts == 3 and attempts == [1, 2, 3]
    assert "Traceback" in done.error and "ValueError: boom on attempt 3" in done.error
    assert [j.id for j in failed_jobs] == [job.id]
    assert "boom on attempt 3" in failed_jobs[0].error


async def test_a_retry_waits_out_its_backoff_as_scheduled(pgq: PgQueue) -> None:
    calls: list[int] = []

    @pgq.task(max_attempts=2, retry_delay=lambda attempt: 3600)
    async def once_failing(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError("try later")

    job = await once_failing.enqueue()
    async with pgq.worker():
        async with pgq.events.watch(job.id) as events:
            while (await pgq.get_job(job.id)).status != JobStatus.SCHEDULED:
                await asyncio.wait_for(events.get(), 30)
    waiting = await pgq.get_job(job.id)
    assert waiting.status == JobStatus.SCHEDULED and waiting.attempts == 1
    assert (waiting.run_at - datetime.now(UTC)).total_seconds() > 3000
    assert "try later" in waiting.error
    assert calls == [1]


async def test_timeout_fails_the_attempt(pgq: PgQueue) -> None:
    @pgq.task(timeout=0.2, max_attempts=1)
    async def slow() -> None:
        await asyncio.sleep(60)

    job = await slow.enqueue()
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
    assert done.status == JobStatus.FAILED
    assert "did not finish within its timeout of 0.2 s" in done.error


async def test_sync_timeout_tells_the_thread_through_ctx_cancelled(pgq: PgQueue) -> None:
    saw_cancel = threading.Event()

    @pgq.task(timeout=0.2, max_attempts=1)
    def spin(ctx: JobContext) -> None:
        while not ctx.cancelled:
            threading.Event().wait(0.01)
        saw_cancel.set()

    job = await spin.enqueue()
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
        assert await asyncio.to_thread(saw_cancel.wait, 30)
    assert done.status == JobStatus.FAILED


async def test_result_that_is_not_json_fails_the_job(pgq: PgQueue) -> None:
    @pgq.task(max_attempts=3)
    async def weird() -> object:
        return object()

    job = await weird.enqueue()
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
    assert done.status == JobStatus.FAILED and done.attempts == 1
    assert "not JSON-serializable" in done.error


class Order(BaseModel):
    sku: str
    quantity: int


async def test_arguments_are_revalidated_from_type_hints(pgq: PgQueue) -> None:
    seen: list[object] = []

    @pgq.task
    async def place(order: Order, when: datetime) -> int:
        seen.extend([order, when])
        return order.quantity

    job = await place.enqueue(Order(sku="x", quantity=3), datetime(2030, 1, 1, tzinfo=UTC))
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
    assert done.result == 3
    assert seen == [Order(sku="x", quantity=3), datetime(2030, 1, 1, tzinfo=UTC)]


async def test_arguments_that_no_longer_fit_fail_without_retrying(pgq: PgQueue, db) -> None:
    @pgq.task(max_attempts=5)
    async def strict(n: int) -> None: ...

    job = await strict.enqueue(1)
    await db.execute("UPDATE pgqueue.jobs SET args = '[\"not a number\"]' WHERE id = $1", job.id)
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
    assert done.status == JobStatus.FAILED and done.attempts == 1
    assert "InvalidArguments" in done.error


async def test_unknown_task_fails_visibly_naming_it(pgq: PgQueue) -> None:
    job = await pgq.using("gone.tasks.legacy", max_attempts=2).enqueue(1)
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
    assert done.status == JobStatus.FAILED and done.attempts == 2
    assert "'gone.tasks.legacy' is not defined in this worker" in done.error


async def test_priority_then_age_decide_the_order(pgq: PgQueue) -> None:
    order: list[str] = []

    @pgq.task
    async def mark(label: str) -> None:
        order.append(label)

    await mark.enqueue("low-1")
    await mark.using(priority=10).enqueue("high")
    await mark.enqueue("low-2")
    await mark.using(priority=-5).enqueue("lowest")
    await mark.using(priority=5).enqueue("mid")
    await pgq.worker(concurrency=1, burst=True).run()
    assert order == ["high", "mid", "low-1", "low-2", "lowest"]


async def test_worker_serves_only_its_queues(pgq: PgQueue) -> None:
    @pgq.task(queue="emails")
    async def email() -> str:
        return "email"

    @pgq.task(queue="reports")
    async def report() -> str:
        return "report"

    e = await email.enqueue()
    r = await report.enqueue()
    await pgq.worker(queues=["emails"], burst=True).run()
    assert (await pgq.get_job(e.id)).status == JobStatus.SUCCEEDED
    assert (await pgq.get_job(r.id)).status == JobStatus.QUEUED


async def test_delayed_job_runs_when_due(pgq: PgQueue) -> None:
    @pgq.task
    async def later() -> str:
        return "done"

    job = await later.using(delay=0.5).enqueue()
    assert job.status == JobStatus.SCHEDULED
    async with pgq.worker():
        done = await pgq.wait(job.id, timeout=30)
    assert done.status == JobStatus.SUCCEEDED
    assert done.started_at >= job.run_at


async def test_paused_queue_is_not_claimed_until_resumed(pgq: PgQueue) -> None:
    @pgq.task(queue="bulk")
    async def work() -> None: ...

    await pgq.pause_queue("bulk")
    job = await work.enqueue()
    await pgq.worker(burst=True).run()
    assert (await pgq.get_job(job.id)).status == JobStatus.QUEUED
    assert await pgq.paused_queues() == ["bulk"]
    async with pgq.worker():
        await pgq.resume_queue("bulk")
        assert (await pgq.wait(job.id, timeout=30)).status == JobStatus.SUCCEEDED


async def test_wait_times_out_and_unknown_job_is_an_error(pgq: PgQueue) -> None:
    @pgq.task
    async def never() -> None: ...

    job = await never.enqueue()
    with pytest.raises(TimeoutError, match=f"job {job.id}"):
        await pgq.wait(job.id, timeout=0.3)
    with pytest.raises(LookupError):
        await pgq.wait(10**9, timeout=1)
    assert await pgq.get_job(10**9) is None


async def test_cancel_queued_and_scheduled_jobs_at_once(pgq: PgQueue) -> None:
    @pgq.task
    async def work() -> None: ...

    queued = await work.enqueue()
    scheduled = await work.using(delay=3600).enqueue()
    assert await pgq.cancel(queued.id) is True
    assert await pgq.cancel(scheduled.id) is True
    assert await pgq.cancel(queued.id) is False  # already final
    assert await pgq.cancel(10**9) is False
    assert (await pgq.get_job(scheduled.id)).status == JobStatus.CANCELLED
    await pgq.worker(burst=True).run()
    assert (await pgq.get_job(queued.id)).status == JobStatus.CANCELLED


async def test_cancel_running_async_job_stops_its_coroutine(pgq: PgQueue) -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    @pgq.task
    async def long() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    job = await long.enqueue()
    async with pgq.worker():
        await asyncio.wait_for(started.wait(), 30)
        assert await pgq.cancel(job.id) is True
        await asyncio.wait_for(stopped.wait(), 30)
        done = await pgq.wait(job.id, timeout=30)
    assert done.status == JobStatus.CANCELLED
    assert await pgq.cancel(job.id) is False


async def test_cancel_running_sync_job_sets_ctx_cancelled(pgq: PgQueue) -> None:
    started = threading.Event()
    noticed = threading.Event()

    @pgq.task
    def crunch(ctx: JobContext) -> None:
        started.set()
        while not ctx.cancelled:
            threading.Event().wait(0.01)
        noticed.set()

    job = await crunch.enqueue()
    async with pgq.worker():
        assert await asyncio.to_thread(started.wait, 30)
        assert await pgq.cancel(job.id) is True
        assert await asyncio.to_thread(noticed.wait, 30)
    assert (await pgq.get_job(job.id)).status == JobStatus.CANCELLED


async def test_retry_puts_failed_and_cancelled_jobs_back_to_run_now(pgq: PgQueue) -> None:
    attempts: list[int] = []

    @pgq.task(max_attempts=1)
    async def fragile(ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first time")
        return "second time lucky"

    failed = await fragile.enqueue()
    cancelled = await fragile.using(delay=3600).enqueue()
    await pgq.cancel(cancelled.id)
    async with pgq.worker():
        assert (await pgq.wait(failed.id, timeout=30)).status == JobStatus.FAILED
        assert await pgq.retry(failed.id) is True
        assert await pgq.retry(cancelled.id) is True
        again = await pgq.wait(failed.id, timeout=30)
        revived = await pgq.wait(cancelled.id, timeout=30)
    assert (again.status, again.result, again.attempts, again.max_attempts) == (
        JobStatus.SUCCEEDED, "second time lucky", 2, 2
    )
    assert revived.status == JobStatus.FAILED  # attempt 1 of the revived job raises
    assert await pgq.retry(again.id) is False  # succeeded: nothing to retry


async def test_stats_count_per_queue_and_status(pgq: PgQueue) -> None:
    @pgq.task(queue="a")
    async def ok() -> None: ...

    @pgq.task(queue="b", max_attempts=1)
    async def bad() -> None:
        raise RuntimeError

    for _ in range(3):
        await ok.enqueue()
    await bad.enqueue()
    await pgq.worker(burst=True).run()
    await ok.enqueue()
    assert await pgq.stats() == {"a": {"succeeded": 3, "queued": 1}, "b": {"failed": 1}}


async def test_periodic_task_is_enqueued_once_per_slot(pgq: PgQueue, db: asyncpg.Connection) -> None:
    @pgq.periodic("* * * * * *")  # every second (croniter's sixth field is seconds)
    @pgq.task
    async def tick() -> None: ...

    async with pgq.worker(), pgq.worker():
        async with pgq.events.watch() as events:
            while await db.fetchval("SELECT count(*) FROM pgqueue.jobs WHERE status = 'succeeded'") < 2:
                await asyncio.wait_for(events.get(), 30)
    # Two workers keep the schedule; each slot (named in the unique key) was enqueued once.
    keys = [row["unique_key"] for row in await db.fetch("SELECT unique_key FROM pgqueue.jobs")]
    assert len(keys) >= 2
    assert len(set(keys)) == len(keys)
    assert all(key.startswith(f"{tick.name}@") for key in keys)


async def test_a_claim_does_not_wait_for_its_wal_flush_and_nothing_else_is_changed(
    pgq: PgQueue, db: asyncpg.Connection
) -> None:
    """The claim's transaction commits asynchronously (a lease a crash may forget); the session's
    own setting, and so every later transaction on that connection, is left as it was."""
    @pgq.task
    async def noop() -> None:
        pass

    job = await noop.enqueue()
    tx = db.transaction()
    await tx.start()
    claimed = await db.fetch(pgq.backend.statements.claim, None, 10, None)
    within = await db.fetchval("SELECT current_setting('synchronous_commit')")
    await tx.commit()
    after = await db.fetchval("SELECT current_setting('synchronous_commit')")
    assert [row["id"] for row in claimed] == [job.id]
    assert (within, after) == ("off", "on")
