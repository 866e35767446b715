"""Workflows (CONTRACT §10): jobs enqueued ``after`` others wait, are released when the last of
them succeeds, and are cancelled down the graph when one fails; ``after`` in the caller's
transaction, with ``enqueue_many`` and ``enqueue_sync``.

Jobs run in worker subprocesses (``tests.flow_tasks``); each run is recorded by the task itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from pgqueue import JobStatus, PgQueue
from pgqueue.migrate import sqlalchemy_url

from . import flow_tasks
from .helpers import start_worker, stop_worker

FLOWS = "tests.flow_tasks:pgq"


@pytest.fixture
def worker(database_url: str, flows: PgQueue) -> Iterator[None]:
    proc = start_worker(database_url, "--concurrency", "8", app=FLOWS)
    yield
    stop_worker(proc)


async def _runs(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT job_id, name, inputs::text FROM flow_runs ORDER BY n")


async def test_fan_out_then_fan_in(flows: PgQueue, worker: None, db) -> None:
    a = await flow_tasks.step.enqueue("a")
    middle = await flow_tasks.step.using(after=[a]).enqueue_many(["b1", "b2", "b3"])
    last = await flow_tasks.step.using(after=[*middle, a.id]).enqueue("c")
    assert [job.status for job in middle] == [JobStatus.WAITING] * 3
    assert last.status is JobStatus.WAITING

    done = await flows.wait(last.id, timeout=60)

    assert done.status is JobStatus.SUCCEEDED
    runs = await _runs(db)
    order = [run["name"] for run in runs]
    assert order[0] == "a" and sorted(order[1:4]) == ["b1", "b2", "b3"] and order[4] == "c"
    # ctx.dependencies(): the jobs in `after`, in id order, with their results.
    assert runs[4]["inputs"] == (
        f'[[{a.id}, "succeeded", "a"], [{middle[0].id}, "succeeded", "b1"], '
        f'[{middle[1].id}, "succeeded", "b2"], [{middle[2].id}, "succeeded", "b3"]]'
    )
    assert [job.id for job in await flows.dependents(a.id)] == [*(j.id for j in middle), last.id]
    assert [job.id for job in await flows.dependencies(last.id)] == [a.id, *(j.id for j in middle)]


async def test_a_failure_cancels_three_levels_and_only_retrying_them_revives_them(
    flows: PgQueue, worker: None, db
) -> None:
    root = await flow_tasks.flaky.enqueue("root")  # fails on its first attempt, no retries
    level1 = await flow_tasks.step.using(after=[root]).enqueue("level1")
    level2 = await flow_tasks.step.using(after=[level1]).enqueue("level2")
    level3 = await flow_tasks.step.using(after=[level2, level1]).enqueue("level3")
    bystander = await flow_tasks.step.using(after=[await flow_tasks.step.enqueue("ok")]).enqueue("by")

    cancelled = [await flows.wait(job.id, timeout=60) for job in (level1, level2, level3)]

    assert (await flows.get_job(root.id)).status is JobStatus.FAILED
    for job in cancelled:
        assert job.status is JobStatus.CANCELLED
        assert f"dependency {root.id} ({flow_tasks.flaky.name}) ended failed" in job.error
    assert (await flows.wait(bystander.id, timeout=60)).status is JobStatus.SUCCEEDED
    assert (await flows.stats())["default"]["cancelled"] == 3

    # Retrying the failed dependency does not revive its dependents...
    assert await flows.retry(root.id)
    assert (await flows.wait(root.id, timeout=60)).status is JobStatus.SUCCEEDED
    assert (await flows.get_job(level1.id)).status is JobStatus.CANCELLED
    # ...retrying them does: level1 runs now; level2 waits for nothing unfinished either.
    assert await flows.retry(level1.id)
    assert (await flows.wait(level1.id, timeout=60)).status is JobStatus.SUCCEEDED
    assert (await flows.get_job(level2.id)).status is JobStatus.CANCELLED
    assert {run["name"] for run in await _runs(db)} == {"ok", "by", "level1"}


async def test_a_retried_dependent_waits_again_for_an_unfinished_dependency(flows: PgQueue) -> None:
    parent = await flow_tasks.step.enqueue("parent")
    child = await flow_tasks.step.using(after=[parent]).enqueue("child")
    assert await flows.cancel(child.id)
    assert await flows.retry(child.id)
    assert (await flows.get_job(child.id)).status is JobStatus.WAITING
    async with flows.worker(concurrency=2):
        assert (await flows.wait(child.id, timeout=60)).status is JobStatus.SUCCEEDED


async def test_cancelling_a_waiting_job_cancels_its_dependents(flows: PgQueue) -> None:
    parent = await flow_tasks.step.enqueue("parent")
    child = await flow_tasks.step.using(after=[parent]).enqueue("child")
    grandchild = await flow_tasks.step.using(after=[child]).enqueue("grandchild")
    assert await flows.cancel(child.id)
    job = await flows.get_job(grandchild.id)
    assert job.status is JobStatus.CANCELLED
    assert f"dependency {child.id} ({flow_tasks.step.name}) ended cancelled" in job.error
    assert (await flows.get_job(parent.id)).status is JobStatus.QUEUED


async def test_a_dependency_enqueued_in_the_same_transaction(
    flows: PgQueue, worker: None, database_url: str, db
) -> None:
    async with flows.acquire() as conn, conn.transaction():
        first = await flow_tasks.step.using(conn).enqueue("first")
        second = await flow_tasks.step.using(conn, after=[first]).enqueue("second")
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine) as session, session.begin():
            third = await flow_tasks.step.using(session, after=[second]).enqueue("third")
            fourth = await flows.using(flow_tasks.step.name, session, after=[third]).enqueue("4th")
    finally:
        await engine.dispose()
    sync_engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(sync_engine) as session, session.begin():
            fifth = flow_tasks.step.using(session, after=[fourth]).enqueue_sync("fifth")
    finally:
        sync_engine.dispose()
    assert fifth.status is JobStatus.WAITING

    assert (await flows.wait(fifth.id, timeout=60)).status is JobStatus.SUCCEEDED
    assert [run["name"] for run in await _runs(db)] == ["first", "second", "third", "4th", "fifth"]


async def test_a_rolled_back_transaction_leaves_neither_job(flows: PgQueue, db) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with flows.acquire() as conn, conn.transaction():
            first = await flow_tasks.step.using(conn).enqueue("first")
            await flow_tasks.step.using(conn, after=[first]).enqueue("second")
            raise Abort
    assert await db.fetchval("SELECT count(*) FROM pgqueue.jobs") == 0
    assert await db.fetchval("SELECT count(*) FROM pgqueue.job_dependencies") == 0


async def test_unknown_dependencies_raise_and_write_nothing(flows: PgQueue, db) -> None:
    known = await flow_tasks.step.enqueue("known")
    before = await db.fetch("SELECT * FROM pgqueue.jobs ORDER BY id")
    with pytest.raises(ValueError, match=r"do not exist: 424242, 424243; nothing was enqueued"):
        await flow_tasks.step.using(after=[known, 424243, 424242]).enqueue("orphan")
    assert await db.fetch("SELECT * FROM pgqueue.jobs ORDER BY id") == before
    assert await db.fetchval("SELECT count(*) FROM pgqueue.job_dependencies") == 0
    with pytest.raises(TypeError, match="after must hold jobs or job ids"):
        flow_tasks.step.using(after=["12"])
    with pytest.raises(ValueError, match="unique_key and after do not combine"):
        flow_tasks.step.using(after=[known], unique_key="k")


async def test_finished_dependencies_at_enqueue(flows: PgQueue) -> None:
    ok = await flow_tasks.step.enqueue("ok")
    bad = await flow_tasks.flaky.enqueue("bad")
    async with flows.worker(concurrency=2):
        await flows.wait(ok.id, timeout=60)
        await flows.wait(bad.id, timeout=60)

    ready = await flow_tasks.step.using(after=[ok]).enqueue("ready")
    assert ready.status is JobStatus.QUEUED
    doomed = await flow_tasks.step.using(after=[ok, bad]).enqueue("doomed")
    assert doomed.status is JobStatus.CANCELLED
    stored = await flows.get_job(doomed.id)
    assert stored.status is JobStatus.CANCELLED
    assert stored.error == f"DependencyFailed: dependency {bad.id} ({flow_tasks.flaky.name}) ended failed"
    assert (await flows.stats())["default"]["cancelled"] == 1


async def test_a_released_job_with_a_later_run_at_is_scheduled(flows: PgQueue, db) -> None:
    parent = await flow_tasks.step.enqueue("parent")
    later = await flow_tasks.step.using(after=[parent], delay=3600).enqueue("later")
    soon = await flow_tasks.step.using(after=[parent], delay=0.5).enqueue("soon")
    assert (await flows.stats())["default"]["waiting"] == 2
    async with flows.worker(concurrency=2):
        assert (await flows.wait(soon.id, timeout=60)).status is JobStatus.SUCCEEDED
    assert (await flows.get_job(later.id)).status is JobStatus.SCHEDULED
    assert (await flows.stats())["default"] == {"scheduled": 1, "succeeded": 2}


async def test_api_and_dashboard_show_dependencies_both_ways(flows: PgQueue) -> None:
    from .test_fastapi import PREFIX, asgi_client, make_app

    resize = await flow_tasks.step.enqueue("resize")
    thumb = await flow_tasks.step.using(after=[resize]).enqueue("thumb")
    email = await flow_tasks.step.using(after=[resize, thumb]).enqueue("email")
    async with asgi_client(make_app(flows)) as client:
        detail = (await client.get(f"{PREFIX}/jobs/{email.id}")).json()
        assert detail["status"] == "waiting"
        assert detail["dependencies"] == [resize.id, thumb.id] and detail["dependents"] == []
        detail = (await client.get(f"{PREFIX}/jobs/{resize.id}")).json()
        assert detail["dependencies"] == [] and detail["dependents"] == [thumb.id, email.id]
        assert (await client.get(f"{PREFIX}/stats")).json() == {
            "default": {"queued": 1, "waiting": 2}}

        page = (await client.get(f"{PREFIX}/ui/jobs/{email.id}")).text
        assert (f'Waiting for <a href="{PREFIX}/ui/jobs/{resize.id}">#{resize.id}</a> step (queued), '
                f'<a href="{PREFIX}/ui/jobs/{thumb.id}">#{thumb.id}</a> step (waiting)') in " ".join(
                    page.split())
        page = (await client.get(f"{PREFIX}/ui/jobs/{resize.id}")).text
        assert f'href="{PREFIX}/ui/jobs/{email.id}">#{email.id}</a>' in page
        assert "waiting-for" not in page
        overview = (await client.get(f"{PREFIX}/")).text
        assert "status-waiting" in overview
