"""The task the chaos run pushes through its workers.

They run ``python -m pgqueue.worker benchmarks.chaos_tasks:pgq`` from the repository root.

Every run records itself in ``chaos_runs`` before it returns, through its own connection, so the
report counts what really ran.
"""

from __future__ import annotations

import asyncio
import os
import random

import asyncpg

from pgqueue import JobContext, PgQueue

pgq = PgQueue(heartbeat_interval=1.0, rescue_after=5.0)

CREATE_RUNS = """
CREATE TABLE IF NOT EXISTS chaos_runs (
    job_id bigint NOT NULL,
    pid integer NOT NULL,
    attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_pool: asyncpg.Pool | None = None
_pool_opening = asyncio.Lock()


@pgq.task(max_attempts=10, retry_delay=0.1)
async def chaos_job(i: int, ctx: JobContext) -> int:
    global _pool
    async with _pool_opening:  # one pool per process, however many jobs start at once
        if _pool is None:
            _pool = await asyncpg.create_pool(pgq.settings.dsn, min_size=1, max_size=4)
    await _pool.execute(
        "INSERT INTO chaos_runs (job_id, pid, attempt) VALUES ($1, $2, $3)",
        ctx.job.id, os.getpid(), ctx.attempt,
    )
    await asyncio.sleep(random.uniform(0, 0.02))
    return i
