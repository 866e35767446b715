"""``drain``: run what is due now, in this process, the way a worker would."""

from __future__ import annotations

from ..job import Job
from ..queue import PgQueue


async def drain(
    pgq: PgQueue, queues: list[str] | None = None, concurrency: int = 1
) -> list[Job]:
    """Run every job that can be claimed now (and those they enqueue), then return the jobs that
    ran, oldest first, as they ended. Jobs scheduled for later stay where they are."""
    worker = pgq.worker(queues=queues, concurrency=concurrency, burst=True)
    await worker.run()
    return [job for job in (await pgq.get_jobs(worker.ran)) if job is not None]
