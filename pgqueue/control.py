"""Bulk control: cancel or retry every job matching a filter, each call one bounded statement.

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

    async def _count(self, statement: Statement) -> int:
        sql, params = statement
        async with self._backend.acquire() as conn:
            return int(await conn.fetchval(sql, *params))
