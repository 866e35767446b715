"""Where throughput stops growing, and why: ``python -m benchmarks.scale_out``.

Against one database, for each point of 1, 2 and 4 worker processes (concurrency 32 each) and 1
and 4 producer processes (each enqueueing one job per transaction as fast as it can), over a
backlog that keeps the workers busy: jobs finished per second and jobs enqueued per second, and
beside them what the database did in that window, so the curve shows its bottleneck:

- **database CPU**: CPU seconds of the database's backends (``/proc/<pid>/stat``, every backend
  of the database sampled) per wall second, i.e. cores busy; and the whole machine's busy share;
- **commits/s**: ``pg_stat_database.xact_commit``;
- **waits**: ``pg_stat_activity`` sampled every 0.2 s: the share of active backends waiting, by
  wait event (``Lock:transactionid``, ``LWLock:WALWrite``, ``IO:WALSync`` …), and ungranted
  ``pg_locks``.

Every process runs on this machine, so producers and workers compete with the database for the
same cores: on a small machine that is the first limit, and the table says so.

    python -m benchmarks.scale_out                         # 6 points, 20 s each
    python -m benchmarks.scale_out --seconds 3 --workers 1 --producers 1   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

import asyncpg

from .harness import (
    REPO_ROOT, add_server_options, db_dsn, fmt, machine_info, module_command, now,
    recreate_database, results_path, run_async, settle, utc_now, write_json,
    write_markdown_with_reproduce,
)
from .pgqueue_internals import JOBS, install_schema

SAMPLE_EVERY = 0.2
_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


async def _counters(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        f"SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) "
        f"AS commits, (SELECT count(*) FROM {JOBS} WHERE status = 'succeeded') AS done, "
        f"(SELECT coalesce(max(id), 0) FROM {JOBS}) AS enqueued")
    return dict(row)


async def _observe(dsn: str, seconds: float) -> dict[str, Any]:
    """Watch the database for ``seconds``: counters at both ends, CPU and waits sampled."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        start, t0, host0 = await _counters(conn), now(), _host_busy()
        cpu_first: dict[int, float] = {}
        cpu_last: dict[int, float] = {}
        waits: Counter[str] = Counter()
        active = ungranted = samples = 0
        while now() - t0 < seconds:
            rows = await conn.fetch(
                "SELECT pid, state, wait_event_type, wait_event, "
                "(SELECT count(*) FROM pg_locks WHERE NOT granted) AS ungranted "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")
            samples += 1
            for r in rows:
                if (cpu := _proc_cpu(r["pid"])) is not None:
                    cpu_first.setdefault(r["pid"], cpu)
                    cpu_last[r["pid"]] = cpu
                if r["state"] == "active":
                    active += 1
                    if r["wait_event_type"] and r["wait_event_type"] != "Client":
                        waits[f'{r["wait_event_type"]}:{r["wait_event"]}'] += 1
            ungranted += rows[0]["ungranted"] if rows else 0
            await asyncio.sleep(SAMPLE_EVERY)
        elapsed = now() - t0
        host1 = _host_busy()
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        end = await _counters(conn)
    finally:
        await conn.close()
    waited = sum(waits.values())
    return {
        "seconds": elapsed,
        "jobs_per_s": (end["done"] - start["done"]) / elapsed,
        "enqueued_per_s": (end["enqueued"] - start["enqueued"]) / elapsed,
        "commits_per_s": (end["commits"] - start["commits"]) / elapsed,
        "db_cpu_cores": sum(cpu_last[p] - cpu_first[p] for p in cpu_last) / elapsed,
        "host_busy": (host1[0] - host0[0]) / max(1, host1[1] - host0[1]),
        "active_backends": active / max(1, samples),
        "waiting_share": waited / max(1, active),
        "top_waits": {k: round(v / max(1, active), 3) for k, v in waits.most_common(4)},
        "ungranted_locks": ungranted / max(1, samples),
    }


async def producer(dsn: str, seconds: float) -> None:
    """Child process: one connection, one job per transaction, until ``seconds`` have passed."""
    from .scale_out_tasks import noop

    conn = await asyncpg.connect(dsn)
    deadline, i = now() + seconds, 0
    try:
        while now() < deadline:
            await noop.using(conn).enqueue(i)
            i += 1
    finally:
        await conn.close()


def _spawn(cmd: list[str], dsn: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


async def point(args: argparse.Namespace, workers: int, producers: int) -> dict[str, Any]:
    name = f"{args.db_prefix}scale_out"
    await recreate_database(args.dsn_base, name)
    dsn = db_dsn(args.dsn_base, name)
    await asyncio.to_thread(install_schema, dsn)
    from .scale_out_tasks import noop

    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, args.backlog, 1000):  # a backlog: the workers never wait for work
            await noop.using(conn).enqueue_many(range(start, min(args.backlog, start + 1000)))
    finally:
        await conn.close()
    await settle(dsn)
    run_for = args.warmup + args.seconds + 1
    procs = [_spawn([*module_command("scale_out", "--role", "producer", "--dsn", dsn,
                                     "--seconds", str(run_for))], dsn) for _ in range(producers)]
    procs += [_spawn([sys.executable, "-m", "pgqueue.worker", "benchmarks.scale_out_tasks:pgq",
                      "--concurrency", str(args.concurrency)], dsn) for _ in range(workers)]
    try:
        await asyncio.sleep(args.warmup)  # start-up and warm-up, not measured
        seen = await _observe(dsn, args.seconds)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        await recreate_database(args.dsn_base, name, drop_only=True)
    return {"workers": workers, "producers": producers, "concurrency": args.concurrency, **seen}


def _lines(points: list[dict[str, Any]]) -> list[str]:
    lines = ["| workers × c | producers | jobs/s done | enqueued/s | DB CPU (cores) | machine busy "
             "| commits/s | active backends | waiting | top waits | ungranted locks |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        waits = ", ".join(f"{k} {v:.0%}" for k, v in p["top_waits"].items()) or "—"
        lines.append(
            f"| {p['workers']} × {p['concurrency']} | {p['producers']} | {fmt(p['jobs_per_s'])} "
            f"| {fmt(p['enqueued_per_s'])} | {p['db_cpu_cores']:.2f} | {p['host_busy']:.0%} "
            f"| {fmt(p['commits_per_s'])} | {p['active_backends']:.1f} | {p['waiting_share']:.0%} "
            f"| {waits} | {p['ungranted_locks']:.1f} |")
    return lines


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    points = []
    for producers in map(int, args.producers.split(",")):
        for workers in map(int, args.workers.split(",")):
            print(f"{workers} worker(s), {producers} producer(s) ...", flush=True)
            points.append(await point(args, workers, producers))
            print("  " + _lines(points[-1:])[-1], flush=True)
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_options(p)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--producers", default="1,4")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per point")
    p.add_argument("--warmup", type=float, default=4.0)
    p.add_argument("--backlog", type=int, default=50000)
    p.add_argument("--out")
    p.add_argument("--role", default="parent", choices=["parent", "producer"])
    p.add_argument("--dsn")
    args = p.parse_args()
    if args.role == "producer":
        run_async(producer(args.dsn, args.seconds), args.loop)
        return
    started = utc_now()
    points = run_async(run(args), args.loop)
    path = results_path(args.out, "scale-out", started)
    write_json(path, {"started": started.isoformat(), "machine": machine_info(), "points": points})
    lines = [f"# Scale-out, one database ({started:%Y-%m-%d %H:%M} UTC)\n", *_lines(points), ""]
    write_markdown_with_reproduce(
        path.with_suffix(".md"), lines,
        f"python -m benchmarks.scale_out --workers {args.workers} --producers {args.producers} "
        f"--seconds {args.seconds}")
    print("\n".join(lines))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
