"""Chaos run: push many jobs through several worker processes while killing things at random.

    python benchmarks/chaos.py --jobs 20000 --workers 3 --minutes 5

Faults, one every ``--fault-every`` seconds: SIGKILL a worker (and start a new one), SIGTERM a worker
(graceful; start a new one), or ``pg_terminate_backend`` on a random pgqueue connection. Once every
job is final, or the time is up, the faults stop, the survivors finish, and the report says:

* enqueued, succeeded, failed;
* lost: jobs that never reached a final status (must be 0);
* run more than once, and how many of those had a run on a SIGKILLed worker (the only
  duplicates at-least-once allows);
* still running (must be 0).

It creates and drops its own database (``pgqueue_chaos``) on the server given by ``--dsn-base``.
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
from pathlib import Path

import asyncpg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import chaos_tasks  # noqa: E402

from pgqueue.migrate import upgrade  # noqa: E402

DATABASE = "pgqueue_chaos"


def _worker(dsn: str, concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pgqueue.worker", "chaos_tasks:pgq", "--concurrency",
         str(concurrency), "--log-level", "WARNING"],
        cwd=HERE,
        env={**os.environ, "PGQUEUE_DSN": dsn, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _admin(base: str, *statements: str) -> None:
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    dsn = f"{args.dsn_base}/{DATABASE}"
    await _admin(args.dsn_base, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)",
                 f"CREATE DATABASE {DATABASE}")
    await asyncio.to_thread(upgrade, dsn, "pgqueue")
    db = await asyncpg.connect(dsn)
    await db.execute(chaos_tasks.CREATE_RUNS)

    chaos_tasks.pgq.settings.dsn = dsn
    async with chaos_tasks.pgq:
        for start in range(0, args.jobs, 5000):
            await chaos_tasks.chaos_job.enqueue_many(range(start, min(args.jobs, start + 5000)))

    workers = [_worker(dsn, args.concurrency) for _ in range(args.workers)]
    killed_pids: set[int] = set()
    faults = {"sigkill": 0, "sigterm": 0, "terminate_backend": 0}
    started = time.monotonic()
    deadline = started + args.minutes * 60

    async def unfinished() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM pgqueue.jobs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')"
        )

    try:
        while time.monotonic() < deadline and await unfinished() > 0:
            await asyncio.sleep(args.fault_every)
            fault = rng.choice(list(faults))
            faults[fault] += 1
            if fault == "terminate_backend":
                await db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ("
                    " SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'pgqueue' AND pid <> pg_backend_pid()"
                    " ORDER BY random() LIMIT 1)"
                )
                continue
            victim = workers.pop(rng.randrange(len(workers)))
            if fault == "sigkill":
                victim.kill()
                killed_pids.add(victim.pid)
            else:
                victim.send_signal(signal.SIGTERM)
            await asyncio.to_thread(victim.wait, 120)
            workers.append(_worker(dsn, args.concurrency))
        chaos_seconds = time.monotonic() - started
        # Faults over: the survivors rescue what the killed ones held and finish.
        settle_deadline = time.monotonic() + 120
        while await unfinished() > 0 and time.monotonic() < settle_deadline:
            await asyncio.sleep(0.5)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        exit_codes = [await asyncio.to_thread(proc.wait, 120) for proc in workers]

    statuses = {r["status"]: r["n"] for r in await db.fetch(
        "SELECT status::text, count(*) AS n FROM pgqueue.jobs GROUP BY 1")}
    never_ran = await db.fetchval(
        "SELECT count(*) FROM pgqueue.jobs j WHERE j.status = 'succeeded' "
        "AND NOT EXISTS (SELECT 1 FROM chaos_runs r WHERE r.job_id = j.id)")
    duplicates = await db.fetch(
        "SELECT job_id, array_agg(pid ORDER BY at) AS pids FROM chaos_runs "
        "GROUP BY job_id HAVING count(*) > 1")
    explained = sum(1 for row in duplicates if set(row["pids"][:-1]) <= killed_pids)
    await db.close()
    await _admin(args.dsn_base, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    enqueued = sum(statuses.values())
    final = statuses.get("succeeded", 0) + statuses.get("failed", 0) + statuses.get("cancelled", 0)
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
    parser.add_argument("--dsn-base", default="postgresql://postgres@127.0.0.1:5432")
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
