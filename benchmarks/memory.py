"""Does a pgqueue worker's memory stay flat over a long run?

    python -m benchmarks.memory                         # 1,000,000 jobs
    python -m benchmarks.memory --n 200000 --concurrency 32

In a fresh database ``<prefix>memory``: ONE worker process (the pgqueue contestant's worker,
public API only, no-op async task) drains N jobs while this process enqueues them with
``enqueue_many`` in chunks of --bulk-size, keeping at most --backlog jobs queued ahead of the
worker. The worker samples its own resident set size (/proc/self/statm) and the number of objects
the garbage collector tracks at --samples evenly spaced job counts; this prints RSS at start
(after the first job), middle and end, and the growth between the 10% mark (after warm-up:
pools, caches and prepared statements are in place) and the end.

Target from the performance issue: worker RSS flat over 1M jobs. Results:
results/memory-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import subprocess
import time
from typing import Any

from pgqueue import PgQueue

from .contestants import Contestant, load
from .contestants.base import QUEUE
from .harness import (
    REPO_ROOT,
    add_server_options,
    db_dsn,
    module_command,
    recreate_database,
    results_path,
    run_async,
    utc_now,
    write_json,
)
from .pgqueue_internals import SCHEMA

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


async def role_worker(a: argparse.Namespace) -> None:
    c = load("pgqueue")
    step = max(1, a.n // a.samples)
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    count = 0

    def sample() -> None:
        row = {"jobs": count, "rss_mb": rss_mb(), "gc_objects": len(gc.get_objects()),
               "t_s": time.monotonic() - t0}
        if a.gc_collect:  # diagnosis: is the growth garbage in reference cycles, or live objects?
            row["gc_collected"] = gc.collect()
            objects = gc.get_objects()
            row["gc_objects_after_collect"] = len(objects)
            row["types"] = dict(collections.Counter(type(o).__name__ for o in objects).most_common(40))
            del objects
        samples.append(row)

    def on_job(_i: int) -> None:
        nonlocal count
        count += 1
        if count == 1 or count % step == 0:
            sample()

    await c.run_worker(a.dsn, a.concurrency, a.n, on_job)
    sample()
    print(json.dumps({"samples": samples, "handler_calls": count,
                      "elapsed_s": time.monotonic() - t0}), flush=True)


async def produce(c: Contestant, dsn: str, n: int, bulk: int, backlog: int,
                  proc: subprocess.Popen[str]) -> None:
    """Enqueue n jobs in bulk, never more than ``backlog`` queued ahead of the worker."""
    await c.open_producer(dsn)
    try:
        async with PgQueue(dsn=dsn, schema=SCHEMA) as pgq:
            enqueued, since_check = 0, 0
            while enqueued < n:
                if since_check >= max(bulk, backlog // 4):
                    while proc.poll() is None:
                        queued = (await pgq.stats()).get(QUEUE, {}).get("queued", 0)
                        if queued <= backlog - bulk:
                            break
                        await asyncio.sleep(0.1)
                    since_check = 0
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited early with code {proc.returncode}")
                k = min(bulk, n - enqueued)
                await c.enqueue_many(list(range(enqueued, enqueued + k)))
                enqueued += k
                since_check += k
    finally:
        await c.close_producer()


async def main(a: argparse.Namespace) -> None:
    db = f"{a.db_prefix}memory"
    dsn = db_dsn(a.dsn_base, db)
    started = utc_now()
    c = load("pgqueue")
    await recreate_database(a.dsn_base, db)
    try:
        await c.install(dsn, "drain")
        proc = subprocess.Popen(
            module_command("memory", "--role", "worker", "--dsn", dsn, "--n", str(a.n),
                           "--concurrency", str(a.concurrency), "--samples", str(a.samples),
                           *(["--gc-collect"] if a.gc_collect else []), "--loop", a.loop),
            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        try:
            await produce(c, dsn, a.n, a.bulk_size, a.backlog, proc)
            loop = asyncio.get_running_loop()
            out, _ = await asyncio.wait_for(loop.run_in_executor(None, proc.communicate), a.timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"worker failed with code {proc.returncode}")
        res = json.loads(out.strip().splitlines()[-1])
    finally:
        await recreate_database(a.dsn_base, db, drop_only=True)

    samples = res["samples"]
    print(f"\nWorker memory over {a.n:,} jobs (concurrency {a.concurrency}, bulk {a.bulk_size}, "
          f"backlog <= {a.backlog:,}; {a.n / elapsed:,.0f} jobs/s overall)")
    extra = a.gc_collect
    print(f"{'jobs':>12s}{'RSS MB':>10s}{'gc objects':>12s}{'t s':>8s}"
          + (f"{'collected':>11s}{'objs after':>12s}" if extra else ""))
    for s in samples:
        print(f"{s['jobs']:12,d}{s['rss_mb']:10.1f}{s['gc_objects']:12,d}{s['t_s']:8.1f}"
              + (f"{s['gc_collected']:11,d}{s['gc_objects_after_collect']:12,d}" if extra else ""))

    def at(fraction: float) -> dict[str, Any]:
        target = a.n * fraction
        return min(samples, key=lambda s: abs(s["jobs"] - target))

    start, warm, middle, end = samples[0], at(0.1), at(0.5), samples[-1]
    if a.gc_collect:
        last_running = samples[-2] if len(samples) > 1 else end  # before the worker's final flush
        grew = sorted(((last_running["types"].get(t, 0) - warm["types"].get(t, 0), t)
                       for t in last_running["types"]), reverse=True)[:8]
        print("object types that grew most from the 10% mark to the last sample while running: "
              + ", ".join(f"{t} +{d:,}" for d, t in grew if d > 0))
    growth = end["rss_mb"] - warm["rss_mb"]
    print(f"\nRSS start (1st job) {start['rss_mb']:.1f} MB, at 10% {warm['rss_mb']:.1f} MB, "
          f"middle {middle['rss_mb']:.1f} MB, end {end['rss_mb']:.1f} MB; "
          f"10%->end {growth:+.1f} MB ({growth / warm['rss_mb'] * 100:+.1f}%), "
          f"gc objects {warm['gc_objects']:,} -> {end['gc_objects']:,}")
    flat = growth <= max(5.0, 0.05 * warm["rss_mb"])
    print(f"flat (<= max(5 MB, 5%) growth after warm-up): {'yes' if flat else 'NO'}")
    out_path = results_path(a.out, "memory", started)
    write_json(out_path, {"started_at": started.isoformat(timespec="seconds"),
                          "config": {k: v for k, v in vars(a).items() if k not in ("role", "dsn")},
                          "elapsed_s": elapsed, "handler_calls": res["handler_calls"],
                          "samples": samples, "rss_growth_after_warmup_mb": growth, "flat": flat})
    print(f"wrote {out_path}")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", default="driver", choices=["driver", "worker"], help=argparse.SUPPRESS)
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=1_000_000, help="jobs to run (default 1,000,000)")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--backlog", type=int, default=50_000, help="most jobs queued ahead of the worker")
    p.add_argument("--samples", type=int, default=20, help="RSS samples over the run")
    p.add_argument("--gc-collect", action="store_true",
                   help="diagnosis: gc.collect() at each sample and report what it freed")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait for the worker")
    add_server_options(p)
    p.add_argument("--out", default=None)
    return p.parse_args()


if __name__ == "__main__":
    args = parse()
    run_async(role_worker(args) if args.role == "worker" else main(args), args.loop)
