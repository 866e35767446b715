"""Profiler part ``sql``: the server time of pgqueue's claim and completion next to raw's."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable
from typing import Any

import asyncpg

from pgqueue import PgQueue

from . import pgqueue_internals as internals
from .contestants.base import JOB_NAME, QUEUE
from .contestants.raw import CLAIM_MANY, DONE_MANY
from .contestants.raw import DDL as RAW_DDL
from .harness import settle


async def part_sql(dsn: str, backlog: int, rounds: int) -> None:
    """Client-side time of each statement (round trip included), interleaved, median of rounds."""
    await asyncio.to_thread(internals.install_schema, dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(RAW_DDL)
        await conn.execute(internals.FILL_QUEUED, JOB_NAME, QUEUE, backlog)
        await conn.execute(
            "INSERT INTO raw_jobs (queue, payload) SELECT $2, jsonb_build_object('i', g) "
            "FROM generate_series(1, $1) g", backlog, QUEUE)
        await settle(dsn)
        pgq = PgQueue(dsn=dsn, schema=internals.SCHEMA)
        wid = await conn.fetchval(internals.register_worker_statement(pgq), "profiler", os.getpid(),
                                  None, 100)
        claim = internals.claim_statements(pgq)
        claims = {
            "pgqueue claim_from_all_queues": (claim["claim_from_all_queues"], None),
            "pgqueue claim_from_queues": (claim["claim_from_queues"], [QUEUE]),
        }
        write_outcomes = internals.write_outcomes_statement(pgq)
        times: dict[str, list[float]] = {}

        async def timed(label: str, coro: Awaitable[Any]) -> Any:
            t = time.perf_counter()
            result = await coro
            times.setdefault(label, []).append(time.perf_counter() - t)
            return result

        for size in (100, 1):
            for _ in range(rounds):
                for label, (sql, queues) in claims.items():
                    rows = await timed(f"{label}({size})", conn.fetch(sql, queues, size, wid))
                    await timed(f"pgqueue write_outcomes({size})",
                                conn.fetch(write_outcomes, *internals.write_outcomes_params(rows)))
                rows = await timed(f"raw CLAIM_MANY({size})", conn.fetch(CLAIM_MANY, QUEUE, size))
                await timed(f"raw DONE_MANY({size})", conn.execute(DONE_MANY, [row["id"] for row in rows]))
                if size == 1:
                    await timed("SELECT 1 (round-trip floor)", conn.fetchval("SELECT 1"))
                    await timed("asyncpg pool reset query (run on every pool release)",
                                conn.execute(conn.get_reset_query()))
        print(f"\n=== sql: client-side ms per statement (round trip included), median of {rounds} "
              f"interleaved rounds over a backlog of {backlog:,} queued rows ===")
        for k, v in times.items():
            print(f"  {k:56s} {statistics.median(v) * 1e3:7.3f} ms")
    finally:
        await conn.close()
