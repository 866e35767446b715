"""Soak benchmark: throughput and table growth of a queue under sustained load.

    python benchmarks/soak.py --contestants pgqueue,raw,pgqueuer,procrastinate --minutes 6
    # same thing through the main driver:
    python benchmarks/run.py --contestants pgqueue,raw,pgqueuer,procrastinate --scenarios soak --soak-minutes 6

(needs matplotlib for the plot). A long run: not for a shared development box.

Per contestant, in a freshly created database bench_<contestant> (dropped afterwards),
in its own process group bounded by --timeout (default minutes*60 + 300 s):

* install the schema, prefill --backlog jobs with the bulk API, ANALYZE + CHECKPOINT
  (no VACUUM: autovacuum stays at the server's defaults and is part of what is measured);
* start ONE worker process with the contestant's ``c32`` drain variant and the no-op
  handler (only the adapter interface of contestants/base.py is used, so a new
  contestant such as pgqueue needs no change here);
* t0 = the worker's first job.  Until t0 + minutes, one producer (its own connection)
  tops the backlog (enqueued - started) back up with --bulk-size batches of the bulk
  API (enqueue_one in a loop if the contestant has none) whenever it has dropped by a
  batch, i.e. the backlog stays between backlog - bulk_size and backlog;
* every --sample-s seconds (and at t0): jobs started by the worker so far (its handler
  counter, reported with CLOCK_MONOTONIC timestamps over a pipe), jobs enqueued, and
  from pg_stat_user_tables for every user table of the database (= the library's
  tables, the database is otherwise empty): pg_total_relation_size, heap and index
  size, n_live_tup, n_dead_tup, n_tup_ins/upd/del, autovacuum count, and count(*).
* the final sample at t0 + minutes is the end state; then the producer stops and the
  worker process is terminated (SIGTERM, SIGKILL after 10 s) -- the adapter interface
  has no "stop now", and the end-state numbers are taken before that.

Writes results/soak-<date>.json, results/SOAK.md and results/soak-<date>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import asyncpg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import DEFAULT_DSN_BASE, admin_dsn, db_dsn  # noqa: E402
from contestants import load  # noqa: E402

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

# What each library does with finished jobs by default (read from the installed
# sources; see SOAK.md).  A contestant may declare ``cleanup_note`` on its adapter.
CLEANUP = {  # name -> (short, detail)
    "raw": ("keeps all (status 'done')",
            "no cleanup: finished rows stay in raw_jobs with status 'done'. 2 UPDATEs per job "
            "(claim, done); neither can be HOT because `status` is in the partial index's predicate, "
            "so every job leaves 2 dead tuples plus index entries."),
    "pgqueuer": ("deletes job row; keeps 3 log rows/job",
                 "a finished job's row is DELETEd from `pgqueuer` (the completion query is DELETE ... "
                 "RETURNING -> INSERT INTO pgqueuer_log); pgqueuer_log gets 3 rows per job (queued at "
                 "enqueue, picked at dequeue, successful at completion) and is never pruned by default "
                 "(only clear_queue_log() / TRUNCATE); every 30 s the worker's log aggregation "
                 "(log_aggregation_interval) UPDATEs all new log rows (aggregated = TRUE, 1 dead tuple "
                 "each) and upserts per-second counts into pgqueuer_statistics. The claim is an UPDATE "
                 "(status 'picked') so each job leaves 2 dead tuples in `pgqueuer` (UPDATE + DELETE). "
                 "`pgq autovac` (opt-in CLI) would set aggressive per-table autovacuum settings; "
                 "install() does not."),
    "procrastinate": ("keeps all (status 'succeeded') + 3 event rows/job",
                      "no cleanup by default: Worker(delete_jobs='never') keeps finished jobs in "
                      "procrastinate_jobs with status 'succeeded'; triggers add 3 rows per job to "
                      "procrastinate_events (deferred, started, succeeded). 2 UPDATEs per job "
                      "(todo->doing, doing->succeeded). Pruning is opt-in: delete_jobs='successful' / "
                      "'always', or scheduling the builtin remove_old_jobs task."),
    "awa": ("no row deletes; ring partitions TRUNCATEd when finished",
            "awa 0.6.9's queue storage never UPDATEs or DELETEs a job row: enqueue appends an "
            "immutable row to `awa.ready_entries` (LIST-partitioned by ready_slot, 16 partitions); "
            "a claim advances the lane's claim sequence and appends receipts (`lease_claims` or "
            "`lease_claim_batches`, `ready_claim_attempt_batches`); a successful completion appends "
            "one `receipt_completion_batches` row plus one `lease_claim_closure_batches` row per "
            "completion batch (failed/cancelled/wide rows go to `done_entries`). The maintenance "
            "leader rotates the queue ring every 1 s (16 slots; `queue_storage_queue_rotate_interval_ms` "
            "1000), the lease ring every 250 ms (8 slots) and the claim ring every 1 s (8 slots; its "
            "interval defaults to the queue ring's, awa-worker/src/storage.rs), and "
            "TRUNCATEs a sealed slot's partitions once nothing in it is live (ACCESS EXCLUSIVE "
            "with a lock_timeout, backing off when readers hold it), folding the completed count "
            "into `queue_terminal_rollups`. So finished jobs disappear a ring turn after their "
            "segment is sealed; no cleanup setting is needed (`completed_retention` applies only "
            "to the legacy canonical engine). Source: awa/client.py `AsyncClient.start` defaults, "
            "awa-model/src/queue_storage.rs, docs/configuration.md 'Retention and cleanup' and "
            "'Queue storage tuning' (github:hardbyte/awa v0.6.5)."),
}


def now() -> float:
    return time.monotonic()


def qident(schema: str, rel: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + rel.replace('"', '""') + '"'


def chaos_running() -> bool:
    try:
        r = subprocess.run(["pgrep", "-f", "chaos/run.py"], capture_output=True, text=True, timeout=5)
        return bool(r.stdout.strip())
    except Exception:  # noqa: BLE001
        return False


# --------------------------------------------------------------------------- worker role

async def role_worker(args) -> None:
    """One worker (c32 variant) for the whole run; reports 'P <started> <t>' lines."""
    c = load(args.contestant)
    opts = dict(c.drain_variants[WORKER_VARIANT])
    concurrency = opts.pop("concurrency")
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


def pick_job_table(c, tables: dict[str, Any]) -> tuple[str | None, str]:
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


# --------------------------------------------------------------------------- scenario role

async def role_run(args) -> dict[str, Any]:
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
        sys.executable, os.path.abspath(__file__), "--role", "worker",
        "--contestant", args.contestant, "--dsn", dsn, "--loop", args.loop,
        "--max-s", str(duration + 120),
        stdout=subprocess.PIPE,
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
    result: dict[str, Any] = {}
    try:
        t_spawn = now()
        await asyncio.wait_for(first_evt.wait(), 120)
        t0 = progress["first"]
        t_end = t0 + duration
        result["worker_startup_s"] = t0 - t_spawn

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
    finally:
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


# --------------------------------------------------------------------------- analysis

def window_rates(samples: list[dict[str, Any]]) -> list[dict[str, float]]:
    out = []
    for a, b in zip(samples, samples[1:]):
        ta, tb = a["started_t_s"] or a["t_s"], b["started_t_s"] or b["t_s"]
        out.append({"t_mid_s": (ta + tb) / 2, "t_end_s": b["t_s"],
                    "jobs": b["started"] - a["started"], "jobs_per_s": (b["started"] - a["started"]) / (tb - ta)})
    return out


def rate_between(samples: list[dict[str, Any]], i: int, j: int) -> float | None:
    if i < 0 or j >= len(samples) or i >= j:
        return None
    a, b = samples[i], samples[j]
    ta, tb = a["started_t_s"] or a["t_s"], b["started_t_s"] or b["t_s"]
    return (b["started"] - a["started"]) / (tb - ta)


def headline(res: dict[str, Any], sample_s: float) -> dict[str, Any]:
    s = res["samples"]
    per_min = max(1, int(round(60 / sample_s)))
    first = rate_between(s, 0, min(per_min, len(s) - 1))
    last = rate_between(s, max(0, len(s) - 1 - per_min), len(s) - 1)
    end = s[-1]
    jt = res.get("job_table")
    jt_end = end["tables"].get(jt, {}) if jt else {}
    return {
        "total_jobs": end["started"],
        "first_min_jobs_per_s": first,
        "last_min_jobs_per_s": last,
        "ratio_last_first": (last / first) if first and last else None,
        "end_total_mb": end["total_bytes"] / 2**20,
        "start_total_mb": s[0]["total_bytes"] / 2**20,
        "job_table": jt,
        "end_job_table_mb": jt_end.get("total_bytes", 0) / 2**20 if jt_end else None,
        "end_job_table_dead": jt_end.get("n_dead_tup"),
        "end_job_table_live": jt_end.get("n_live_tup"),
        "end_job_table_rows": jt_end.get("rows"),
        "end_job_table_autovacuums": jt_end.get("autovacuum_count"),
        "end_rows_all_tables": end["rows_all_tables"],
        "end_dead_all_tables": end["dead_all_tables"],
    }


# --------------------------------------------------------------------------- driver

def run_contestant(args, name: str) -> dict[str, Any]:
    from common import recreate_database  # noqa: E402  (same DB lifecycle as the peer benchmark)

    db = f"{args.db_prefix}{name}"
    dsn = db_dsn(args.dsn_base, db)
    scratch = os.path.join(HERE, "results", "scratch", str(os.getpid()))
    os.makedirs(scratch, exist_ok=True)
    out = os.path.join(scratch, f"soak_{name}.json")
    if os.path.exists(out):
        os.unlink(out)
    asyncio.run(recreate_database(args.dsn_base, db))
    cmd = [sys.executable, os.path.abspath(__file__), "--role", "run", "--contestant", name,
           "--dsn", dsn, "--minutes", str(args.minutes), "--backlog", str(args.backlog),
           "--bulk-size", str(args.bulk_size), "--sample-s", str(args.sample_s),
           "--loop", args.loop, "--out", out]
    timeout = args.timeout or int(args.minutes * 60 + 300)
    chaos_before = chaos_running()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def pump() -> None:  # live progress; ends at EOF (the child exited or was killed)
        for line in proc.stdout:
            lines.append(line)
            print(line, end="", flush=True)

    import threading

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group we started
        proc.wait()
        rc = "timeout"
    th.join(10)
    wall = time.monotonic() - t0
    try:
        asyncio.run(recreate_database(args.dsn_base, db, drop_only=True))
    except Exception as e:  # noqa: BLE001
        print(f"  warning: drop {db} failed: {e}", flush=True)
    res: dict[str, Any] = {"contestant": name, "rc": rc, "wall_s": wall,
                           "chaos_running_before": chaos_before, "chaos_running_after": chaos_running()}
    if rc == 0 and os.path.exists(out):
        with open(out) as f:
            res.update(json.load(f))
        os.unlink(out)
        res["ok"] = bool(res.get("samples"))
    else:
        res["ok"] = False
        res["error_tail"] = "".join(lines)[-3000:]
    return res


def fmt(x: float | None, nd: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def plot(doc: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"raw": "tab:green", "pgqueuer": "tab:blue", "procrastinate": "tab:orange", "pgqueue": "tab:red",
              "awa": "tab:purple"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for r in doc["runs"]:
        if not r.get("ok"):
            continue
        w = r["windows"]
        xs = [x["t_end_s"] / 60 for x in w]
        col = colors.get(r["contestant"])
        ax1.plot(xs, [x["jobs_per_s"] for x in w], marker="o", ms=3, label=r["contestant"], color=col)
        s = r["samples"]
        ax2.plot([x["t_s"] / 60 for x in s], [x["total_bytes"] / 2**20 for x in s], marker="o", ms=3,
                 label=r["contestant"], color=col)
    cfg = doc["config"]
    ax1.set_title(f"jobs/s per {cfg['sample_s']:g} s window (worker c32, backlog ~{cfg['backlog']})", fontsize=10)
    ax1.set_xlabel("minutes since first job")
    ax1.set_ylabel("jobs/s")
    ax1.set_ylim(bottom=0)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=9)
    ax2.set_title("library tables + indexes (pg_total_relation_size)", fontsize=10)
    ax2.set_xlabel("minutes since first job")
    ax2.set_ylabel("MB")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def headline_table(doc: dict[str, Any]) -> list[str]:
    L = ["| contestant | total jobs | first-min jobs/s | last-min jobs/s | last/first | "
         "tables+indexes MB at end | dead tuples at end (job table) | rows left in job table | "
         "rows in all tables | default cleanup of finished jobs |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        c = r["contestant"]
        if not r.get("ok"):
            L.append(f"| {c} | failed (rc={r.get('rc')}) | | | | | | | | |")
            continue
        h = r["headline"]
        L.append(f"| {c} | {fmt(h['total_jobs'])} | {fmt(h['first_min_jobs_per_s'])} | "
                 f"{fmt(h['last_min_jobs_per_s'])} | {fmt(h['ratio_last_first'], 2)} | "
                 f"{fmt(h['end_total_mb'], 1)} | {fmt(h['end_job_table_dead'])} | {fmt(h['end_job_table_rows'])} | "
                 f"{fmt(h['end_rows_all_tables'])} | {r['cleanup']} |")
    L.append("")
    return L


def end_state_table(doc: dict[str, Any]) -> list[str]:
    L = ["| contestant | table | MB (heap+idx+toast) | heap MB | index MB | rows | n_live_tup | n_dead_tup | "
         "inserts | updates (HOT) | deletes | autovacuums |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        if not r.get("ok"):
            continue
        tabs = r["samples"][-1]["tables"]
        for t, v in tabs.items():
            if v["total_bytes"] < 100 * 1024 and not v["rows"]:
                continue
            if v.get("parent") in tabs and tabs[v["parent"]].get("relkind") == "p":
                continue  # a partition: shown summed in its parent's row
            if v.get("relkind") == "p":
                t = f"{t} ({v.get('partitions')} partitions, summed)"
            L.append(f"| {r['contestant']} | {t} | {v['total_bytes'] / 2**20:.1f} | {v['heap_bytes'] / 2**20:.1f} | "
                     f"{v['index_bytes'] / 2**20:.1f} | {fmt(v['rows'])} | {fmt(v['n_live_tup'])} | "
                     f"{fmt(v['n_dead_tup'])} | {fmt(v['n_tup_ins'])} | {fmt(v['n_tup_upd'])} ({fmt(v['n_tup_hot_upd'])}) | "
                     f"{fmt(v['n_tup_del'])} | {v['autovacuum_count']} |")
    L.append("")
    return L


def write_markdown(doc: dict[str, Any], path: str, json_rel: str, png_rel: str | None,
                   also: list[tuple[dict[str, Any], str]] | None = None, notes: str | None = None) -> None:
    cfg, meta = doc["config"], doc["meta"]
    L: list[str] = []
    L.append("# Soak benchmark: sustained drain with a standing backlog\n")
    L.append(f"Run: {doc['started_at']} → {doc['finished_at']}. Raw data: `{json_rel}`"
             + (f", plot: `{png_rel}`" if png_rel else "") + ".\n")
    m = meta["machine"]
    L.append(f"- {m['nproc']} cores ({m['cpu_model']}), {m['platform']}, Python {m['python']}; "
             f"PostgreSQL {meta['postgres']['server_version']} "
             f"(settings untouched: {', '.join(f'{k}={v}' for k, v in meta['postgres']['settings'].items())})")
    av = meta["autovacuum"]
    L.append(f"- server: `{meta.get('dsn_base', '?')}`; autovacuum settings as found (not changed): "
             + ", ".join(f"{k}={v}" for k, v in av.items()))
    if av.get("autovacuum") == "off":
        L.append(f"- **autovacuum is OFF on this server** ({av.get('autovacuum_source', 'server config')}), and "
                 "the harness runs no VACUUM: dead tuples are only reclaimed by what the library itself "
                 "does plus PostgreSQL's on-access page pruning, so table growth below is the no-vacuum worst case.")
    for c in cfg["contestants"]:
        L.append(f"- {c}: " + ", ".join(f"{k} {v}" for k, v in meta["contestants"][c]["versions"].items())
                 + f"; worker = `{WORKER_VARIANT}` drain variant {json.dumps(meta['contestants'][c]['worker_variant'])}")
    L.append(f"- {cfg['minutes']:g} min per contestant (one after another), backlog ~{cfg['backlog']} "
             f"(topped up in bulk batches of {cfg['bulk_size']}), sample every {cfg['sample_s']:g} s, "
             f"no-op async handler, event loop {cfg['loop']}")
    chaos = [r["contestant"] for r in doc["runs"] if r.get("chaos_running_before") or r.get("chaos_running_after")]
    L.append(f"- other load: " + (f"chaos harness was running during {', '.join(chaos)} (contention)" if chaos
                                   else "chaos harness not running at the start or end of any run (pgrep; per-sample load averages are in the JSON)") + "\n")
    L.append("## Headline\n")
    L += headline_table(doc)
    if notes:
        L.append(notes.strip() + "\n")
    L.append("Default cleanup of finished jobs (read from the installed sources):\n")
    for r in doc["runs"]:
        L.append(f"- **{r['contestant']}**: {r.get('cleanup_detail', r.get('cleanup'))}")
    L.append("")
    L.append("Job table: " + "; ".join(f"{r['contestant']} = `{r.get('job_table')}`"
                                       + ("" if r.get("job_table_how") == "declared" else f" ({r.get('job_table_how')})")
                                       for r in doc["runs"] if r.get("ok")) + ".\n")
    L.append("## End state per table\n")
    L += end_state_table(doc)
    L.append("## jobs/s per window\n")
    runs_ok = [r for r in doc["runs"] if r.get("ok")]
    if runs_ok:
        n = max(len(r["windows"]) for r in runs_ok)
        L.append("| window end (s) | " + " | ".join(r["contestant"] for r in runs_ok) + " |")
        L.append("|" + "---|" * (len(runs_ok) + 1))
        for i in range(n):
            t = next((r["windows"][i]["t_end_s"] for r in runs_ok if i < len(r["windows"])), 0)
            cells = [fmt(r["windows"][i]["jobs_per_s"]) if i < len(r["windows"]) else "" for r in runs_ok]
            L.append(f"| {t:.0f} | " + " | ".join(cells) + " |")
        L.append("")
    if png_rel:
        L.append(f"![jobs/s and table size over time]({png_rel})\n")
    for extra, rel in (also or []):
        av = extra["meta"]["autovacuum"]
        # optional keys of a supplementary JSON: "title" (heading), "label" (text under it),
        # "show_tables" (also list its end state per table), "notes" (text after its table)
        L.append("## " + (extra.get("title") or
                          f"Supplementary run: `{extra['meta'].get('dsn_base')}`, autovacuum={av.get('autovacuum')}")
                 + "\n")
        if extra.get("label"):
            L.append(extra["label"] + "\n")
        L.append(f"Run {extra['started_at']} → {extra['finished_at']}, same settings otherwise; raw data `{rel}`"
                 + (f", plot `{rel[:-5]}.png`" if rel.endswith(".json") else "") + ". Autovacuum settings: "
                 + ", ".join(f"{k}={v}" for k, v in av.items()) + ".\n")
        L += headline_table(extra)
        if extra.get("notes"):
            L.append(extra["notes"].strip() + "\n")
        if extra.get("show_tables"):
            L.append("Default cleanup of finished jobs (read from the installed sources):\n")
            L += [f"- **{r['contestant']}**: {r.get('cleanup_detail', r.get('cleanup'))}" for r in extra["runs"]]
            L.append("")
            L.append("Job table: " + "; ".join(f"{r['contestant']} = `{r.get('job_table')}`" for r in extra["runs"]
                                               if r.get("ok")) + ". End state per table (partitions summed):\n")
            L += end_state_table(extra)
        L.append("```sh\n" + extra["reproduce"] + "\n```\n")
        L.append("Autovacuum runs on the job table during the run: " + "; ".join(
            f"{r['contestant']} {r['headline']['end_job_table_autovacuums']}" for r in extra["runs"] if r.get("ok")) + ".\n")
    if doc.get("merged_from"):
        L.append("Merged from: " + "; ".join(f"`{k}` ({v})" for k, v in doc["merged_from"].items()) + ".\n")
    L.append("## Method\n")
    L.append(__doc__.split("\n\n", 2)[2].strip() + "\n")
    L.append("jobs/s = handler starts (the no-op handler returns at once) per window, timed by the worker's own "
             "CLOCK_MONOTONIC reports; first minute = t0 → t0+60 s, last minute = the last 60 s. "
             "Table sizes/tuple counts are the whole database's user tables, i.e. the library's tables "
             "(statistics lag up to ~1 s behind the backends). Only one repetition per contestant: "
             "compare shapes (drift, growth) rather than small throughput differences.\n")
    L.append("## Reproduce\n")
    L.append("```sh")
    L.append(doc["reproduce"])
    L.append("```\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


def driver(args) -> None:
    from run import machine_info, server_info  # noqa: E402

    contestants = [c.strip() for c in args.contestants.split(",") if c.strip()]
    objs = {c: load(c) for c in contestants}
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y-%m-%d")
    out = args.out or os.path.join(HERE, "results", f"soak-{stamp}.json")
    png = args.png or os.path.join(HERE, "results", f"soak-{stamp}.png")
    os.makedirs(os.path.dirname(out), exist_ok=True)

    async def autovac() -> dict[str, str]:
        conn = await asyncpg.connect(admin_dsn(args.dsn_base))
        try:
            return {r["name"]: r["setting"] for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', 'autovacuum_naptime', "
                "'autovacuum_vacuum_scale_factor', 'autovacuum_vacuum_threshold', "
                "'autovacuum_vacuum_insert_scale_factor', 'autovacuum_vacuum_cost_limit', "
                "'autovacuum_vacuum_cost_delay') ORDER BY name")} | {
                "autovacuum_source": await conn.fetchval(
                    "SELECT coalesce(regexp_replace(sourcefile, '^.*/', 'server conf.d/'), source) FROM pg_settings WHERE name = 'autovacuum'")}
        finally:
            await conn.close()

    meta = {
        "machine": machine_info(),
        "postgres": asyncio.run(server_info(args.dsn_base)),
        "autovacuum": asyncio.run(autovac()),
        "dsn_base": args.dsn_base,
        "contestants": {c: {"versions": o.versions(), "describe": o.describe(),
                            "worker_variant": o.drain_variants[WORKER_VARIANT]} for c, o in objs.items()},
    }
    extra_pkgs = "".join(f" '{pkg}=={ver}'" for c in contestants if c == "awa"  # not in the base list
                         for pkg, ver in meta["contestants"][c]["versions"].items())
    reproduce = ("# from the repository root\n"
                 "python -m venv benchmarks/.venv && benchmarks/.venv/bin/pip install -e . "
                 f"-r benchmarks/requirements.txt matplotlib{extra_pkgs}\n"
                 f"benchmarks/.venv/bin/python benchmarks/soak.py --contestants {','.join(contestants)} --minutes {args.minutes:g} "
                 f"--backlog {args.backlog} --bulk-size {args.bulk_size} --sample-s {args.sample_s:g} --loop {args.loop}"
                 + ("" if args.dsn_base == DEFAULT_DSN_BASE else f" --dsn-base {args.dsn_base}"))
    print(json.dumps(meta["machine"]), flush=True)
    runs = []
    for c in contestants:
        print(f"== soak {c}: {args.minutes:g} min", flush=True)
        r = run_contestant(args, c)
        note = getattr(objs[c], "cleanup_note", None)  # fallback for contestants not in CLEANUP
        r["cleanup"], r["cleanup_detail"] = (CLEANUP.get(c) or ((note, note) if note else
                                             ("unknown", "not documented yet (set cleanup_note)")))
        if r.get("ok"):
            r["windows"] = window_rates(r["samples"])
            r["headline"] = headline(r, args.sample_s)
            h = r["headline"]
            print(f"== {c}: total {h['total_jobs']} jobs, first-min {fmt(h['first_min_jobs_per_s'])}/s, "
                  f"last-min {fmt(h['last_min_jobs_per_s'])}/s, end {h['end_total_mb']:.1f} MB, "
                  f"job-table dead {h['end_job_table_dead']}", flush=True)
        else:
            print(f"== {c}: FAILED rc={r.get('rc')}\n{r.get('error_tail', '')[-1500:]}", flush=True)
        runs.append(r)
    finished = dt.datetime.now(dt.timezone.utc)
    doc = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "config": {"contestants": contestants, "minutes": args.minutes, "backlog": args.backlog,
                   "bulk_size": args.bulk_size, "sample_s": args.sample_s, "loop": args.loop,
                   "worker_variant": WORKER_VARIANT},
        "meta": meta,
        "runs": runs,
        "reproduce": reproduce,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    png_rel = None
    try:
        plot(doc, png)
        png_rel = os.path.relpath(png, os.path.dirname(os.path.abspath(args.md)))
    except Exception as e:  # noqa: BLE001
        print(f"plot failed: {e}", flush=True)
    write_markdown(doc, args.md, os.path.relpath(out, os.path.dirname(os.path.abspath(args.md))), png_rel)
    print(f"wrote {out}, {args.md}" + (f", {png}" if png_rel else ""), flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", default="driver", choices=["driver", "run", "worker"])
    p.add_argument("--contestants", default="pgqueue,raw,pgqueuer,procrastinate")
    p.add_argument("--contestant")
    p.add_argument("--dsn")
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--backlog", type=int, default=5000)
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--sample-s", type=float, default=30.0)
    p.add_argument("--timeout", type=int, default=0, help="seconds per contestant (default minutes*60+300)")
    p.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    p.add_argument("--dsn-base", default=DEFAULT_DSN_BASE)
    p.add_argument("--db-prefix", default="bench_")
    p.add_argument("--max-s", type=float, default=3600.0, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="results JSON (default results/soak-<date>.json)")
    p.add_argument("--png", default=None, help="plot (default results/soak-<date>.png)")
    p.add_argument("--md", default=os.path.join(HERE, "results", "SOAK.md"))
    p.add_argument("--report", default=None, help="only regenerate --md from this results JSON")
    p.add_argument("--also", action="append", help="with --report: add a supplementary run's JSON")
    p.add_argument("--replot", action="store_true", help="with --report: redraw the PNG too")
    p.add_argument("--notes", default=None, help="with --report: markdown inserted after the headline table")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    if a.report:  # regenerate SOAK.md (+ plot) from JSON: --report main.json [--also other.json ...]
        with open(a.report) as f:
            doc = json.load(f)

        def fill(d: dict[str, Any]) -> dict[str, Any]:  # results written before notes had 2 parts
            for r in d["runs"]:
                if "cleanup_detail" not in r and r["contestant"] in CLEANUP:
                    r["cleanup"], r["cleanup_detail"] = CLEANUP[r["contestant"]]
            return d

        fill(doc)
        md_dir = os.path.dirname(os.path.abspath(a.md))
        png = a.png or a.report[:-5] + ".png"
        if a.replot:
            plot(doc, png)
        also = []
        for p in a.also or []:
            with open(p) as f:
                also.append((fill(json.load(f)), os.path.relpath(os.path.abspath(p), md_dir)))
        write_markdown(doc, a.md, os.path.relpath(os.path.abspath(a.report), md_dir),
                       os.path.relpath(os.path.abspath(png), md_dir) if os.path.exists(png) else None, also,
                       open(a.notes).read() if a.notes else None)
        print(f"wrote {a.md}")
        return
    if a.role == "driver":
        driver(a)
        return

    async def go() -> None:
        if a.role == "worker":
            await role_worker(a)
        else:
            res = await role_run(a)
            res.update(contestant=a.contestant, scenario="soak")
            with open(a.out, "w") as f:
                json.dump(res, f, default=str)

    if a.loop == "uvloop":
        import uvloop

        uvloop.run(go())
    else:
        asyncio.run(go())


if __name__ == "__main__":
    main()
