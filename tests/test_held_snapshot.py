"""Living beside the application's other tenants: while a transaction holds an old snapshot no
dead row can be vacuumed, yet claims only step over the ready ring's last seconds of dead rows,
and the history of finished jobs never enters them."""

from __future__ import annotations

import os
from typing import Any

import asyncpg
import pytest

from pgqueue import PgQueue
from pgqueue.testing import drain
from pgqueue.worker.ring import ReadyRing

from .conftest import FAST
from .helpers import eventually
from .test_plans import _nodes, _ready_scans, claim_plans, claiming_plan

HISTORY = int(os.environ.get("PGQUEUE_TEST_HISTORY", "10000000"))
"""Finished jobs in the table; ten million unless the environment says otherwise."""
CHURN = 20_000  # jobs run while the snapshot is held
BATCH = 100


def _buffers(nodes: list[dict[str, Any]]) -> int:
    return sum(n["Shared Hit Blocks"] + n["Shared Read Blocks"] for n in nodes)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_claims_stay_bounded_by_the_batch_with_a_held_snapshot_and_a_long_history(
    database_url: str, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO pgqueue.jobs (task, status, attempts, finished_at) "
        "SELECT 'old', 'succeeded', 1, now() FROM generate_series(1, $1)", HISTORY)
    pgq = PgQueue(dsn=database_url, **FAST)

    @pgq.task
    async def noop(i: int) -> None: ...

    holder = await asyncpg.connect(database_url)
    conn = await asyncpg.connect(database_url)  # as the Claimer opens it
    try:
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT txid_current()")  # an xid: nothing newer can be vacuumed
        async with pgq:
            for _ in range(CHURN // 2000):
                await noop.enqueue_many(range(2000))
                await drain(pgq, concurrency=32)
            ring = ReadyRing(pgq.backend)

            async def spent_slots_truncated() -> bool:
                await ring.tick()
                return await db.fetchval(
                    "SELECT count(*) FROM pg_partition_tree('pgqueue.ready') "
                    "WHERE isleaf AND pg_relation_size(relid) > 0") == 0
            await eventually(spent_slots_truncated, what="the spent slots to be truncated")
            await noop.enqueue_many(range(BATCH))
            plan = claiming_plan(await claim_plans(conn, None, BATCH))
    finally:
        await conn.close()
        await holder.close()
    updates = [n for n in _nodes(plan) if n["Node Type"] == "ModifyTable"
               and n["Relation Name"] == "jobs"]
    assert updates and updates[0]["Actual Rows"] == BATCH
    # The claim's scans: the picking (the delete then finds each picked row by its whole key).
    [picking] = [n for n in _nodes(plan) if n.get("Subplan Name") == "CTE picked"]
    scans = _ready_scans(picking)
    assert all(n["Node Type"] in ("Index Scan", "Index Only Scan") and n["Actual Rows"] <= BATCH
               for n in scans), scans
    # The churn left CHURN dead ready rows that no vacuum may remove; the claim reads pages for
    # the batch it takes, not for them (without the truncated ring: hundreds of pages).
    assert _buffers(scans) < 100, scans
