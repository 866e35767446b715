"""Fault run for ``ctx.complete_in``: do the tasks' own database writes happen exactly once?

    python -m benchmarks.exactly_once [--jobs 200 --workers 3 --mode both]

Enqueues ``--jobs`` jobs whose task writes a row of its own into ``effects``, runs them on
``--workers`` worker processes (``benchmarks.exactly_once_tasks``, rescue window 3 s) and SIGKILLs a
random worker every 0.5-2 s (starting a new one) until every job has finished; the survivors then
rescue and finish the rest. Run in two modes, each on a fresh database:

* ``complete_in``: the task completes its job in the transaction that writes its row. Must end
  with every job succeeded and exactly one row per job (exit status 1 otherwise).
* ``plain``: the task commits its row, then returns (at-least-once delivery): the duplicates that
  ``complete_in`` prevents (rows of runs whose worker was killed after the row committed).

It checks correctness, not speed; the report (JSON, also written to ``benchmarks/results/``) gives
per mode the kills, job statuses, rows, jobs with no row and jobs with more than one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import asyncpg

from . import exactly_once_tasks as tasks
from . import pgqueue_internals as internals
from .harness import DEFAULT_DSN_BASE, REPO_ROOT, RESULTS_DIR, db_dsn, recreate_database

APP = f"{tasks.__name__}:pgq"


def start_worker(dsn: str, concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pgqueue.worker", APP, "--concurrency", str(concurrency),
         "--log-level", "WARNING"],
        cwd=REPO_ROOT, env={**os.environ, "PGQUEUE_DSN": dsn},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def run_mode(args: argparse.Namespace, mode: str) -> dict[str, object]:
    rng = random.Random(args.seed)
    database = f"{args.db_prefix}exactly_once"
    dsn = db_dsn(args.dsn_base, database)
    await recreate_database(args.dsn_base, database)
    await asyncio.to_thread(internals.install_schema, dsn)
    db = await asyncpg.connect(dsn)
    await db.execute(tasks.CREATE_EFFECTS)
    tasks.pgq.settings.dsn = dsn
    async with tasks.pgq:
        await tasks.effect.enqueue_many([(i, mode) for i in range(args.jobs)])

    async def unfinished() -> int:
        return await db.fetchval("SELECT count(*) FROM pgqueue.jobs "
                                 "WHERE status NOT IN ('succeeded', 'failed', 'cancelled')")

    workers = [start_worker(dsn, args.concurrency) for _ in range(args.workers)]
    kills, started = 0, time.monotonic()
    try:
        while await unfinished() > 0 and time.monotonic() < started + args.max_seconds:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            if await unfinished() == 0:
                break
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            await asyncio.to_thread(victim.wait, 60)
            kills += 1
            workers.append(start_worker(dsn, args.concurrency))
        fault_seconds = time.monotonic() - started
        while await unfinished() > 0 and time.monotonic() < started + 2 * args.max_seconds:
            await asyncio.sleep(0.5)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            await asyncio.to_thread(proc.wait, 120)

    statuses = {r["status"]: r["n"] for r in await db.fetch(internals.COUNT_BY_STATUS)}
    per_job = await db.fetch(
        "SELECT j.id, j.attempts, (SELECT count(*) FROM effects e WHERE e.job_id = j.id) AS rows "
        "FROM pgqueue.jobs j")
    await db.close()
    await recreate_database(args.dsn_base, database, drop_only=True)
    rows = sum(r["rows"] for r in per_job)
    return {
        "mode": mode,
        "jobs": len(per_job),
        "workers_sigkilled": kills,
        "fault_seconds": round(fault_seconds, 1),
        "statuses": statuses,
        "jobs_run_more_than_once": sum(1 for r in per_job if r["attempts"] > 1),
        "effect_rows": rows,
        "jobs_without_a_row": sum(1 for r in per_job if r["rows"] == 0),
        "jobs_with_duplicate_rows": sum(1 for r in per_job if r["rows"] > 1),
        "duplicate_rows": rows - sum(1 for r in per_job if r["rows"] > 0),
    }


def _exactly_once(report: dict[str, object]) -> bool:
    return (report["statuses"] == {"succeeded": report["jobs"]}
            and report["effect_rows"] == report["jobs"] and report["jobs_without_a_row"] == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn-base", default=DEFAULT_DSN_BASE)
    parser.add_argument("--db-prefix", default="bench_", help="its database is <prefix>exactly_once")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mode", choices=["complete_in", "plain", "both"], default="both")
    parser.add_argument("--max-seconds", type=float, default=300, help="bound on the fault phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    modes = ["complete_in", "plain"] if args.mode == "both" else [args.mode]
    reports = [asyncio.run(run_mode(args, mode)) for mode in modes]
    print(json.dumps(reports, indent=2))
    if not args.no_save:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
        path = RESULTS_DIR / f"exactly_once-{stamp}.json"
        path.write_text(json.dumps({"args": vars(args), "runs": reports}, indent=2) + "\n")
        print(f"written to {path.relative_to(REPO_ROOT)}")
    ok = all(_exactly_once(r) for r in reports if r["mode"] == "complete_in")
    print("exactly once: OK" if ok else "exactly once: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
