"""What a running task may do with its own job's row: read its dependencies, and complete it in
the task's own transaction (``JobContext.dependencies`` and ``JobContext.complete_in``)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from ..backend import Backend
from ..connections import fetch
from ..errors import JobLost
from ..job import Job
from .executor import encode_result

logger = logging.getLogger("pgqueue.worker")


class RunDatabase:
    """The worker's ``context.RunDatabase``: one per worker, shared by its jobs' contexts."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def dependencies(self, job: Job) -> list[Job]:
        async with self._backend.acquire() as conn:
            rows = await conn.fetch(self._backend.statements.dependencies_of, job.id)
        return [Job.from_row(row) for row in rows]

    async def complete_in(self, conn: Any, job: Job, result: Any) -> None:
        try:
            result_json = encode_result(result)
        except ValueError as exc:
            raise TypeError(f"job {job.id} {job.task}: complete_in was given {exc}") from None
        if not _in_transaction(conn):
            raise ValueError(
                f"job {job.id} {job.task}: complete_in needs a connection inside a transaction "
                "(asyncpg: `async with conn.transaction():`; SQLAlchemy: `async with "
                "session.begin():`), so that your writes and the job's completion commit together"
            )
        rows = await fetch(conn, self._backend.statements.complete_in,
                           [job.id, job.attempts, job.worker_id, result_json])
        if not rows:
            logger.warning("job %s %s: complete_in: the job no longer belongs to this run "
                           "(attempt %s of worker %s)", job.id, job.task, job.attempts,
                           job.worker_id)
            raise JobLost(
                f"job {job.id} {job.task}: no longer belongs to this run (attempt {job.attempts} "
                f"on worker {job.worker_id}): it was rescued, cancelled or already completed. "
                "Nothing was written; let this exception roll your transaction back."
            )


def _in_transaction(conn: Any) -> bool:
    if isinstance(conn, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)):
        return conn.is_in_transaction()
    in_transaction = getattr(conn, "in_transaction", None)  # SQLAlchemy AsyncSession/-Connection
    return bool(in_transaction()) if callable(in_transaction) else True
