"""Pruning at volume: how fast the worker's pruner deletes expired jobs, and what it costs a drain.

    python -m benchmarks.prune                                   # --finished 1000000 --n 100000
    python -m benchmarks.prune --finished 200000 --n 20000       # quick

With the default retention a busy queue has millions of expired finished jobs to delete every
day; the pruner must keep up, in batches that each commit (no long transaction that holds back
vacuum, no lock held for minutes), without slowing the workers that share the database. So the
same c32 drain of --n no-op jobs runs twice, each time in a fresh database holding --finished
succeeded jobs in queue ``old`` that finished --age-s ago (written by one SQL statement through
``pgqueue_internals.fill_finished``), then settled by VACUUM ANALYZE + CHECKPOINT:

* **off**: the worker keeps pgqueue's default retention (7 days), so it prunes nothing;
* **on**: the worker runs with ``PgQueue(retention=--retention, prune_interval=--prune-interval)``,
  so from its start its pruner deletes every one of the old jobs while it drains.

The worker is a child process (the pgqueue adapter's ``run_worker``, public API only) reporting
its started-job count. Before it starts, this process notes every k-th id of the old jobs
(``list_jobs``, --probes of them); during the run it asks ``get_jobs(those ids)`` every
--sample-s seconds from its own connection (cheap, unlike a count over the table) and estimates
how many old jobs are left (exact counts by ``pgq.stats()`` before and after). Counts between
"all" and "none" seen from another connection mean the batches committed one by one; a single
transaction would show all or nothing. The pruner's batch size comes from
``pgqueue_internals.prune_batch_size``. Reported: rows pruned per hour (pruned / time from the
worker's start to the last change seen, coarse by one sample), the batch size, the intermediate
counts seen, and the drain's jobs/s on / off (target >= 0.9). Writes results/prune-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
from typing import Any

import asyncpg
from pgqueue import PgQueue

from .contestants import load
from .harness import (
    REPO_ROOT,
    add_server_options,
    db_dsn,
    fmt,
    machine_info,
    module_command,
    now,
    prefill,
    recreate_database,
    results_path,
    run_async,
    schema_bytes,
    server_info,
    settle,
    utc_now,
    write_json,
)
from .pgqueue_internals import SCHEMA, fill_finished, prune_batch_size

logging.getLogger("pgqueue").setLevel(logging.WARNING)

OLD_QUEUE = "old"
TARGET = 0.9


# --------------------------------------------------------------------------- worker role

async def role_worker(args: argparse.Namespace) -> None:
    """Drain --n jobs with pgqueue's c32 worker; prints FIRST, P <count> <t> and DONE <t>."""
    c = load("pgqueue")
    concurrency, _opts = c.variant("c32")
    settings = json.loads(args.settings)
    count = 0

    def on_job(i: int) -> None:
        nonlocal count
        count += 1
        if count == 1:
            print(f"FIRST {now():.6f}", flush=True)
        if count == args.n:
            print(f"DONE {now():.6f}", flush=True)

    async def report() -> None:
        while True:
            print(f"P {count} {now():.6f}", flush=True)
            await asyncio.sleep(0.2)

    rep = asyncio.ensure_future(report())
    try:
        await c.run_worker(args.dsn, concurrency, args.n, on_job, settings=settings)
    finally:
        rep.cancel()
    print(f"EXIT {now():.6f}", flush=True)


# --------------------------------------------------------------------------- one condition

async def old_count(pgq: PgQueue) -> int:
    """Exact, but a count over the whole table: only before and after the drain."""
    return (await pgq.stats()).get(OLD_QUEUE, {}).get("succeeded", 0)


