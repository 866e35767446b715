"""The worker processes of the flow-control benchmark (``benchmarks.flow``), one library each.

    python -m benchmarks.flow_workers --contestant pgqueue --dsn DSN --concurrency 16 \
        --sleep-ms 20 --limits '{"concurrency": 5}'

Runs ONE worker of the named library in this process, through the library's public API, until
SIGTERM, then stops it gracefully. Its task (named ``noop``, queue ``default``, the same payload
the peer adapters in ``contestants/`` enqueue, so their producers are reused) reads the wall clock
when it starts, sleeps ``--sleep-ms``, reads it again when it ends, and keeps ``(job, started,
ended, pid)``. A flusher writes what was kept into ``flow_runs`` every 100 ms over this process's
own connection, so recording costs the job no round trip and the driver can count progress.
The clock is ``time.time()``: CLOCK_REALTIME, the clock PostgreSQL's ``clock_timestamp()`` reads
on this machine, so times from every process (and the producer's enqueue time) compare.

``--limits`` is how each library is told its limit (what it offers, see ``flow.PROMISES``):
pgqueue is configured by the driver in the database (``configure_queue``), so this process
passes nothing; PgQueuer takes ``concurrency_limit`` on its entrypoint; awa takes a queue's
``max_workers`` (per process) and ``rate_limit``; procrastinate has none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from .contestants.base import JOB_NAME, QUEUE
from .harness import run_async

RUNS_TABLE = "flow_runs"
CREATE_RUNS = (f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (job bigint NOT NULL, "
               "started double precision NOT NULL, ended double precision NOT NULL, "
               "pid integer NOT NULL)")

Body = Callable[[int], Awaitable[None]]


@dataclass
class Noop:  # awa's job args; the same shape as contestants/awa.py's
    i: int


class Recorder:
    """Keeps each run's own start and end, and flushes them to ``flow_runs`` in batches."""

    def __init__(self, dsn: str, sleep_s: float) -> None:
        self.dsn = dsn
        self.sleep_s = sleep_s
        self.rows: list[tuple[int, float, float, int]] = []
        self.pid = os.getpid()

    async def body(self, i: int) -> None:
        started = time.time()
        await asyncio.sleep(self.sleep_s)
        self.rows.append((i, started, time.time(), self.pid))

    async def flush_until(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while True:
                stopping = stop.is_set()
                rows, self.rows = self.rows, []
                if rows:
                    await conn.copy_records_to_table(RUNS_TABLE, records=rows)
                if stopping:
                    return
                try:
                    await asyncio.wait_for(stop.wait(), 0.1)
                except TimeoutError:
                    pass
        finally:
            await conn.close()


# --------------------------------------------------------------------------- one library each

async def run_pgqueue(dsn: str, concurrency: int, body: Body, limits: dict[str, Any],
                      stop: asyncio.Event) -> None:
    from pgqueue import PgQueue

    from .pgqueue_internals import SCHEMA

    logging.getLogger("pgqueue").setLevel(logging.WARNING)
    pgq = PgQueue(dsn=dsn, schema=SCHEMA)

    @pgq.task(name=JOB_NAME, queue=QUEUE)
    async def noop(i: int) -> None:
        await body(i)

    worker = pgq.worker(concurrency=concurrency)
    runner = asyncio.create_task(worker.run())
    await stop.wait()
    worker.stop()
    await runner


async def run_pgqueuer(dsn: str, concurrency: int, body: Body, limits: dict[str, Any],
                       stop: asyncio.Event) -> None:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint(JOB_NAME, concurrency_limit=limits.get("concurrency_limit", 0))
    async def noop(job: Job) -> None:
        await body(json.loads(job.payload)["i"])

    async def stopper() -> None:
        await stop.wait()
        qm.shutdown.set()

    stopping = asyncio.create_task(stopper())
    try:  # the adapter's c32 shape: the cap must be at least twice the batch
        await qm.run(batch_size=max(1, concurrency // 2), max_concurrent_tasks=concurrency)
    finally:
        stopping.cancel()
        await conn.close()


async def run_procrastinate(dsn: str, concurrency: int, body: Body, limits: dict[str, Any],
                            stop: asyncio.Event) -> None:
    import procrastinate
    from procrastinate.worker import Worker

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=dsn, min_size=4, max_size=4))

    @app.task(name=JOB_NAME, queue=QUEUE)
    async def noop(i: int) -> None:
        await body(i)

    async with app.open_async():
        worker = Worker(app, queues=[QUEUE], concurrency=concurrency, wait=True,
                        listen_notify=True, delete_jobs="never", install_signal_handlers=False)
        runner = asyncio.create_task(worker.run())
        await stop.wait()
        worker.stop()
        await runner


async def run_awa(dsn: str, concurrency: int, body: Body, limits: dict[str, Any],
                  stop: asyncio.Event) -> None:
    import awa

    client = awa.AsyncClient(dsn, max_connections=10)

    @client.task(Noop, kind=JOB_NAME, queue=QUEUE)
    async def noop(job: Any) -> None:
        await body(job.args.i)

    queue: dict[str, Any] = {"name": QUEUE, "max_workers": limits.get("max_workers", concurrency)}
    if "rate_limit" in limits:
        queue["rate_limit"] = tuple(limits["rate_limit"])
    try:
        await client.start([queue])
        await stop.wait()
        await client.shutdown(timeout_ms=30000)
    finally:
        await client.close()


RUNNERS = {"pgqueue": run_pgqueue, "pgqueuer": run_pgqueuer,
           "procrastinate": run_procrastinate, "awa": run_awa}


async def main(args: argparse.Namespace) -> None:
    recorder = Recorder(args.dsn, args.sleep_ms / 1000)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    flushed = asyncio.Event()
    flusher = asyncio.create_task(recorder.flush_until(flushed))
    await RUNNERS[args.contestant](args.dsn, args.concurrency, recorder.body,
                                   json.loads(args.limits), stop)
    flushed.set()
    await flusher


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contestant", required=True, choices=sorted(RUNNERS))
    p.add_argument("--dsn", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sleep-ms", type=float, default=20)
    p.add_argument("--limits", default="{}", help="JSON: what this library is told")
    p.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    a = p.parse_args()
    run_async(main(a), a.loop)
