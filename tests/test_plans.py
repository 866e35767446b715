"""The hot path's query plans stay index scans bounded by the batch, however big the table grows.

Plans are checked the way the worker runs them: the claim with its generic plan and no seq scans,
the completion planned per call; on a table with many finished rows and many queued ones, never
analyzed (autovacuum may be off), so the planner sees what a fresh production table shows it.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from pgqueue.database import _SERVER_SETTINGS

FINISHED = 50_000
QUEUED = 5_000
BATCH = 50


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _fill(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO pgqueue.jobs (task, status, finished_at) "
        "SELECT 'old', 'succeeded', now() FROM generate_series(1, $1)",
        FINISHED,
    )
    await db.execute(
        "INSERT INTO pgqueue.jobs (task, queue) SELECT 't', 'q' || (g % 3) "
        "FROM generate_series(1, $1) g",
        QUEUED,
    )


async def _explain(conn: asyncpg.Connection, statement: str, *args: Any) -> dict[str, Any]:
    """EXPLAIN ANALYZE in a transaction that is rolled back (the claim writes)."""
    tx = conn.transaction()
    await tx.start()
    try:
        # A named prepared statement, executed as the worker executes it (generic plan forced).
        prepared = await conn.prepare(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
        result = await prepared.fetchval(*args)
    finally:
        await tx.rollback()
    return json.loads(result)[0]["Plan"]


async def test_claim_is_an_index_scan_bounded_by_the_batch(database_url: str, db) -> None:
    from pgqueue.sql import Statements

    await _fill(db)
    statements = Statements("pgqueue")
    conn = await asyncpg.connect(
        database_url,
        server_settings={**_SERVER_SETTINGS, "plan_cache_mode": "force_generic_plan",
                         "enable_seqscan": "off"},
    )
    try:
        for statement, queues in (
            (statements.claim_from_all_queues, None),
            (statements.claim_from_queues, ["q1", "q2"]),
        ):
            plan = await _explain(conn, statement, queues, BATCH, 1)
            scans = [n for n in _nodes(plan)
                     if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]]
            assert scans, plan
            assert all(n["Node Type"] != "Seq Scan" for n in scans), scans
            claim_scans = [n for n in scans if n.get("Index Name") == "jobs_claim"
                           and n["Node Type"] == "Index Scan"]
            assert claim_scans
            # Each queue's scan stops at the batch: it reads what it claims, not the table.
            assert all(n["Actual Rows"] <= BATCH for n in claim_scans), claim_scans
            updates = [n for n in _nodes(plan) if n["Node Type"] == "ModifyTable"]
            assert updates and updates[0]["Actual Rows"] == BATCH
    finally:
        await conn.close()


async def test_completion_reaches_rows_through_the_primary_key(database_url: str, db) -> None:
    from pgqueue.sql import Statements

    await _fill(db)
    statements = Statements("pgqueue")
    ids = [r["id"] for r in await db.fetch(
        "UPDATE pgqueue.jobs SET status = 'running', attempts = 1 WHERE id IN "
        "(SELECT id FROM pgqueue.jobs WHERE status = 'queued' LIMIT $1) RETURNING id", BATCH)]
    conn = await asyncpg.connect(
        database_url,
        server_settings={**_SERVER_SETTINGS, "plan_cache_mode": "force_custom_plan",
                         "enable_seqscan": "off"},
    )
    try:
        n = len(ids)
        plan = await _explain(conn, statements.complete, ids, [1] * n, ["succeeded"] * n,
                              [None] * n, [None] * n, [0.0] * n)
    finally:
        await conn.close()
    scans = [node for node in _nodes(plan)
             if node.get("Relation Name") == "jobs" and "Scan" in node["Node Type"]]
    assert [node.get("Index Name") for node in scans] == ["jobs_pkey"], scans
    assert sum(node["Actual Rows"] * node["Actual Loops"] for node in scans) == BATCH
