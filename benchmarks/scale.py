"""pgqueue on a large jobs table: drain throughput next to an empty table, and the claim's plan.

    python -m benchmarks.scale                                   # 1,000,000 finished + 100,000 queued
    python -m benchmarks.scale --finished 200000 --queued 20000 --n 10000 --variants c32,c100

For each repetition, each drain variant (the pgqueue contestant's, e.g. c32 / c100) and each of
two conditions, in a fresh database ``<prefix>scale`` with pgqueue's schema:

* ``empty``: the jobs table holds only the N queued jobs to drain;
* ``large``: it holds ``--finished`` succeeded jobs (older, lower ids) and ``--queued`` queued
  jobs (N of which are drained; the rest stay queued behind them).

Rows are written by SQL (``INSERT ... SELECT generate_series``, see pgqueue_internals), shaped
like pgqueue's own rows for the benchmark's no-op task. Then ``--settle`` (default: VACUUM ANALYZE + CHECKPOINT, as
the peer harness does before every timed phase), then ONE worker process drains N jobs through
the public API (contestants/pgqueue.py). Time = worker start to worker fully stopped.
Before the first drain of each condition the plans of the statements the claim function runs are
printed with EXPLAIN (ANALYZE, BUFFERS) by auto_explain, inside a transaction that is rolled back
(the function keeps generic plans, as a worker's session does).

The target from the performance issue: large-table drain within 10% of the empty table.
Results: results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from typing import Any

import asyncpg

from pgqueue import PgQueue

from . import pgqueue_internals as internals
from .contestants import load
from .contestants.base import JOB_NAME, QUEUE
from .harness import (
    REPO_ROOT,
    add_server_options,
    db_dsn,
    fetch_scalar,
    module_command,
    recreate_database,
    results_path,
    run_async,
    utc_now,
    write_json,
)


async def fill(dsn: str, finished: int, queued: int, settle: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.monotonic()
        if finished:
            await conn.execute(internals.FILL_FINISHED, JOB_NAME, QUEUE, finished)
            await conn.execute(internals.COUNT_FILLED, QUEUE, finished)
        await conn.execute(internals.FILL_QUEUED, JOB_NAME, QUEUE, queued)
        t_fill = time.monotonic() - t0
        t0 = time.monotonic()
        if settle == "vacuum":
            await conn.execute("VACUUM ANALYZE")
        elif settle == "analyze":
            await conn.execute("ANALYZE")
        await conn.execute("CHECKPOINT")
        t_settle = time.monotonic() - t0
        sizes = await conn.fetchrow(internals.TABLE_SIZES)
        return {"fill_s": t_fill, "settle_s": t_settle, "table_mb": sizes["table_bytes"] / 2**20,
                "ready_mb": sizes["ready_bytes"] / 2**20}
    finally:
        await conn.close()


CLAIMS = {
    "claim of every queue (worker without --queue), LIMIT 100": None,
    "claim of ['default'], LIMIT 100": [QUEUE],
}


async def explain(dsn: str, which: list[str] | None = None) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements the claim function runs, rolled back."""
    out: list[str] = []
    pgq = PgQueue(dsn="postgresql://unused/x", schema=internals.SCHEMA)
    conn = await asyncpg.connect(dsn)
    try:
        for name, queues in CLAIMS.items():
            if which and not any(w in name for w in which):
                continue
            out.append(f"--- {name} ---")
            out.extend(await internals.explain_claim(conn, pgq, queues, 100))
            out.append("")
    finally:
        await conn.close()
    return "\n".join(out)