async def probe_ids(pgq: PgQueue, probes: int) -> list[int]:
    """Every k-th id of the old jobs (read page by page, newest first, before the drain), so that
    ``get_jobs(probes)`` tells cheaply, from another connection, what share of them is gone."""
    ids: list[int] = []
    before = None
    while page := await pgq.list_jobs(queue=OLD_QUEUE, status="succeeded", before_id=before,
                                      limit=10_000):
        ids.extend(job.id for job in page)
        before = page[-1].id
    return ids[::max(1, len(ids) // probes)]


async def left_estimate(pgq: PgQueue, probes: list[int], filled: int) -> int:
    gone = sum(job is None for job in await pgq.get_jobs(probes))
    return round(filled * (len(probes) - gone) / len(probes))


async def run_condition(args: argparse.Namespace, label: str, settings: dict[str, Any]) -> dict[str, Any]:
    db = f"{args.db_prefix}prune"
    dsn = db_dsn(args.dsn_base, db)
    c = load("pgqueue")
    await recreate_database(args.dsn_base, db)
    await c.install(dsn, "prune")
    conn = await asyncpg.connect(dsn)
    t = now()
    filled = await fill_finished(conn, SCHEMA, args.finished, OLD_QUEUE, "succeeded",
                                 finished_at_age_s=args.age_s)
    res: dict[str, Any] = {"label": label, "settings": settings, "filled": filled,
                           "fill_s": now() - t}
    await prefill(c, dsn, args.n, args.bulk_size)
    await settle(dsn)
    res["schema_bytes_start"] = await schema_bytes(conn, SCHEMA)
    print(f"== {label}: {filled:,} old jobs filled in {res['fill_s']:.1f} s, {args.n:,} queued, "
          f"worker settings {settings or 'defaults'}", flush=True)

    pgq = PgQueue(dsn=dsn, schema=SCHEMA, pool_max_size=2)
    await pgq.open()
    probes = await probe_ids(pgq, args.probes)
    res["probes"] = len(probes)
    res["old_exact_start"] = await old_count(pgq)
    t_spawn = now()
    proc = await asyncio.create_subprocess_exec(
        *module_command("prune", "--role", "worker", "--dsn", dsn, "--n", str(args.n),
                        "--settings", json.dumps(settings), "--loop", args.loop),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE)
    marks: dict[str, float] = {}
    progress = {"count": 0}

    async def read() -> None:
        while line := await proc.stdout.readline():
            parts = line.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] == "P":
                progress["count"] = int(parts[1])
            elif len(parts) == 2:
                marks[parts[0]] = float(parts[1])

    reader = asyncio.create_task(read())
    samples: list[dict[str, Any]] = []
    try:
        deadline = t_spawn + args.timeout
        while proc.returncode is None and now() < deadline:
            t = now()
            left = await left_estimate(pgq, probes, filled)
            samples.append({"t_s": t - t_spawn, "old_left": left, "started": progress["count"],
                            "probe_ms": (now() - t) * 1000})
            await asyncio.sleep(max(0.0, args.sample_s - (now() - t)))
        if proc.returncode is None:
            proc.kill()  # our own child, by pid
            raise RuntimeError(f"{label}: the drain did not end within {args.timeout} s")
    finally:
        await proc.wait()
        await reader
    res["old_exact_end"] = await old_count(pgq)
    samples.append({"t_s": now() - t_spawn, "old_left": res["old_exact_end"],
                    "started": progress["count"], "probe_ms": None})
    await pgq.close()
    res["schema_bytes_end"] = await schema_bytes(conn, SCHEMA)
    await conn.close()
    if "DONE" not in marks or "FIRST" not in marks:
        raise RuntimeError(f"{label}: the worker did not drain {args.n} jobs (rc={proc.returncode})")
    res.update(samples=samples, worker_rc=proc.returncode,
               drain_s=marks["DONE"] - marks["FIRST"], wall_s=marks.get("EXIT", now()) - t_spawn,
               startup_s=marks["FIRST"] - t_spawn)
    res["jobs_per_s"] = args.n / res["drain_s"]
    res["prune"] = prune_summary(samples, filled, marks["DONE"] - t_spawn)
    if not args.keep:
        await recreate_database(args.dsn_base, db, drop_only=True)
    return res


def prune_summary(samples: list[dict[str, Any]], filled: int, drain_end_s: float) -> dict[str, Any]:
    """What another connection saw of the pruning: how many went, how fast, in how many steps."""
    lefts = [s["old_left"] for s in samples]
    start, end = lefts[0], lefts[-1]
    changes = [s for a, s in zip(samples, samples[1:]) if s["old_left"] != a["old_left"]]
    last_change_s = changes[-1]["t_s"] if changes else None
    pruned = filled - end
    return {
        "batch": prune_batch_size(),
        "pruned": pruned,
        "left_at_end": end,
        "first_seen": start,
        "last_change_s": last_change_s,
        "rows_per_hour": pruned / last_change_s * 3600 if pruned and last_change_s else 0.0,
        "intermediate_counts_seen": sum(1 for x in lefts if end < x < filled),
        "finished_before_drain_end": bool(changes) and end == 0 and last_change_s <= drain_end_s,
        "drain_jobs_per_s_while_pruning": drain_rate_until(samples, last_change_s),
        "median_probe_ms": statistics.median(x["probe_ms"] for x in samples if x["probe_ms"] is not None),
    }


def drain_rate_until(samples: list[dict[str, Any]], until_s: float | None) -> float | None:
    """The drain's jobs/s from its first job to ``until_s`` (when the pruning was last seen at work)."""
    seen = [s for s in samples if s["started"] > 0 and until_s is not None and s["t_s"] <= until_s]
    if len(seen) < 2 or seen[-1]["t_s"] <= seen[0]["t_s"]:
        return None
    return (seen[-1]["started"] - seen[0]["started"]) / (seen[-1]["t_s"] - seen[0]["t_s"])


# --------------------------------------------------------------------------- driver

async def driver(args: argparse.Namespace) -> None:
    started = utc_now()
    on_settings = {"retention": args.retention, "prune_interval": args.prune_interval}
    doc: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "config": {k: getattr(args, k) for k in ("finished", "n", "age_s", "retention",
                                                 "prune_interval", "sample_s", "probes", "bulk_size", "loop")}
                  | {"worker": "pgqueue c32", "prune_batch": prune_batch_size()},
        "machine": machine_info(),
        "postgres": await server_info(args.dsn_base),
        "runs": {},
    }
    out = results_path(args.out, "prune", started)
    for label, settings in (("off", {}), ("on", on_settings)):
        r = await run_condition(args, label, settings)
        p = r["prune"]
        print(f"  drain {args.n:,} jobs: {r['jobs_per_s']:,.0f} jobs/s ({r['drain_s']:.1f} s); old jobs "
              f"left {p['left_at_end']:,} of {r['filled']:,}, pruned {p['pruned']:,}"
              + (f" at {p['rows_per_hour']:,.0f} rows/h, {p['intermediate_counts_seen']} intermediate "
                 f"counts seen" if p["pruned"] else ""), flush=True)
        doc["runs"][label] = r
        write_json(out, doc)
    off, on = doc["runs"]["off"], doc["runs"]["on"]
    ratio = on["jobs_per_s"] / off["jobs_per_s"]
    p = on["prune"]
    doc["summary"] = {
        "drain_jobs_per_s_off": off["jobs_per_s"], "drain_jobs_per_s_on": on["jobs_per_s"],
        "ratio_on_off": ratio, "target": TARGET, "met": ratio >= TARGET,
        "rows_pruned": p["pruned"], "rows_per_hour": p["rows_per_hour"], "batch": p["batch"],
        "batches_committed_one_by_one": p["intermediate_counts_seen"] > 0,
        "pruning_outlasted_drain": not p["finished_before_drain_end"],
        "ratio_while_pruning": (p["drain_jobs_per_s_while_pruning"] / off["jobs_per_s"]
                                if p["drain_jobs_per_s_while_pruning"] else None),
    }
    doc["finished_at"] = utc_now().isoformat(timespec="seconds")
    write_json(out, doc)
    s = doc["summary"]
    print(f"\n| condition | drain jobs/s | rows pruned | rows/hour | batch | counts seen between "
          f"(committed batches) | schema MB start → end |\n|---|---|---|---|---|---|---|")
    for r in (off, on):
        q = r["prune"]
        print(f"| {r['label']} | {fmt(r['jobs_per_s'])} | {fmt(q['pruned'])} | {fmt(q['rows_per_hour'])} "
              f"| {q['batch']} | {q['intermediate_counts_seen']} | {r['schema_bytes_start'] / 2**20:,.1f} → "
              f"{r['schema_bytes_end'] / 2**20:,.1f} |")
    print(f"\ndrain with pruning / without: {ratio:.2f} (target >= {TARGET}: "
          f"{'met' if s['met'] else 'MISSED'}); each batch committed on its own: "
          f"{'yes' if s['batches_committed_one_by_one'] else 'not seen'}"
          + ("; the pruning was still going when the drain ended, so it ran alongside all of it"
             if s["pruning_outlasted_drain"] else
             f"; the pruning ended {p['last_change_s']:.1f} s after the worker started, before the drain "
             f"did: the drain ran at {fmt(p['drain_jobs_per_s_while_pruning'])} jobs/s until then "
             f"(x{fmt(s['ratio_while_pruning'], 2)} the drain without)")
          + f"\nwrote {out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", default="driver", choices=["driver", "worker"])
    p.add_argument("--finished", type=int, default=1_000_000, help="expired finished jobs to prune")
    p.add_argument("--n", type=int, default=100_000, help="jobs drained by the c32 worker")
    p.add_argument("--age-s", type=float, default=86400.0,
                   help="the old jobs finished this long ago: past --retention, within the default")
    p.add_argument("--retention", type=float, default=60.0, help="the worker's retention when on")
    p.add_argument("--prune-interval", type=float, default=1.0)
    p.add_argument("--sample-s", type=float, default=0.25, help="how often the old jobs are probed")
    p.add_argument("--probes", type=int, default=1000, help="old job ids probed with get_jobs")
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per drain")
    p.add_argument("--keep", action="store_true", help="keep the database of the last condition")
    p.add_argument("--out", default=None, help="results JSON (default results/prune-<time>.json)")
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    p.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    add_server_options(p)
    args = p.parse_args(argv)
    run_async(role_worker(args) if args.role == "worker" else driver(args), args.loop)


if __name__ == "__main__":
    main()
