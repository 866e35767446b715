"""How long ``await pgq.stats()`` takes as finished jobs pile up, alone and with callers at once.

    python -m benchmarks.stats                                  # --sizes 10,1000000,10000000
    python -m benchmarks.stats --sizes 10,100000 --calls 30     # quick

A dashboard polls ``pgq.stats()`` every few seconds, and with the retention's worth of finished
jobs in the table (7 days by default) it must not turn into a scan that grows with the history;
several dashboards polling at once must not multiply the database's work either. So, per size,
in a fresh database: ``size`` finished jobs (2% failed, the rest succeeded) written by one SQL
statement through ``pgqueue_internals.fill_finished`` (the one function that knows how finished
jobs are stored), then ``VACUUM ANALYZE`` + ``CHECKPOINT`` so dead rows play no part, then a few
hundred queued jobs (``enqueue_many``) and running ones (a worker on queue ``held`` whose task
waits until the end). Then ``--warmup`` calls, ``--calls`` calls one after another (median, p95),
and ``--calls`` rounds of ``--callers`` calls at once (per-call median and p95, and each round's
wall time). The database's work is read as buffer accesses (``blks_hit + blks_read`` of
pg_stat_database) per call; the running worker adds a few to every phase (heartbeats, polls).
Everything except the fill goes through pgqueue's public API. Writes results/stats-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
from typing import Any

import asyncpg
from pgqueue import PgQueue

from .harness import (
    add_server_options,
    db_dsn,
    fmt,
    machine_info,
    now,
    percentile,
    recreate_database,
    results_path,
    run_async,
    schema_bytes,
    server_info,
    settle,
    utc_now,
    write_json,
)
from .pgqueue_internals import SCHEMA, fill_finished, install_schema

logging.getLogger("pgqueue").setLevel(logging.WARNING)

QUEUE, HELD_QUEUE = "default", "held"
FAILED_SHARE = 0.02

BUFFERS = ("SELECT blks_hit + blks_read FROM pg_stat_database WHERE datname = current_database()")


async def buffers(observer: asyncpg.Connection) -> int:
    """The database's buffer accesses so far. Backends report theirs when idle, at most once a
    second, hence the pause; the observer's cached snapshot is cleared first."""
    await asyncio.sleep(1.2)
    await observer.execute("SELECT pg_stat_clear_snapshot()")
    return await observer.fetchval(BUFFERS)


def summary(ms: list[float]) -> dict[str, Any]:
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": percentile(ms, 0.95),
            "max_ms": max(ms)}


async def timed_stats(pgq: PgQueue, sink: list[float],
                      max_age: float = 0.0) -> dict[str, dict[str, int]]:
    t = now()
    counts = await pgq.stats(max_age=max_age)
    sink.append((now() - t) * 1000)
    return counts


async def fill(dsn: str, size: int) -> dict[str, Any]:
    """The finished jobs, by SQL (timed), then settled (timed)."""
    failed = int(size * FAILED_SHARE)
    conn = await asyncpg.connect(dsn)
    try:
        t = now()
        rows = await fill_finished(conn, SCHEMA, size - failed, QUEUE, "succeeded")
        rows += await fill_finished(conn, SCHEMA, failed, QUEUE, "failed")
        fill_s = now() - t
    finally:
        await conn.close()
    t = now()
    await settle(dsn)
    return {"finished": rows, "failed": failed, "fill_s": fill_s, "settle_s": now() - t}


async def measure_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    db = f"{args.db_prefix}stats"
    dsn = db_dsn(args.dsn_base, db)
    await recreate_database(args.dsn_base, db)
    await asyncio.to_thread(install_schema, dsn)
    res: dict[str, Any] = {"size": size}
    res.update(await fill(dsn, size))
    print(f"  filled {res['finished']:,} finished jobs in {res['fill_s']:.1f} s "
          f"(+ VACUUM ANALYZE, CHECKPOINT {res['settle_s']:.1f} s)", flush=True)

    pgq = PgQueue(dsn=dsn, schema=SCHEMA, pool_max_size=args.callers + 4)
    release = asyncio.Event()

    @pgq.task(name="noop", queue=QUEUE)
    async def noop(i: int) -> None:
        pass

    @pgq.task(name="hold", queue=HELD_QUEUE)
    async def hold(i: int) -> None:
        await release.wait()

    observer = await asyncpg.connect(dsn)
    async with pgq:
        for start in range(0, args.queued, 1000):
            await noop.enqueue_many(list(range(start, min(args.queued, start + 1000))))
        await hold.enqueue_many(list(range(args.running)))
        worker = pgq.worker(queues=[HELD_QUEUE], concurrency=args.running, shutdown_grace=5)
        running = asyncio.create_task(worker.run())
        try:
            deadline = now() + 60
            while (await pgq.stats()).get(HELD_QUEUE, {}).get("running", 0) < args.running:
                if now() > deadline or running.done():
                    raise RuntimeError("the held jobs did not all start within 60 s")
                await asyncio.sleep(0.2)
            counts = await pgq.stats()
            res["counts"] = counts
            res["schema_bytes"] = await schema_bytes(observer, SCHEMA)
            res.update(await measure_calls(args, pgq, observer))
        finally:
            release.set()
            worker.stop()
            await asyncio.wait_for(running, 30)
    await observer.close()
    if not args.keep:
        await recreate_database(args.dsn_base, db, drop_only=True)
    return res


