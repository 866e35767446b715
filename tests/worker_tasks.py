"""Tasks run by worker *subprocesses* in the tests (``python -m pgqueue.worker tests.worker_tasks:pgq``).

Each run is recorded in ``test_runs`` by the task itself, through its own connection, so a test
can tell how often every job really ran, and by which process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg

from pgqueue import JobContext, PgQueue

pgq = PgQueue(
    # A rescue window that a starved process on a loaded machine cannot outlast; tests of rescue
    # give a short one to the worker that rescues, never to one that must not be rescued.
    heartbeat_interval=float(os.environ.get("TEST_HEARTBEAT", "0.5")),
    rescue_after=float(os.environ.get("TEST_RESCUE_AFTER", "60")),
    poll_interval=0.2,
)

CREATE_RUNS = """
CREATE TABLE IF NOT EXISTS test_runs (
    job_id bigint NOT NULL,
    pid integer NOT NULL,
    attempt integer NOT NULL,
    event text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_pool: asyncpg.Pool | None = None
_pool_opening = asyncio.Lock()


async def record(ctx: JobContext, event: str) -> None:
    global _pool
    async with _pool_opening:  # one pool per process, however many jobs start at once
        if _pool is None:
            _pool = await asyncpg.create_pool(pgq.settings.dsn, min_size=1, max_size=4)
    await _pool.execute(
        "INSERT INTO test_runs (job_id, pid, attempt, event) VALUES ($1, $2, $3, $4)",
        ctx.job.id, os.getpid(), ctx.attempt, event,
    )


@pgq.task(retry_delay=0)
async def noop(i: int, ctx: JobContext) -> int:
    await record(ctx, "run")
    return i


@pgq.task(retry_delay=0, max_attempts=5)
async def sleepy(seconds: float, ctx: JobContext, only_first_attempt: bool = False) -> str:
    """Records its start, sleeps (on every attempt, or only the first), records its end."""
    await record(ctx, "start")
    if ctx.attempt == 1 or not only_first_attempt:
        await asyncio.sleep(seconds)
    await record(ctx, "end")
    return "slept"


@pgq.task(retry_delay=0, max_attempts=2)
async def crash(ctx: JobContext) -> None:
    """Kills the worker process running it, every time."""
    await record(ctx, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@pgq.task
def stubborn(seconds: float) -> None:
    """A sync task that ignores ``ctx.cancelled``: nothing stops it before ``seconds`` pass."""
    time.sleep(seconds)


CREATE_GATES = "CREATE TABLE IF NOT EXISTS test_gates (name text PRIMARY KEY)"


@pgq.task(retry_delay=0)
async def gated(gate: str, ctx: JobContext) -> None:
    """Records its start, waits until the test opens ``gate`` (a row in ``test_gates``), records
    its end: a job that runs exactly as long as the test wants."""
    await record(ctx, "start")
    assert _pool is not None
    while not await _pool.fetchval("SELECT 1 FROM test_gates WHERE name = $1", gate):
        await asyncio.sleep(0.05)
    await record(ctx, "end")


@pgq.task(retry_delay=0, max_attempts=2)
async def fail(ctx: JobContext) -> None:
    """Raises on every attempt."""
    raise ValueError(f"failing on purpose, attempt {ctx.attempt}")
