"""The soak's measuring processes: the run (producer + sampler) and its one worker.

Both are started as ``python -m benchmarks.soak --role run|worker``; the method is described in
soak_report.METHOD.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
from typing import Any

import asyncpg

from .contestants import Contestant, load
from .harness import REPO_ROOT, module_command, now

WORKER_VARIANT = "c32"
MAX_WORKER_JOBS = 10**9  # stop_after for the worker: never reached, the run is time-bounded

# Main job table of the known contestants (the one whose live/dead tuples and row
# count make the headline).  A contestant may instead declare ``job_table`` on its
# adapter; otherwise the harness picks the most-updated table whose name contains
# "job" (see pick_job_table) and records that it guessed.
JOB_TABLES = {
    "raw": "public.raw_jobs",
    "pgqueuer": "public.pgqueuer",
    "procrastinate": "public.procrastinate_jobs",
    # queue storage: one immutable row per enqueued job (and per retry) in the ready ring,
    # LIST-partitioned by ready_slot into 16 partitions ready_entries_0..15 (summed, see db_sample)
    "awa": "awa.ready_entries",
}

def qident(schema: str, rel: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + rel.replace('"', '""') + '"'


# --------------------------------------------------------------------------- worker role

async def role_worker(args: argparse.Namespace) -> None:
    """One worker (c32 variant) for the whole run; reports 'P <started> <t>' lines."""
    c = load(args.contestant)
    concurrency, opts = c.variant(WORKER_VARIANT)
    count = 0
    first = True

    def on_job(i: int) -> None:
        nonlocal count, first
        count += 1
        if first:
            first = False
            print(f"FIRST {now():.6f}", flush=True)

    async def report() -> None:
        deadline = now() + args.max_s
        while now() < deadline:
            print(f"P {count} {now():.6f}", flush=True)
            await asyncio.sleep(0.2)

    rep = asyncio.ensure_future(report())
    try:
        await c.run_worker(args.dsn, concurrency, MAX_WORKER_JOBS, on_job, **opts)
    finally:
        rep.cancel()


# --------------------------------------------------------------------------- DB sampling

STATS_SQL = """
SELECT s.schemaname, s.relname, s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd,
       s.n_tup_hot_upd, s.n_tup_del, s.autovacuum_count, s.autoanalyze_count,
       pg_total_relation_size(s.relid) AS total_bytes,
       pg_relation_size(s.relid)       AS heap_bytes,
       pg_indexes_size(s.relid)        AS index_bytes,
       c.relkind::text                 AS relkind,
       (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i
          JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE i.inhrelid = s.relid LIMIT 1) AS parent
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
ORDER BY s.schemaname, s.relname
"""

# Summed from a partitioned table's partitions into its own entry (the parent itself has no
# storage and no tuple statistics), so a partitioned job table (awa's ready ring) can be the
# headline table.  Totals over "all tables" skip the parents, so nothing is counted twice.
PART_SUM = ("n_live_tup", "n_dead_tup", "n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del",
            "autovacuum_count", "autoanalyze_count", "total_bytes", "heap_bytes", "index_bytes", "rows")


async def db_sample(conn: asyncpg.Connection) -> dict[str, Any]:
    t = now()
    rows = await conn.fetch(STATS_SQL)
    tables: dict[str, Any] = {}
    for r in rows:
        key = f"{r['schemaname']}.{r['relname']}"
        d = dict(r)
        del d["schemaname"], d["relname"]
        if d["relkind"] == "p":  # partitioned parent: filled from its partitions below
            d["rows"] = 0
        else:
            d["rows"] = await conn.fetchval(f"SELECT count(*) FROM {qident(r['schemaname'], r['relname'])}")
        tables[key] = d
    for key, d in tables.items():
        if d["relkind"] == "p":
            parts = [v for v in tables.values() if v.get("parent") == key and v["relkind"] != "p"]
            d["partitions"] = len(parts)
            for f in PART_SUM:
                d[f] = sum(v[f] or 0 for v in parts)
    leaves = [v for v in tables.values() if v.get("relkind") != "p"]
    return {
        "tables": tables,
        "total_bytes": sum(v["total_bytes"] for v in leaves),
        "rows_all_tables": sum(v["rows"] for v in leaves),
        "dead_all_tables": sum(v["n_dead_tup"] for v in leaves),
        "db_sample_s": now() - t,
    }


def pick_job_table(c: Contestant, tables: dict[str, Any]) -> tuple[str | None, str]:
    declared = getattr(c, "job_table", None) or JOB_TABLES.get(c.name)
    if declared:
        if "." not in declared:
            declared = next((k for k in tables if k.split(".", 1)[1] == declared), declared)
        return declared, "declared"
    cands = [k for k in tables if "job" in k.split(".", 1)[1].lower()] or list(tables)
    if not cands:
        return None, "none"
    best = max(cands, key=lambda k: (tables[k]["n_tup_upd"] + tables[k]["n_tup_del"], tables[k]["n_tup_ins"]))
    return best, "guessed (most-updated table named *job*)"


# --------------------------------------------------------------------------- held snapshot

HOLDER_NAME = "soak_holder"


async def hold_snapshot(dsn: str) -> asyncpg.Connection:
    """A long report or a forgotten session: one REPEATABLE READ transaction that takes an xid
    (the caller runs ``SELECT txid_current()``) and then stays idle until the run ends, so no
    VACUUM, the server's or the library's own, may remove a row version deleted after it began.
    As shared/bench's soak.py --hold-snapshot does, so the figures compare with the peers'."""
    holder = await asyncpg.connect(dsn, server_settings={"application_name": HOLDER_NAME})
    await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    return holder


async def holder_state(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The holder as the server sees it at the end: proof that it stayed idle in its transaction."""
    row = await conn.fetchrow(
        "SELECT state, backend_xid::text AS xid, backend_xmin::text AS xmin, "
        "extract(epoch FROM now() - xact_start) AS xact_age_s FROM pg_stat_activity "
        "WHERE application_name = $1 AND datname = current_database()", HOLDER_NAME)
    return dict(row) if row else None


