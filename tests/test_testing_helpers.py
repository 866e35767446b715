"""``pgqueue.testing``: what an application's own tests use."""

from __future__ import annotations

import sys

import httpx
import pytest

from pgqueue import JobContext, JobStatus, PgQueue
from pgqueue.testing import assert_enqueued, drain, inline, refute_enqueued

from .example_helpers import import_example


async def test_drain_runs_what_is_queued_and_what_that_enqueues(pgq: PgQueue) -> None:
    @pgq.task
    async def child(n: int) -> int:
        return n * 10

    @pgq.task
    async def parent(n: int) -> None:
        await child.enqueue(n)

    later = await child.using(delay=3600).enqueue(0)
    await parent.enqueue(1)
    await parent.enqueue(2)
    jobs = await drain(pgq)
    assert [(job.task, job.status) for job in jobs] == [
        (parent.name, JobStatus.SUCCEEDED),
        (parent.name, JobStatus.SUCCEEDED),
        (child.name, JobStatus.SUCCEEDED),
        (child.name, JobStatus.SUCCEEDED),
    ]
    assert sorted(job.result for job in jobs if job.task == child.name) == [10, 20]
    assert (await pgq.get_job(later.id)).status == JobStatus.SCHEDULED


# -- assert_enqueued / refute_enqueued ------------------------------------------------------------


async def test_assert_enqueued_matches_task_arguments_queue_and_count(pgq: PgQueue) -> None:
    @pgq.task(queue="emails")
    async def send(user_id: int, template: str = "welcome") -> None: ...

    first = await send.enqueue(1)
    await send.using(queue="bulk").enqueue(2, template="digest")
    await send.enqueue(1)

    found = await assert_enqueued(pgq, send, args=[1], count=2)
    assert [job.task for job in found] == [send.name, send.name] and found[0].id == first.id
    await assert_enqueued(pgq, send.name, args=(2,), kwargs={"template": "digest"}, queue="bulk")
    await assert_enqueued(pgq, send, queue="emails", count=2)
    await refute_enqueued(pgq, send, args=[3])
    await refute_enqueued(pgq, send, args=[2], queue="emails")


async def test_assert_enqueued_failure_lists_what_was_enqueued_instead(pgq: PgQueue) -> None:
    @pgq.task(queue="emails")
    async def send(user_id: int) -> None: ...

    @pgq.task
    async def other() -> None: ...

    a = await send.enqueue(2)
    b = await other.enqueue()
    with pytest.raises(AssertionError) as failure:
        await assert_enqueued(pgq, send, args=[1])
    message = str(failure.value)
    assert message.startswith(
        f"expected at least 1 unfinished job(s) of task {send.name!r} with args [1]; found 0.\n"
        "Unfinished jobs (2):\n"
    )
    assert f"  #{a.id} {send.name} args=[2] kwargs={{}} queue='emails' status=queued" in message
    assert f"  #{b.id} {other.name} args=[] kwargs={{}} queue='default' status=queued" in message

    with pytest.raises(AssertionError, match=r"expected exactly 2 unfinished job\(s\) .* found 1"):
        await assert_enqueued(pgq, send, count=2)


async def test_refute_enqueued_failure_names_the_matching_jobs(pgq: PgQueue) -> None:
    @pgq.task
    async def send(user_id: int) -> None: ...

    job = await send.enqueue(7)
    with pytest.raises(AssertionError) as failure:
        await refute_enqueued(pgq, send, args=[7])
    assert str(failure.value) == (
        f"expected no unfinished job of task {send.name!r} with args [7]; found 1.\n"
        f"Unfinished jobs (1):\n  #{job.id} {send.name} args=[7] kwargs={{}} "
        "queue='default' status=queued"
    )


async def test_assertions_ignore_finished_jobs_and_say_when_nothing_waits(pgq: PgQueue) -> None:
    @pgq.task
    async def send(user_id: int) -> None: ...

    await send.enqueue(1)
    await drain(pgq)
    with pytest.raises(AssertionError, match="There are no unfinished jobs at all."):
        await assert_enqueued(pgq, send)
    await refute_enqueued(pgq, send)


# -- inline -------------------------------------------------------------------------------------


async def test_inline_runs_every_enqueue_path_in_process(pgq: PgQueue) -> None:
    ran: list[tuple[str, int]] = []

    @pgq.task
    async def double(n: int) -> int:
        ran.append(("double", n))
        return 2 * n

    @pgq.task
    def plain(n: int) -> int:  # a sync task, in a thread as on a worker
        ran.append(("plain", n))
        return n

    with inline(pgq):
        job = await double.enqueue(1)
        assert ran == [("double", 1)]  # before enqueue returned
        assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, 2, 1)
        jobs = await double.enqueue_many([(2,), (3,)])
        by_name = await pgq.enqueue(double.name, 4)
        later = await plain.using(delay=3600).enqueue(5)  # run at once, though due later
    assert ran == [("double", 1), ("double", 2), ("double", 3), ("double", 4), ("plain", 5)]
    for done in (*jobs, by_name, later):
        assert (await pgq.get_job(done.id)).status == JobStatus.SUCCEEDED
    assert [j.result for j in jobs] == [4, 6] and by_name.result == 8

    await double.enqueue(9)  # the block is over: written, not run
    assert ran[-1] == ("plain", 5)
    await assert_enqueued(pgq, double, args=[9])


