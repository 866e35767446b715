"""Settling dependents never scans: a job with 10,000 dependents, or 10,000 jobs with one
dependency each, are released (or cancelled) by index lookups bounded by what they settle, in the
transaction that records the dependency's outcome, on a table full of unrelated jobs.

The settling statements run inside the ``settle_dependents`` trigger, where EXPLAIN cannot reach
them; the transaction's own table statistics (``pg_stat_xact_user_tables``) count every scan they
make, whatever the plan. The outcome is written as the worker writes it: its statement, on a
connection with the ``OutcomeWriter``'s settings (generic plans, no seq scans, no nested loops).
"""

from __future__ import annotations

import asyncpg

from pgqueue.database import _SERVER_SETTINGS
from pgqueue.sql import Statements

statements = Statements("pgqueue")
FANOUT = 10_000


async def _writer_connection(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        database_url,
        server_settings={**_SERVER_SETTINGS, "plan_cache_mode": "force_generic_plan",
                         "enable_seqscan": "off", "enable_nestloop": "off"},
    )


async def _fill(db: asyncpg.Connection) -> tuple[int, list[int]]:
    """50,000 finished jobs; a running job with FANOUT dependents; FANOUT running jobs with one
    dependent each. Returns the big parent and the small parents."""
    await db.execute("INSERT INTO pgqueue.jobs (task, status, finished_at) "
                     "SELECT 'old', 'succeeded', now() FROM generate_series(1, 50000)")
    big = await db.fetchval("INSERT INTO pgqueue.jobs (task, status, attempts, has_dependents) "
                            "VALUES ('big', 'running', 1, true) RETURNING id")
    small = await db.fetchval(
        "WITH p AS (INSERT INTO pgqueue.jobs (task, status, attempts, has_dependents) "
        "SELECT 'small', 'running', 1, true FROM generate_series(1, $1) RETURNING id) "
        "SELECT array_agg(id ORDER BY id) FROM p", FANOUT)
    for parents in ([big] * FANOUT, small):
        await db.execute(
            "WITH c AS (INSERT INTO pgqueue.jobs (task, status, pending_dependencies) "
            "SELECT 'child', 'waiting', 1 FROM unnest($1::bigint[]) RETURNING id), "
            "n AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM c) "
            "INSERT INTO pgqueue.job_dependencies (job_id, depends_on) "
            "SELECT n.id, p.parent FROM n JOIN unnest($1::bigint[]) WITH ORDINALITY AS p(parent, i) "
            "USING (i)", parents)
    return big, small


async def _scans(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """The scans of the two tables that this backend has not reported yet (this transaction's,
    and those of its recent ones)."""
    rows = await conn.fetch(
        "SELECT relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch "
        "FROM pg_stat_xact_user_tables WHERE schemaname = 'pgqueue' "
        "AND relname IN ('jobs', 'job_dependencies')")
    return {r["relname"]: {k: v for k, v in r.items() if k != "relname"} for r in rows}


async def _write(conn: asyncpg.Connection, ids: list[int], status: str) -> dict[str, dict[str, int]]:
    """Write outcome ``status`` for ``ids`` (in the caller's transaction, which the caller rolls
    back) and return the scans per table that the write made."""
    n = len(ids)
    before = await _scans(conn)
    row = await conn.fetchrow(statements.write_outcomes, ids, [1] * n, [status] * n, [None] * n,
                              ["boom" if status == "failed" else None] * n, [0.0] * n)
    assert len(row["ids"]) == n
    after = await _scans(conn)
    return {table: {k: v - before[table][k] for k, v in counts.items()}
            for table, counts in after.items()}


async def _count(conn: asyncpg.Connection, status: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM pgqueue.jobs WHERE task = 'child' AND status::text = $1", status)


async def test_settling_dependents_is_indexed_and_bounded(database_url: str, db) -> None:
    big, small = await _fill(db)
    conn = await _writer_connection(database_url)
    try:
        cases = (([big], "succeeded", "queued"), (small[:250], "succeeded", "queued"),
                 ([big], "failed", "cancelled"), (small[:250], "cancelled", "cancelled"))
        for ids, status, settled in cases:
            expected = FANOUT if ids == [big] else len(ids)
            tx = conn.transaction()  # rolled back: each case starts from the same state
            await tx.start()
            try:
                scans = await _write(conn, ids, status)
                assert await _count(conn, settled) == expected
                for table in ("jobs", "job_dependencies"):
                    assert scans[table]["seq_scan"] == 0, (ids[:1], status, scans)
                # Links read: the settled jobs' own, not the table's 20,000.
                assert scans["job_dependencies"]["idx_tup_fetch"] <= expected, scans
            finally:
                await tx.rollback()
    finally:
        await conn.close()


async def test_outcomes_of_jobs_without_dependents_do_not_touch_the_links(
    database_url: str, db
) -> None:
    await _fill(db)
    ids = await db.fetchval(
        "WITH p AS (INSERT INTO pgqueue.jobs (task, status, attempts) "
        "SELECT 'plain', 'running', 1 FROM generate_series(1, 250) RETURNING id) "
        "SELECT array_agg(id) FROM p")
    conn = await _writer_connection(database_url)
    try:
        async with conn.transaction():
            scans = await _write(conn, ids, "succeeded")
            assert scans["job_dependencies"]["idx_scan"] == 0, scans
            assert scans["jobs"]["seq_scan"] == 0
    finally:
        await conn.close()