# --------------------------------------------------------------------------- scenario role

async def role_run(args: argparse.Namespace) -> dict[str, Any]:
    c = load(args.contestant)
    dsn = args.dsn
    duration = args.minutes * 60.0
    await c.install(dsn, "soak")

    # prefill the backlog (untimed)
    await c.open_producer(dsn)
    enqueued = 0

    async def enqueue_batch(n: int) -> None:
        nonlocal enqueued
        ids = list(range(enqueued, enqueued + n))
        if c.supports_bulk:
            await c.enqueue_many(ids)
        else:
            for i in ids:
                await c.enqueue_one(i)
        enqueued += n

    while enqueued < args.backlog:
        await enqueue_batch(min(args.bulk_size, args.backlog - enqueued))
    conn = await asyncpg.connect(dsn)
    await conn.execute("ANALYZE")
    await conn.execute("CHECKPOINT")

    worker = await asyncio.create_subprocess_exec(
        *module_command("soak", "--role", "worker", "--contestant", args.contestant, "--dsn", dsn,
                        "--loop", args.loop, "--max-s", str(duration + 120)),
        cwd=REPO_ROOT, stdout=subprocess.PIPE,
    )
    progress = {"count": 0, "t": None, "first": None}
    first_evt = asyncio.Event()

    async def read_progress() -> None:
        while True:
            line = await worker.stdout.readline()
            if not line:
                return
            parts = line.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] == "P":
                progress["count"], progress["t"] = int(parts[1]), float(parts[2])
            elif len(parts) == 2 and parts[0] == "FIRST":
                progress["first"] = float(parts[1])
                first_evt.set()

    reader = asyncio.ensure_future(read_progress())
    samples: list[dict[str, Any]] = []
    producer_stats = {"batches": 0, "backlog_min": None, "backlog_max": None}
    result: dict[str, Any] = {"hold_snapshot": bool(args.hold_snapshot)}
    holder = None
    try:
        t_spawn = now()
        await asyncio.wait_for(first_evt.wait(), 120)
        t0 = progress["first"]
        t_end = t0 + duration
        result["worker_startup_s"] = t0 - t_spawn
        if args.hold_snapshot:
            holder = await hold_snapshot(dsn)
            result["held_xid"] = await holder.fetchval("SELECT txid_current()")

        async def produce() -> None:
            loops = 0
            while now() < t_end and loops < 10_000_000:
                loops += 1
                backlog = enqueued - progress["count"]
                b_min, b_max = producer_stats["backlog_min"], producer_stats["backlog_max"]
                producer_stats["backlog_min"] = backlog if b_min is None else min(b_min, backlog)
                producer_stats["backlog_max"] = backlog if b_max is None else max(b_max, backlog)
                if backlog <= args.backlog - args.bulk_size:
                    await enqueue_batch(args.bulk_size)
                    producer_stats["batches"] += 1
                else:
                    await asyncio.sleep(0.05)

        prod = asyncio.ensure_future(produce())
        n_samples = int(duration // args.sample_s)
        for k in range(n_samples + 1):
            target = t0 + k * args.sample_s
            delay = target - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if worker.returncode is not None:
                raise RuntimeError(f"worker exited early rc={worker.returncode}")
            if prod.done() and prod.exception():
                raise prod.exception()
            snap = {"k": k, "t_s": now() - t0, "started": progress["count"],
                    "started_t_s": (progress["t"] - t0) if progress["t"] else None,
                    "enqueued": enqueued, "backlog_est": enqueued - progress["count"],
                    "loadavg": os.getloadavg()}
            snap.update(await db_sample(conn))
            samples.append(snap)
            b = snap["backlog_est"]
            print(f"  t={snap['t_s']:6.1f}s started={snap['started']:>8} backlog~{b:>6} "
                  f"size={snap['total_bytes'] / 2**20:8.1f} MB rows={snap['rows_all_tables']:>9} "
                  f"dead={snap['dead_all_tables']:>8} load={snap['loadavg'][0]:.2f}", flush=True)
        prod.cancel()
        try:
            await prod
        except asyncio.CancelledError:
            pass
        if holder is not None:
            result["holder_at_end"] = await holder_state(conn)
    finally:
        if holder is not None:
            await holder.close()
        await c.close_producer()
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)  # our own child, by pid
            try:
                await asyncio.wait_for(worker.wait(), 10)
            except asyncio.TimeoutError:
                worker.kill()
                await worker.wait()
        reader.cancel()
    job_table, how = pick_job_table(c, samples[-1]["tables"])
    await conn.close()
    result.update(samples=samples, producer=producer_stats, job_table=job_table, job_table_how=how,
                  worker_rc_after_terminate=worker.returncode)
    return result