async def test_inline_runs_a_transactions_jobs_after_its_commit_only(pgq: PgQueue, db) -> None:
    ran: list[int] = []

    @pgq.task
    async def record(n: int) -> None:
        ran.append(n)

    async with inline(pgq) as running:
        async with pgq.acquire() as conn:
            async with conn.transaction():
                committed = await record.using(conn).enqueue(1)
                assert ran == []  # not before the commit: no other connection could see it
            try:
                async with conn.transaction():
                    await record.using(conn).enqueue(2)
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            outside = await record.using(conn).enqueue(3)  # no transaction: at once
            assert 3 in ran
        await running.settle()
        assert sorted(ran) == [1, 3]
    assert (await pgq.get_job(committed.id)).status == JobStatus.SUCCEEDED
    assert (await pgq.get_job(outside.id)).status == JobStatus.SUCCEEDED
    assert await db.fetchval("SELECT count(*) FROM pgqueue.jobs") == 2
    assert await db.fetchval("SELECT count(*) FROM pgqueue.ready") == 0
    assert await pgq.stats() == {"default": {"succeeded": 2}}


async def test_inline_records_failures_retries_and_calls_on_failure(pgq: PgQueue) -> None:
    failed: list[int] = []

    @pgq.task(max_attempts=3, on_failure=lambda job: failed.append(job.id))
    async def flaky(fail_until: int, ctx: JobContext) -> int:
        if ctx.attempt < fail_until:
            raise ValueError(f"attempt {ctx.attempt}")
        return ctx.attempt

    with inline(pgq):
        recovered = await flaky.enqueue(2)
        broken = await flaky.enqueue(9)
    assert (recovered.status, recovered.attempts, recovered.result) == (JobStatus.SUCCEEDED, 2, 2)
    assert (broken.status, broken.attempts) == (JobStatus.FAILED, 3)
    assert "ValueError: attempt 3" in broken.error
    assert failed == [broken.id]


async def test_inline_runs_session_jobs_when_the_session_commits(database_url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import Session

    pgq = PgQueue(dsn=database_url)
    ran: list[str] = []

    @pgq.task
    async def record(where: str) -> None:
        ran.append(where)

    async_engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"))
    sync_engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with inline(pgq):
            async with AsyncSession(async_engine) as session:
                job = await record.using(session).enqueue("async session")
                assert ran == []
                await session.commit()
                assert ran == ["async session"]  # before commit() returned
            with Session(sync_engine) as sync_session:
                record.using(sync_session).enqueue_sync("sync session")
                assert ran == ["async session"]
                sync_session.commit()
                assert ran == ["async session", "sync session"]
    finally:
        await async_engine.dispose()
        sync_engine.dispose()
    async with pgq:
        assert (await pgq.get_job(job.id)).status == JobStatus.SUCCEEDED
        assert await pgq.stats() == {"default": {"succeeded": 2}}


async def test_inline_runs_an_apps_jobs_with_no_worker(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """The example app's ``POST /register`` commits the user and the welcome email together; with
    ``inline`` the email is sent by the time the response is back."""
    example = import_example(monkeypatch, database_url)
    monkeypatch.setattr(sys.modules["pgqueue.examples.tasks"], "STEP_SECONDS", 0)
    app = example.create_app()
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://test"
    ) as client:
        with inline(example.pgq):
            response = await client.post("/register", json={"email": "ada@example.com",
                                                            "name": "Ada"})
        assert response.status_code == 201, response.text
        job = await example.pgq.get_job(response.json()["job_id"])
        logs = await example.pgq.job_logs(job.id)
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"sent_to": "ada@example.com"})
    assert (job.progress, job.progress_message) == (100, "sent")
    assert [line.message for line in logs][-1] == "sent to ada@example.com"


async def test_the_pytest_plugin_fixture_runs_jobs_inline(pgq: PgQueue, pgqueue_inline) -> None:
    @pgq.task
    async def add(a: int, b: int) -> int:
        return a + b

    job = await add.enqueue(2, 3)
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, 5)


def test_the_pytest_plugin_is_registered_by_entry_point() -> None:
    from importlib.metadata import entry_points

    [plugin] = [ep for ep in entry_points(group="pytest11") if ep.name == "pgqueue"]
    assert plugin.value == "pgqueue.testing"
