"""pgqueue adapter: driven only through pgqueue's public API.

* install  = pgqueue's migrations (``pgqueue_internals.install_schema``; Alembic, blocking: run
  in a thread).
* producer = ONE asyncpg connection (like every other contestant); ``enqueue_one`` is
  ``await noop.using(conn).enqueue(i)`` outside any transaction block, i.e. one autocommit
  INSERT statement = one transaction per job, exactly the harness's semantics.
  ``enqueue_many`` is ``await noop.using(conn).enqueue_many(ids)`` (one INSERT ... SELECT unnest
  statement per call). The ``PgQueue`` object is never opened on the producer side: ``using(conn)``
  needs no pool.
* worker   = ``pgq.worker(concurrency=N)`` with ``await worker.run()``; the no-op async task calls
  ``on_job(i)`` first, and ``worker.stop()`` is called once ``stop_after`` jobs have started;
  ``run()`` returns after the graceful stop (running jobs finished, outcomes written).
  The worker claims up to ``min(free slots, claim_batch)`` jobs per statement (claim_batch 100 by
  default) and writes outcomes in batches.
* Durability: pgqueue's defaults (logged tables; synchronous_commit as the server has it).
  The only non-default is the log level of the ``pgqueue`` loggers (WARNING), so per-job INFO
  lines are not formatted.

Verification counts come from ``pgq.stats()``.

Variants: c1 / c32 = concurrency 1 / 32; c100 / c200 = concurrency 100 / 200 (the worker claims up
to 100 per statement). latency_variant: c32 (see ``latency_variant`` below).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pgqueue import PgQueue, Task

from ..pgqueue_internals import JOBS, SCHEMA, install_schema
from .base import JOB_NAME, QUEUE, Contestant, OnJob, pkg_version

logging.getLogger("pgqueue").setLevel(logging.WARNING)

PENDING = ("queued", "scheduled", "running")


def make_queue(dsn: str | None, **settings: Any) -> tuple[PgQueue, Task, dict[str, Any]]:
    """A PgQueue with the benchmark's no-op task registered as ``noop``, which calls
    ``state["on_job"](i)``."""
    pgq = PgQueue(dsn=dsn, schema=SCHEMA, **settings)
    state: dict[str, Any] = {"on_job": None}

    @pgq.task(name=JOB_NAME, queue=QUEUE)
    async def noop(i: int) -> None:
        state["on_job"](i)

    return pgq, noop, state


class PgQueueContestant(Contestant):
    name = "pgqueue"
    supports_bulk = True
    drain_variants = {
        "c1": {"concurrency": 1},
        "c32": {"concurrency": 32},
        "c100": {"concurrency": 100},
        "c200": {"concurrency": 200},
    }
    # An idle worker's latency barely depends on the concurrency (measured: README); c32 is the
    # setting people deploy. PGQUEUE_BENCH_LATENCY_VARIANT picks another one for experiments.
    latency_variant = os.environ.get("PGQUEUE_BENCH_LATENCY_VARIANT", "c32")
    job_table = JOBS
    cleanup_note = (
        "keeps finished rows (status 'succeeded') for `retention` (7 days by default), then "
        "the worker's pruner DELETEs them in batches of 1000"
    )

    def __init__(self) -> None:
        self._noop: Any = None

    def versions(self) -> dict[str, str]:
        return {"pgqueue": pkg_version("pgqueue"), "asyncpg": pkg_version("asyncpg")}

    def describe(self) -> dict[str, Any]:
        return {
            "install": "pgqueue.migrate.upgrade(dsn, 'pgqueue') (Alembic), in a thread",
            "producer": "one asyncpg connection; single = noop.using(conn).enqueue(i) (autocommit, "
                        "one txn per job); bulk = noop.using(conn).enqueue_many(ids) (one statement)",
            "worker": "pgq.worker(concurrency=N); await worker.run(); worker.stop() after stop_after "
                      "jobs started; claims up to min(free slots, claim_batch=100) per statement, "
                      "outcomes written in batches (those that finish during a write go in the next)",
            "variants": self.drain_variants,
            "settings": "pgqueue defaults (durable); pgqueue loggers at WARNING",
        }

    async def install(self, dsn: str, scenario: str) -> None:
        await asyncio.to_thread(install_schema, dsn)

    async def open_producer(self, dsn: str) -> None:
        _pgq, self._noop, _state = make_queue(dsn)
        await super().open_producer(dsn)

    async def enqueue_one(self, i: int) -> None:
        await self._noop.using(self._conn).enqueue(i)

    async def enqueue_many(self, ids: list[int]) -> None:
        await self._noop.using(self._conn).enqueue_many(ids)

    async def run_worker(
        self,
        dsn: str,
        concurrency: int,
        stop_after: int,
        on_job: OnJob,
        **opts: Any,
    ) -> None:
        pgq, _noop, state = make_queue(dsn, **opts.get("settings", {}))
        worker = pgq.worker(concurrency=concurrency)
        seen = 0

        def counted(i: int) -> None:
            nonlocal seen
            on_job(i)
            seen += 1
            if seen == stop_after:
                worker.stop()

        state["on_job"] = counted
        await worker.run()

    async def _counts(self, dsn: str) -> dict[str, int]:
        """Jobs per status over every queue."""
        async with PgQueue(dsn=dsn, schema=SCHEMA) as pgq:
            stats = await pgq.stats()
        totals: dict[str, int] = {}
        for per_status in stats.values():
            for status, n in per_status.items():
                totals[status] = totals.get(status, 0) + n
        return totals

    async def count_done(self, dsn: str) -> int:
        return (await self._counts(dsn)).get("succeeded", 0)

    async def count_pending(self, dsn: str) -> int:
        counts = await self._counts(dsn)
        return sum(counts.get(status, 0) for status in PENDING)


def make() -> Contestant:
    return PgQueueContestant()
