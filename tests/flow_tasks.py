"""Tasks of the workflow tests, run by worker *subprocesses*
(``python -m pgqueue.worker tests.flow_tasks:pgq``) and in-process.

Each run is recorded in ``flow_runs`` through the task's own connection; ``pay`` writes a row of
its own in ``payments`` and completes its job in the same transaction.
"""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg

from pgqueue import JobContext, JobLost, PgQueue

pgq = PgQueue(
    heartbeat_interval=float(os.environ.get("TEST_HEARTBEAT", "0.5")),
    rescue_after=float(os.environ.get("TEST_RESCUE_AFTER", "60")),
    poll_interval=0.2,
)

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS flow_runs (
    n        bigint GENERATED ALWAYS AS IDENTITY,
    job_id   bigint NOT NULL,
    name     text NOT NULL,
    attempt  integer NOT NULL,
    inputs   jsonb
);
CREATE TABLE IF NOT EXISTS payments (
    job_id   bigint NOT NULL,
    order_id integer NOT NULL,
    attempt  integer NOT NULL,
    pid      integer NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_events (
    job_id   bigint NOT NULL,
    attempt  integer NOT NULL,
    event    text NOT NULL
)
"""

_pool: asyncpg.Pool | None = None
_pool_opening = asyncio.Lock()


async def pool() -> asyncpg.Pool:
    global _pool
    async with _pool_opening:
        if _pool is None:
            _pool = await asyncpg.create_pool(pgq.settings.dsn, min_size=1, max_size=4)
    return _pool


async def close_pool() -> None:
    global _pool
    if _pool is not None:
        await _pool.close()
        _pool = None


@pgq.task(retry_delay=0)
async def step(name: str, ctx: JobContext) -> str:
    """Records its run and the results of the jobs it was enqueued after."""
    inputs = [[job.id, job.status, job.result] for job in await ctx.dependencies()]
    await (await pool()).execute(
        "INSERT INTO flow_runs (job_id, name, attempt, inputs) VALUES ($1, $2, $3, $4::jsonb)",
        ctx.job.id, name, ctx.attempt, json.dumps(inputs),
    )
    return name


@pgq.task(max_attempts=1)
async def flaky(name: str, ctx: JobContext) -> str:
    """Fails on its first attempt, succeeds on the next (after ``pgq.retry``)."""
    if ctx.attempt == 1:
        raise RuntimeError(f"{name} fails the first time")
    return name


@pgq.task(max_attempts=5, retry_delay=0)
async def pay(order_id: int, ctx: JobContext, mode: str = "complete_in", sleep: float = 0.0) -> dict:
    """Writes its payment row. ``complete_in``: and completes the job in the same transaction;
    ``plain``: commits the row, then returns (the worker writes the outcome afterwards);
    ``rollback``: completes in a transaction that then rolls back, and returns normally.
    ``sleep`` seconds pass (first attempt only) inside the transaction, before completing."""
    conn = await (await pool()).acquire()
    try:
        if mode == "plain":
            await conn.execute(
                "INSERT INTO payments (job_id, order_id, attempt, pid) VALUES ($1, $2, $3, $4)",
                ctx.job.id, order_id, ctx.attempt, os.getpid())
            return {"paid": order_id, "by": "return"}
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO payments (job_id, order_id, attempt, pid) VALUES ($1, $2, $3, $4)",
                    ctx.job.id, order_id, ctx.attempt, os.getpid())
                if sleep and ctx.attempt == 1:
                    await (await pool()).execute(  # committed at once, for the test to see
                        "INSERT INTO flow_events (job_id, attempt, event) VALUES ($1, $2, 'sleeping')",
                        ctx.job.id, ctx.attempt)
                    try:
                        await asyncio.sleep(sleep)
                    except asyncio.CancelledError:
                        pass  # finish the critical section anyway: complete_in must refuse
                await ctx.complete_in(conn, result={"paid": order_id, "by": "complete_in"})
                if mode == "rollback":
                    raise _RollBack
        except _RollBack:
            return {"paid": order_id, "by": "return"}
        except JobLost:
            await (await pool()).execute(
                "INSERT INTO flow_events (job_id, attempt, event) VALUES ($1, $2, 'lost')",
                ctx.job.id, ctx.attempt)
            raise
        return {"paid": order_id, "by": "return"}
    finally:
        await (await pool()).release(conn)


class _RollBack(Exception):
    pass


@pgq.task(max_attempts=1)
async def pay_orm(order_id: int, ctx: JobContext, connection: bool = False) -> str:
    """As ``pay``, through a SQLAlchemy AsyncSession (or AsyncConnection with ``connection``)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from pgqueue.migrate import sqlalchemy_url

    engine = create_async_engine(sqlalchemy_url(pgq.settings.dsn or ""))
    insert = text("INSERT INTO payments (job_id, order_id, attempt, pid) VALUES (:j, :o, :a, :p)")
    values = {"j": ctx.job.id, "o": order_id, "a": ctx.attempt, "p": os.getpid()}
    try:
        if connection:
            async with engine.begin() as conn:
                await conn.execute(insert, values)
                await ctx.complete_in(conn, result="orm connection")
        else:
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(insert, values)
                await ctx.complete_in(session, result="orm session")
    finally:
        await engine.dispose()
    return "returned"
