"""Helpers for the test suites of applications that use pgqueue.

    from pgqueue.testing import drain

    async def test_signup_sends_the_welcome_email(client, pgq):
        await client.post("/register", json={"email": "a@example.com"})
        jobs = await drain(pgq)            # run everything that is queued, here and now
        assert [job.task for job in jobs] == ["myapp.tasks.send_welcome_email"]
"""

from __future__ import annotations

from .job import Job
from .queue import PgQueue


async def drain(
    pgq: PgQueue, queues: list[str] | None = None, concurrency: int = 1
) -> list[Job]:
    """Run every job that can be claimed now (and those they enqueue), then return the jobs that
    ran, oldest first, as they ended. Jobs scheduled for later stay where they are."""
    worker = pgq.worker(queues=queues, concurrency=concurrency, burst=True)
    await worker.run()
    return [job for job in (await pgq.get_jobs(worker.ran)) if job is not None]
