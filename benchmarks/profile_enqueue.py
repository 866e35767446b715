"""Profiler part ``enqueue_one`` / ``enqueue_many``: where a pgqueue enqueue's time goes.

µs per job of the public API, of pgqueue's own INSERT sent with ready-made parameters (API minus
statement = pgqueue's Python overhead), for a single job of that statement with one more part
taken away per step (``pgqueue_internals.LADDER``: what each part costs), of raw asyncpg's INSERT
and of ``SELECT 1`` (a bare round trip), some also with the WAL flush off; then a cProfile of the
API loop.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg

from . import pgqueue_internals as internals
from .contestants.base import QUEUE
from .contestants.pgqueue import make_queue
from .contestants.raw import DDL as RAW_DDL
from .harness import settle
from .profile_output import by_module, top


async def part_enqueue(dsn: str, n: int, many: bool, bulk: int, n_top: int) -> None:
    await asyncio.to_thread(internals.install_schema, dsn)
    conn = await asyncpg.connect(dsn)
    await conn.execute(RAW_DDL)
    if not many:
        await internals.create_twins(conn)
    await settle(dsn)
    pgq, noop, _state = make_queue(dsn)
    label = "enqueue_many" if many else "enqueue_one"

    # Each variant runs in blocks, interleaved round-robin, so drifts of a shared box (other
    # processes' fsyncs, checkpoints) hit them alike; the median block is reported.
    def blocks_of(ids_all: list[int]) -> list[list[int]]:
        per = max(1, len(ids_all) // rounds)
        return [ids_all[s:s + per] for s in range(0, len(ids_all), per)]

    async def api(ids: list[int]) -> None:
        if many:
            for s in range(0, len(ids), bulk):
                await noop.using(conn).enqueue_many(ids[s:s + bulk])
        else:
            for i in ids:
                await noop.using(conn).enqueue(i)

    async def statement(ids: list[int]) -> None:
        if many:
            for s in range(0, len(ids), bulk):
                chunk = ids[s:s + bulk]
                await conn.fetch(internals.insert_statement(pgq, len(chunk)),
                                 *internals.insert_params(noop, chunk))
        else:
            for i in ids:
                await conn.fetch(internals.insert_statement(pgq, 1), *internals.insert_params(noop, [i]))

    def statement_without(steps: int) -> Callable[[list[int]], Awaitable[None]]:
        """pgqueue's single-job insert without the first ``steps`` parts of ``LADDER``."""
        async def run(ids: list[int]) -> None:
            stripped = internals.insert_without(pgq, steps)
            for i in ids:
                await conn.fetch(stripped, *internals.insert_params(noop, [i]))
        return run

    async def raw(ids: list[int]) -> None:
        if many:
            for s in range(0, len(ids), bulk):
                await conn.execute("INSERT INTO raw_jobs (queue, payload) SELECT $1, unnest($2::jsonb[])",
                                   QUEUE, [json.dumps({"i": i}) for i in ids[s:s + bulk]])
        else:
            for i in ids:
                await conn.execute("INSERT INTO raw_jobs (queue, payload) VALUES ($1, $2::jsonb)",
                                   QUEUE, json.dumps({"i": i}))

    async def select1(ids: list[int]) -> None:
        for _ in range(len(ids) if not many else max(1, len(ids) // bulk)):
            await conn.fetchval("SELECT 1")

    def no_flush(fn: Callable[[list[int]], Awaitable[None]]) -> Callable[[list[int]], Awaitable[None]]:
        """The same with synchronous_commit off for this session: what is left without the
        WAL flush at commit (diagnostic only; pgqueue itself never changes it)."""
        async def run(ids: list[int]) -> None:
            await conn.execute("SET synchronous_commit = off")
            try:
                await fn(ids)
            finally:
                await conn.execute("RESET synchronous_commit")
        return run

    variants = {"api": api, "statement": statement,
                **({} if many else {
                    ("statement, " if steps == 1 else "  and ") + internals.LADDER[steps - 1]:
                        statement_without(steps)
                    for steps in range(1, len(internals.LADDER) + 1)}),
                "raw INSERT": raw, "SELECT 1" + (" per chunk" if many else ""): select1,
                "api, no WAL flush": no_flush(api), "statement, no WAL flush": no_flush(statement),
                "raw INSERT, no WAL flush": no_flush(raw)}
    rounds = max(1, min(10, n // (bulk if many else 100)))
    try:
        for fn in variants.values():
            await fn(list(range(min(n, bulk if many else 50))))  # warm-up: prepared statements
        per_job: dict[str, list[float]] = {k: [] for k in variants}
        cpu_job: dict[str, list[float]] = {k: [] for k in variants}
        for block in blocks_of(list(range(n))):
            for k, fn in variants.items():
                c0, t0 = time.process_time(), time.perf_counter()
                await fn(block)
                per_job[k].append((time.perf_counter() - t0) / len(block))
                cpu_job[k].append((time.process_time() - c0) / len(block))
        results = {k: statistics.median(v) for k, v in per_job.items()}
        cpu = {k: statistics.median(v) for k, v in cpu_job.items()}
        print(f"\n=== {label}: N={n}" + (f" in chunks of {bulk}" if many else "")
              + f", {rounds} interleaved blocks per variant, median block ===")
        for k, v in results.items():
            print(f"  {k:28s} {v * 1e6:8.1f} µs/job   {1 / v:10,.0f} jobs/s   "
                  f"client CPU {cpu[k] * 1e6:6.1f} µs/job")
        py = results["api"] - results["statement"]
        print(f"  {'=> pgqueue Python overhead':28s} {py * 1e6:8.1f} µs/job   "
              f"({py / results['api'] * 100:.0f}% of the API time)")
        py = results["api, no WAL flush"] - results["statement, no WAL flush"]
        print(f"  {'=> Python overhead, no flush':28s} {py * 1e6:8.1f} µs/job")
        py = cpu["api"] - cpu["statement"]
        print(f"  {'=> Python CPU: api - stmt':28s} {py * 1e6:8.1f} µs/job (client process CPU)")
        sq = results["statement, no WAL flush"] - results["raw INSERT, no WAL flush"]
        print(f"  {'=> statement vs raw, no flush':28s} {sq * 1e6:8.1f} µs/job")
        print(f"  {'=> raw INSERT ÷ each':28s} " + ", ".join(
            f"{k.strip()} {results['raw INSERT'] / results[k]:.2f}" for k in variants
            if not k.startswith(("raw", "SELECT")) and "no WAL flush" not in k))
        profile = cProfile.Profile()
        profile.enable()
        await api(list(range(n)))
        profile.disable()
        by_module(profile, n, label)
        top(profile, n_top, label)
    finally:
        await conn.close()
