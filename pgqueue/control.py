"""Bulk control: cancel or retry every job matching a filter, each call one bounded statement;
prune finished jobs on demand.

``PgQueue.cancel_jobs`` and ``PgQueue.retry_jobs`` delegate here; ``SyncQueue`` runs the same
statements over psycopg. The bound and what "at most ``limit``" means are in ``pgqueue.bulk``.
"""

from __future__ import annotations

from .backend import Backend
from .bulk import BulkFilter, Statement


class BulkControl:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def cancel_jobs(self, status: str | None = None, queue: str | None = None,
                          task: str | None = None, *, limit: int | None = None) -> int:
        """Cancel up to ``limit`` unfinished jobs matching the filter; return how many."""
        return await self._count(
            BulkFilter.for_cancel(status, queue, task, limit).cancel(self._backend.statements)
        )

    async def retry_jobs(self, status: str | None = "failed", queue: str | None = None,
                         task: str | None = None, *, limit: int | None = None) -> int:
        """Put up to ``limit`` failed (or cancelled) jobs back to queued; return how many."""
        return await self._count(
            BulkFilter.for_retry(status, queue, task, limit).retry(self._backend.statements)
        )

    async def prune(self, older_than: float | None = None, *, batch: int = 1000) -> int:
        """Delete finished jobs past their retention now (the workers' pruner does it every
        ``prune_interval``), or every finished job older than ``older_than`` seconds; return
        how many. Batches of ``batch`` commit one by one, so no long transaction is left behind."""
        settings, statements = self._backend.settings, self._backend.statements
        retention = settings.retention if older_than is None else older_than
        failed_retention = settings.failed_retention if older_than is None else older_than
        deleted, last_id = 0, 0
        async with self._backend.acquire() as conn:
            while True:
                row = await conn.fetchrow(
                    statements.prune, retention, failed_retention, batch, last_id
                )
                deleted += row["deleted"]
                if row["last_id"] is None:
                    break
                last_id = row["last_id"]
            await conn.execute(statements.fold_counts)
        return deleted

    async def _count(self, statement: Statement) -> int:
        sql, params = statement
        async with self._backend.acquire() as conn:
            return int(await conn.fetchval(sql, *params))
