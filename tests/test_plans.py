"""The hot path's query plans stay index scans bounded by the batch, however big the table grows.

The worker keeps one generic plan per statement for the life of its connection, made on whatever
the table held when it first ran, so each plan is checked that way: prepared on the server while
the table holds only a batch, then explained again, unchanged, once the table holds many finished
and many queued rows (never analyzed: autovacuum may be off).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from pgqueue.database import _SERVER_SETTINGS
from pgqueue.sql import Statements

FINISHED = 50_000
QUEUED = 5_000
BATCH = 50

statements = Statements("pgqueue")


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


async def _generic_plan(conn: asyncpg.Connection, name: str, arguments: str) -> dict[str, Any]:
    """EXPLAIN ANALYZE of prepared statement ``name``'s cached generic plan, in a transaction that
    is rolled back (the statements write). ``EXPLAIN EXECUTE`` with literal arguments is the way
    to see that plan: an EXPLAIN sent with bound parameters is planned for those values."""
    tx = conn.transaction()
    await tx.start()
    try:
        result = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({arguments})")
    finally:
        await tx.rollback()
    return json.loads(result)[0]["Plan"]


async def _worker_connection(database_url: str, **settings: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        database_url,
        server_settings={**_SERVER_SETTINGS, "plan_cache_mode": "force_generic_plan",
                         "enable_seqscan": "off", **settings},
    )


async def claim_plans(conn: asyncpg.Connection, queues: list[str] | None, n: int) -> list[dict[str, Any]]:
    """The plans of the statements the claim function ran (EXPLAIN ANALYZE by ``auto_explain``,
    reported to this client), in a transaction that is rolled back. The function's own planner
    settings apply, and its plans are cached for the session like a worker's."""
    notices: list[str] = []

    def collect(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        notices.append(message.message)

    try:
        await conn.execute("LOAD 'auto_explain'")
    except asyncpg.UndefinedFileError:
        pytest.skip("this PostgreSQL has no auto_explain (contrib), which shows the claim's plans")
    for setting, value in (("log_min_duration", "0"), ("log_analyze", "on"),
                           ("log_buffers", "on"), ("log_nested_statements", "on"),
                           ("log_format", "json"), ("log_level", "notice")):
        await conn.execute(f"SET auto_explain.{setting} = {value}")
    conn.add_log_listener(collect)
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.fetch(statements.claim, queues, n, 1)
    finally:
        await tx.rollback()
        conn.remove_log_listener(collect)
        await conn.execute("SET auto_explain.log_min_duration = -1")
    return [json.loads(text.split("plan:", 1)[1])["Plan"] for text in notices if "plan:" in text]


def claiming_plan(plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the claim function's statements, the one that deleted ready rows and updated jobs."""
    [plan] = [p for p in plans if any(n.get("Relation Name") == "ready"
                                      and n.get("Operation") == "Delete" for n in _nodes(p))]
    return plan


def _job_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    scans = [n for n in _nodes(plan) if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]]
    assert scans, plan
    assert all(n["Node Type"] != "Seq Scan" for n in scans), scans
    return scans


def _ready_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The scans of the ready ring's claim index (one per slot, and per queue)."""
    scans = [n for n in _nodes(plan) if n.get("Relation Name", "").startswith("ready_")
             and "queue_priority" in n.get("Index Name", "")]
    assert scans, plan
    return scans


async def test_claim_is_an_index_scan_bounded_by_the_batch(database_url: str, db) -> None:
    await db.execute("INSERT INTO pgqueue.jobs (task, queue) SELECT 't', 'q1' "
                     "FROM generate_series(1, $1)", BATCH)
    conn = await asyncpg.connect(database_url)  # as the Claimer opens it
    try:
        for filled in (False, True):
            if filled:
                await _fill(db)
            for queues in (None, ["q1", "q2"]):
                plan = claiming_plan(await claim_plans(conn, queues, BATCH))
                claim_scans = [n for n in _ready_scans(plan) if n["Node Type"] == "Index Scan"]
                assert claim_scans
                # Each queue's scan stops at the batch: it reads what it claims, not the table.
                assert all(n["Actual Rows"] <= BATCH for n in claim_scans), claim_scans
                # The jobs themselves are reached by id, never by a scan of history.
                assert {n.get("Index Name") for n in _job_scans(plan)} == {"jobs_pkey"}
                updates = [n for n in _nodes(plan) if n["Node Type"] == "ModifyTable"
                           and n["Relation Name"] == "jobs"]
                assert updates and updates[0]["Actual Rows"] == BATCH
    finally:
        await conn.close()


async def test_completion_reaches_rows_through_the_primary_key(database_url: str, db) -> None:
    await db.execute("INSERT INTO pgqueue.jobs (task, status, attempts) SELECT 't', 'running', 1 "
                     "FROM generate_series(1, $1)", BATCH)
    conn = await _worker_connection(database_url, enable_nestloop="off")  # as the OutcomeWriter opens it
    try:
        await conn.execute("PREPARE complete(bigint[], int[], text[], text[], text[], float8[]) "
                           f"AS {statements.write_outcomes}")
        for filled in (False, True):
            if filled:
                await _fill(db)
                await db.execute("UPDATE pgqueue.jobs SET status = 'running', attempts = 1 "
                                 "WHERE id IN (SELECT id FROM pgqueue.jobs WHERE status = 'queued' "
                                 "LIMIT $1)", BATCH)
            ids = await db.fetchval("SELECT array_agg(id) FROM pgqueue.jobs "
                                    "WHERE status = 'running'")
            assert len(ids) == BATCH
            plan = await _generic_plan(
                conn, "complete",
                f"'{{{','.join(map(str, ids))}}}', array_fill(1, ARRAY[{BATCH}]), "
                f"array_fill('succeeded'::text, ARRAY[{BATCH}]), "
                f"array_fill(NULL::text, ARRAY[{BATCH}]), array_fill(NULL::text, ARRAY[{BATCH}]), "
                f"array_fill(0::float8, ARRAY[{BATCH}])",
            )
            scans = _job_scans(plan)
            assert [node.get("Index Name") for node in scans] == ["jobs_pkey"], scans
            assert sum(node["Actual Rows"] * node["Actual Loops"] for node in scans) == BATCH
            # The outcomes are read once, not once per row.
            unnest = [n for n in _nodes(plan) if n["Node Type"] == "Function Scan"]
            assert [n["Actual Loops"] for n in unnest] == [1], unnest
            updates = [n for n in _nodes(plan) if n["Node Type"] == "ModifyTable"]
            assert updates[0]["Actual Rows"] == BATCH
            await db.execute("UPDATE pgqueue.jobs SET status = 'succeeded' WHERE status = 'running'")
    finally:
        await conn.close()


async def test_the_claim_deletes_what_it_picked_one_probe_each_whatever_the_statistics(
    database_url: str, db
) -> None:
    """With a big backlog and fresh statistics the planner would rather hash the whole ready
    ring than probe it once per picked row; the claim function's settings leave it no hash or
    merge join."""
    await db.execute("INSERT INTO pgqueue.jobs (task, queue) SELECT 't', 'q1' "
                     "FROM generate_series(1, 200000)")
    await db.execute("ANALYZE pgqueue.ready")
    conn = await asyncpg.connect(database_url)  # as the Claimer opens it
    try:
        plan = claiming_plan(await claim_plans(conn, None, BATCH))
    finally:
        await conn.close()
    [delete] = [n for n in _nodes(plan) if n["Node Type"] == "ModifyTable"
                and n["Operation"] == "Delete"]
    assert delete["Actual Rows"] == BATCH
    join = delete["Plans"][0]
    assert join["Node Type"] == "Nested Loop", join
    probes = [n for n in _nodes(join) if n.get("Relation Name", "").startswith("ready_")]
    # Each picked row is looked up in its own slot only: the other slots are pruned at run time.
    assert sum(n["Actual Loops"] for n in probes) == BATCH, probes
