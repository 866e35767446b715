"""Chaos run: push many jobs through several worker processes while killing things at random.

    python -m benchmarks.chaos --jobs 20000 --workers 3 --minutes 5

Faults, one every ``--fault-every`` seconds: SIGKILL a worker (and start a new one), SIGTERM a worker
(graceful; start a new one), or ``pg_terminate_backend`` on a random pgqueue connection. Once every
job is final, or the time is up, the faults stop, the survivors finish, and the report says:

* enqueued, succeeded, failed;
* lost: jobs that never reached a final status (must be 0);
* run more than once, and how many of those had a run on a SIGKILLed worker (the only
  duplicates at-least-once allows);
* still running (must be 0).

The workers are ``python -m pgqueue.worker benchmarks.chaos_tasks:pgq`` started from the repository
root. It creates and drops its own database (``<prefix>chaos``) on the server given by ``--dsn-base``.
Exit status 0 when nothing was lost and no duplicate is unexplained.
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

import asyncpg

from . import chaos_tasks
from . import pgqueue_internals as internals
from .harness import DEFAULT_DSN_BASE, REPO_ROOT, db_dsn, recreate_database

TASKS = f"{chaos_tasks.__name__}:pgq"


def start_worker(dsn: str, concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pgqueue.worker", TASKS, "--concurrency", str(concurrency),
         "--log-level", "WARNING"],
        cwd=REPO_ROOT,
        env={**os.environ, "PGQUEUE_DSN": dsn},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def job_counts(db: asyncpg.Connection) -> dict[str, int]:
    """Jobs per status. Read on the driver's own connection, which the faults never terminate
    (they pick pgqueue's connections, and the driver's PgQueue is closed by then)."""
    return {r["status"]: r["n"] for r in await db.fetch(internals.COUNT_BY_STATUS)}


async def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    database = f"{args.db_prefix}chaos"
    dsn = db_dsn(args.dsn_base, database)
    await recreate_database(args.dsn_base, database)
    await asyncio.to_thread(internals.install_schema, dsn)
    db = await asyncpg.connect(dsn)
    await db.execute(chaos_tasks.CREATE_RUNS)

    chaos_tasks.pgq.settings.dsn = dsn
    async with chaos_tasks.pgq:
        for start in range(0, args.jobs, 5000):
            await chaos_tasks.chaos_job.enqueue_many(range(start, min(args.jobs, start + 5000)))

    workers = [start_worker(dsn, args.concurrency) for _ in range(args.workers)]
    killed_pids: set[int] = set()
    faults = {"sigkill": 0, "sigterm": 0, "terminate_backend": 0}
    started = time.monotonic()
    deadline = started + args.minutes * 60

    async def unfinished() -> int:
        counts = await job_counts(db)
        return sum(n for status, n in counts.items() if status not in internals.FINAL_STATUSES)

    try:
        while time.monotonic() < deadline and await unfinished() > 0:
            await asyncio.sleep(args.fault_every)
            fault = rng.choice(list(faults))
            faults[fault] += 1
            if fault == "terminate_backend":
                await db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ("
                    " SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = $1 AND pid <> pg_backend_pid()"
                    " ORDER BY random() LIMIT 1)", internals.APPLICATION_NAME,
                )
                continue
            victim = workers.pop(rng.randrange(len(workers)))
            if fault == "sigkill":
                victim.kill()
                killed_pids.add(victim.pid)
            else:
                victim.send_signal(signal.SIGTERM)
            await asyncio.to_thread(victim.wait, 120)
            workers.append(start_worker(dsn, args.concurrency))
        chaos_seconds = time.monotonic() - started
        # Faults over: the survivors rescue what the killed ones held and finish.
        settle_deadline = time.monotonic() + 120
        while await unfinished() > 0 and time.monotonic() < settle_deadline:
            await asyncio.sleep(0.5)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        exit_codes = [await asyncio.to_thread(proc.wait, 120) for proc in workers]

    statuses = await job_counts(db)
    never_ran = await db.fetchval(internals.SUCCEEDED_WITHOUT_RUN.format(runs="chaos_runs"))
    duplicates = await db.fetch(
        "SELECT job_id, array_agg(pid ORDER BY at) AS pids FROM chaos_runs "
        "GROUP BY job_id HAVING count(*) > 1")
    explained = sum(1 for row in duplicates if set(row["pids"][:-1]) <= killed_pids)
    await db.close()
    await recreate_database(args.dsn_base, database, drop_only=True)
    enqueued = sum(statuses.values())
    final = sum(statuses.get(status, 0) for status in internals.FINAL_STATUSES)
    return {
        "enqueued": enqueued,
        "succeeded": statuses.get("succeeded", 0),
        "failed": statuses.get("failed", 0),
        "lost": enqueued - final + never_ran,
        "still_running": statuses.get("running", 0),
        "run_more_than_once": len(duplicates),
        "duplicates_explained_by_sigkill": explained,
        "faults": faults,
        "workers_sigkilled": len(killed_pids),
        "chaos_seconds": round(chaos_seconds, 1),
        "final_worker_exit_codes": exit_codes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn-base", default=DEFAULT_DSN_BASE)
    parser.add_argument("--db-prefix", default="bench_", help="its database is <prefix>chaos")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=5.0, help="upper bound on the fault phase")
    parser.add_argument("--fault-every", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))
    ok = (report["lost"] == 0 and report["still_running"] == 0
          and report["run_more_than_once"] == report["duplicates_explained_by_sigkill"])
    print("chaos: OK" if ok else "chaos: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
