"""The task of the exactly-once fault run (``python -m benchmarks.exactly_once``).

Workers run ``python -m pgqueue.worker benchmarks.exactly_once_tasks:pgq`` from the repository
root, with a short rescue window: a SIGKILLed worker's jobs are back within seconds.

Each run writes one row of its own in ``effects`` (the task's "database effect"), and then:

* ``complete_in``: completes its job in the same transaction (``ctx.complete_in``);
* ``plain``: commits the row, then returns, and the worker writes the outcome afterwards.

Both spend the same time in the two windows where a kill hurts: after the row is written and
before it commits (``complete_in``) or before the outcome is written (``plain``), and after that.
"""

from __future__ import annotations

import asyncio
import os
import random

from pgqueue import JobContext, PgQueue

pgq = PgQueue(
    heartbeat_interval=float(os.environ.get("EXACTLY_ONCE_HEARTBEAT", "0.5")),
    rescue_after=float(os.environ.get("EXACTLY_ONCE_RESCUE_AFTER", "3")),
    poll_interval=0.5,
)

CREATE_EFFECTS = """
CREATE TABLE IF NOT EXISTS effects (
    job_id  bigint NOT NULL,
    pid     integer NOT NULL,
    attempt integer NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

@pgq.task(max_attempts=100, retry_delay=0.1)
async def effect(i: int, mode: str, ctx: JobContext) -> int:
    inside, after = random.uniform(0.1, 0.8), random.uniform(0.0, 0.3)
    insert = "INSERT INTO effects (job_id, pid, attempt) VALUES ($1, $2, $3)"
    async with pgq.acquire() as conn:  # the worker's own pool, as an application's task would
        if mode == "complete_in":
            async with conn.transaction():
                await conn.execute(insert, ctx.job.id, os.getpid(), ctx.attempt)
                await asyncio.sleep(inside)
                await ctx.complete_in(conn, result=i)
        else:
            await conn.execute(insert, ctx.job.id, os.getpid(), ctx.attempt)
            await asyncio.sleep(inside)
    await asyncio.sleep(after)
    return i