def drain_in_subprocess(dsn: str, variant: str, n: int, timeout: float, loop: str) -> dict[str, Any]:
    cmd = module_command("scale", "--role", "drain", "--dsn", dsn, "--variant", variant,
                         "--n", str(n), "--loop", loop)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        return {"ok": False, "error_tail": (proc.stdout + proc.stderr)[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def role_drain(dsn: str, variant: str, n: int) -> None:
    c = load("pgqueue")
    concurrency, opts = c.variant(variant)
    calls = 0

    def on_job(_i: int) -> None:
        nonlocal calls
        calls += 1

    t0 = time.monotonic()
    await c.run_worker(dsn, concurrency, n, on_job, **opts)
    elapsed = time.monotonic() - t0
    # With a backlog behind the N jobs, the jobs already claimed when stop() is called (at most
    # the concurrency) are finished too: >= N handler calls.
    print(json.dumps({"ok": calls >= n, "elapsed_s": elapsed, "jobs_per_s": n / elapsed,
                      "handler_calls": calls}))


async def one(args, variant: str, condition: str, show_plan: bool) -> dict[str, Any]:
    db = f"{args.db_prefix}scale"
    dsn = db_dsn(args.dsn_base, db)
    await recreate_database(args.dsn_base, db)
    try:
        await load("pgqueue").install(dsn, "drain")
        finished, queued = (args.finished, args.queued) if condition == "large" else (0, args.n)
        info = await fill(dsn, finished, queued, args.settle)
        if show_plan:
            plan = await explain(dsn)
            print(f"\n===== claim plans, {condition} table ({finished:,} succeeded + {queued:,} queued, "
                  f"settle={args.settle}) =====\n{plan}", flush=True)
            info["plan"] = plan
        res = await asyncio.to_thread(drain_in_subprocess, dsn, variant, args.n, args.timeout,
                                      args.loop)
        done = await fetch_scalar(dsn, internals.COUNT_SUCCEEDED)
        res["verified"] = done == finished + res.get("handler_calls", -1) and not (
            condition == "empty" and done != args.n)
        res["ok"] = bool(res.get("ok")) and res["verified"]
        res.update(info, variant=variant, condition=condition, finished=finished, queued=queued)
        return res
    finally:
        await recreate_database(args.dsn_base, db, drop_only=True)


async def main(args) -> None:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    runs: list[dict[str, Any]] = []
    started = utc_now()
    shown: set[str] = set()
    for rep in range(args.reps):
        for variant in variants:
            for condition in ("empty", "large") if rep % 2 == 0 else ("large", "empty"):
                show = args.explain and condition not in shown
                shown.add(condition)
                r = await one(args, variant, condition, show)
                r["rep"] = rep
                runs.append(r)
                extra = (f" (fill {r['fill_s']:.1f} s, settle {r['settle_s']:.1f} s, table "
                         f"{r['table_mb']:.0f} MB, ready ring {r['ready_mb']:.1f} MB)")
                print(f"rep {rep} {variant:6s} {condition:6s} "
                      f"{r.get('jobs_per_s', 0):8,.0f} jobs/s ok={r['ok']}{extra}", flush=True)
                if not r["ok"]:
                    print("   " + str(r.get("error_tail", ""))[-800:], flush=True)
    print(f"\nDrain of N={args.n:,} jobs: empty table vs {args.finished:,} succeeded + "
          f"{args.queued:,} queued rows (median over {args.reps} rep(s))")
    print(f"{'variant':8s}{'empty':>12s}{'large':>12s}{'large/empty':>13s}  target >= 0.90")
    summary = {}
    for variant in variants:
        med = {}
        for condition in ("empty", "large"):
            vals = [r["jobs_per_s"] for r in runs
                    if r["variant"] == variant and r["condition"] == condition and r.get("ok")]
            med[condition] = statistics.median(vals) if vals else None
        ratio = med["large"] / med["empty"] if med["large"] and med["empty"] else None
        summary[variant] = {**med, "ratio": ratio}
        print(f"{variant:8s}{med['empty'] or 0:12,.0f}{med['large'] or 0:12,.0f}"
              f"{ratio or float('nan'):13.2f}  {'met' if ratio and ratio >= 0.9 else 'MISSED'}")
    out = results_path(args.out, "scale", started)
    write_json(out, {"started_at": started.isoformat(timespec="seconds"), "config": vars(args),
                     "runs": runs, "summary": summary})
    print(f"wrote {out}")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", default="driver", choices=["driver", "drain"], help=argparse.SUPPRESS)
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--finished", type=int, default=1_000_000, help="succeeded rows in the large table")
    p.add_argument("--queued", type=int, default=100_000, help="queued rows in the large table (>= n)")
    p.add_argument("--n", type=int, default=20_000, help="jobs drained per measurement")
    p.add_argument("--variants", default="c32,c100", help="pgqueue drain variants")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--settle", default="vacuum", choices=["vacuum", "analyze", "none"],
                   help="after the fill: VACUUM ANALYZE (default), ANALYZE only, or nothing")
    p.add_argument("--no-explain", dest="explain", action="store_false")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per drain")
    add_server_options(p)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.role == "driver" and a.queued < a.n:
        p.error("--queued must be at least --n")
    return a


if __name__ == "__main__":
    a = parse()
    run_async(role_drain(a.dsn, a.variant, a.n) if a.role == "drain" else main(a), a.loop)