async def measure_calls(args: argparse.Namespace, pgq: PgQueue,
                        observer: asyncpg.Connection) -> dict[str, Any]:
    """Warm-up, then sequential calls, then rounds of concurrent callers; buffers per call."""
    for _ in range(args.warmup):
        await pgq.stats()
    seq: list[float] = []
    b0 = await buffers(observer)
    t = now()
    for _ in range(args.calls):
        await timed_stats(pgq, seq)
    seq_wall = now() - t
    b1 = await buffers(observer)
    conc: list[float] = []
    rounds: list[float] = []
    t = now()
    for _ in range(args.calls):
        r = now()
        await asyncio.gather(*(timed_stats(pgq, conc) for _ in range(args.callers)))
        rounds.append((now() - r) * 1000)
    conc_wall = now() - t
    b2 = await buffers(observer)
    # As the dashboard reads (``max_age``): callers that come while a read is under way share it.
    # The age here is a millisecond, so that each round still reads anew.
    shared: list[float] = []
    for _ in range(args.calls):
        await asyncio.gather(*(timed_stats(pgq, shared, 0.001) for _ in range(args.callers)))
    b3 = await buffers(observer)
    one = summary(seq)
    many = summary(conc)
    buf_one = (b1 - b0) / args.calls
    buf_many = (b2 - b1) / (args.calls * args.callers)
    return {
        "sequential": one | {"calls_per_s": args.calls / seq_wall, "buffers_per_call": buf_one},
        "concurrent": many | {"callers": args.callers, "round_median_ms": statistics.median(rounds),
                              "round_p95_ms": percentile(rounds, 0.95),
                              "calls_per_s": args.calls * args.callers / conc_wall,
                              "buffers_per_call": buf_many},
        # How much longer N dashboards wait than one: ~1 if the work is shared or cheap,
        # ~N / cores or more if every caller redoes the whole count.
        "round_over_single": statistics.median(rounds) / one["median_ms"],
        "shared": summary(shared) | {"buffers_per_call": (b3 - b2) / (args.calls * args.callers)},
    }


def print_table(results: list[dict[str, Any]], callers: int) -> None:
    print(f"\n| finished jobs | fill s | schema MB | stats() median ms | p95 ms | buffers/call "
          f"| {callers} at once: median ms | p95 ms | round ms | buffers/call | round / single "
          f"| {callers} at once, shared (max_age): buffers/call |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s, c = r["sequential"], r["concurrent"]
        print(f"| {r['finished']:,} | {r['fill_s']:.1f} | {r['schema_bytes'] / 2**20:,.1f} "
              f"| {fmt(s['median_ms'], 2)} | {fmt(s['p95_ms'], 2)} | {fmt(s['buffers_per_call'])} "
              f"| {fmt(c['median_ms'], 2)} | {fmt(c['p95_ms'], 2)} | {fmt(c['round_median_ms'], 2)} "
              f"| {fmt(c['buffers_per_call'])} | {r['round_over_single']:.2f} "
              f"| {fmt(r['shared']['buffers_per_call'])} |")


async def main_async(args: argparse.Namespace) -> None:
    started = utc_now()
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    doc: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "config": {k: getattr(args, k) for k in ("sizes", "calls", "warmup", "callers", "queued",
                                                 "running", "loop")} | {"failed_share": FAILED_SHARE},
        "machine": machine_info(),
        "postgres": await server_info(args.dsn_base),
        "results": [],
    }
    out = results_path(args.out, "stats", started)
    for size in sizes:
        print(f"== {size:,} finished jobs", flush=True)
        r = await measure_size(args, size)
        s, c = r["sequential"], r["concurrent"]
        print(f"  stats(): median {s['median_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, "
              f"{s['buffers_per_call']:,.0f} buffers/call; {args.callers} at once: median "
              f"{c['median_ms']:.2f} ms, p95 {c['p95_ms']:.2f} ms, round {c['round_median_ms']:.2f} ms "
              f"(x{r['round_over_single']:.2f} one call), {c['buffers_per_call']:,.0f} buffers/call",
              flush=True)
        doc["results"].append(r)
        write_json(out, doc)  # after every size: a long run keeps what it measured
    doc["finished_at"] = utc_now().isoformat(timespec="seconds")
    write_json(out, doc)
    print_table(doc["results"], args.callers)
    print(f"\nwrote {out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,1000000,10000000", help="finished jobs per measurement")
    p.add_argument("--calls", type=int, default=50, help="timed calls (and rounds of --callers)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--callers", type=int, default=5, help="dashboards polling at once")
    p.add_argument("--queued", type=int, default=300, help="queued jobs nobody runs")
    p.add_argument("--running", type=int, default=50, help="jobs running during the measurement")
    p.add_argument("--keep", action="store_true", help="keep the last database (to EXPLAIN by hand)")
    p.add_argument("--out", default=None, help="results JSON (default results/stats-<time>.json)")
    add_server_options(p)
    args = p.parse_args(argv)
    run_async(main_async(args), args.loop)


if __name__ == "__main__":
    main()
