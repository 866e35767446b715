"""``pgqueue.testing``: what an application's own tests use."""

from __future__ import annotations

from pgqueue import JobStatus, PgQueue
from pgqueue.testing import drain


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
