"""``SyncQueue``: inspect and control jobs from code without an event loop (Flask, Django, scripts).

The same statements as ``PgQueue`` (``pgqueue.sql``), run over psycopg 3 (``pip install
'pgqueue[sync]'``). A ``SyncQueue`` holds one connection in autocommit mode, opened on first use
and reopened after a failure, shared by threads one call at a time: its calls are short.

``wait`` polls (every ``poll_interval`` seconds): a sync caller has no loop to receive
notifications on, and a web request that waits for a job is rare enough for that to be fine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from .bulk import BulkFilter, Statement
from .database import unavailable
from .dsn import check_dsn
from .errors import ConfigurationError
from .job import Job, JobStatus
from .migrate import check_revision
from .psycopg_rows import INSTALL_HINT, Rows, fetch_psycopg
from .settings import Settings, load_settings
from .sql import Statements


class SyncQueue:
    """``SyncQueue(dsn=..., schema=...)``, or ``pgq.sync()`` for a ``PgQueue``'s database."""

    def __init__(self, dsn: str | None = None, schema: str | None = None,
                 **settings: Any) -> None:
        try:
            import psycopg  # noqa: F401  (fail here, with the fix, rather than on first call)
        except ImportError:
            raise ImportError(f"SyncQueue needs psycopg 3: {INSTALL_HINT}") from None
        self.settings: Settings = load_settings(dsn=dsn, schema=schema, **settings)
        self.statements = Statements(self.settings.schema)
        self._conn: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SyncQueue schema={self.settings.schema!r}>"

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- inspect ---------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        rows = self._fetch(self.statements.get_job, [job_id])
        return Job.from_row(rows[0]) if rows else None

    def list_jobs(self, *, status: str | JobStatus | None = None, queue: str | None = None,
                  task: str | None = None, before_id: int | None = None,
                  limit: int = 50) -> list[Job]:
        """Newest first; pass the last id seen as ``before_id`` for the next page."""
        if status is not None:
            status = JobStatus(status)
        statement = self.statements.list_jobs(
            status=status is not None, queue=queue is not None, task=task is not None,
            before=before_id is not None,
        )
        params = [limit] + [p for p in (status, queue, task, before_id) if p is not None]
        return [Job.from_row(row) for row in self._fetch(statement, params)]

    def stats(self) -> dict[str, dict[str, int]]:
        """Job counts per queue and status, as ``PgQueue.stats``."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            rows = fetch_psycopg(conn, self.statements.stats, [])
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["queue"], {})[row["status"]] = row["n"]
        return counts

    def wait(self, job_id: int, timeout: float | None = None, *,
             poll_interval: float = 0.5) -> Job:
        """Return the job once it is final; polls. ``TimeoutError`` after ``timeout`` seconds,
        ``LookupError`` if there is no such job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if job is None:
                raise LookupError(f"no job with id {job_id}")
            if job.status.is_final:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} ({job.task}) is still {job.status} after {timeout} s")
            pause = poll_interval if deadline is None else min(poll_interval, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))

    # -- control ---------------------------------------------------------------------------------

    def cancel(self, job_id: int) -> bool:
        """As ``PgQueue.cancel``: True if this call cancelled the job."""
        return bool(self._fetch(self.statements.cancel, [job_id]))

    def retry(self, job_id: int) -> bool:
        """As ``PgQueue.retry``: True if a failed or cancelled job went back to queued."""
        return bool(self._fetch(self.statements.retry, [job_id]))

    def cancel_jobs(self, status: str | JobStatus | None = None, queue: str | None = None,
                    task: str | None = None, *, limit: int | None = None) -> int:
        """As ``PgQueue.cancel_jobs``: one bounded statement, returns how many were cancelled."""
        return self._count(BulkFilter.for_cancel(status, queue, task, limit).cancel(self.statements))

    def retry_jobs(self, status: str | JobStatus | None = "failed", queue: str | None = None,
                   task: str | None = None, *, limit: int | None = None) -> int:
        """As ``PgQueue.retry_jobs``: one bounded statement, returns how many were retried."""
        return self._count(BulkFilter.for_retry(status, queue, task, limit).retry(self.statements))

    def pause_queue(self, queue: str) -> None:
        """Workers stop claiming from ``queue``; running jobs carry on."""
        self._fetch(self.statements.pause_queue, [queue, True])

    def resume_queue(self, queue: str) -> None:
        with self._connection() as conn, conn.transaction():
            fetch_psycopg(conn, self.statements.pause_queue, [queue, False])
            fetch_psycopg(conn, self.statements.wake_queue, [queue])

    def paused_queues(self) -> list[str]:
        return [row["name"] for row in self._fetch(self.statements.paused_queues, [])]

    # -- connection ------------------------------------------------------------------------------

    def _count(self, statement: Statement) -> int:
        sql, params = statement
        return int(self._fetch(sql, params)[0]["n"])

    def _fetch(self, statement: str, params: list[Any]) -> Rows:
        with self._connection() as conn:
            return fetch_psycopg(conn, statement, params)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        import psycopg

        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                yield self._conn
            except psycopg.OperationalError as exc:
                if self._conn.broken:  # the server went away: say so, reconnect next time
                    self._conn = None
                    raise unavailable(check_dsn(self.settings.dsn), exc) from exc
                raise

    def _connect(self) -> Any:
        import psycopg

        dsn = check_dsn(self.settings.dsn)
        try:
            conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise unavailable(dsn, exc) from exc
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"bad PGQUEUE_DSN: {exc}") from exc
        try:
            # As the asyncpg pool's connections (see ``database``).
            conn.execute("SET jit = off")
            conn.execute("SET enable_bitmapscan = off")
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: Any) -> None:
        schema = self.settings.schema
        has_table = fetch_psycopg(conn, "SELECT to_regclass($1) IS NOT NULL AS found",
                                  [f"{schema}.alembic_version"])[0]["found"]
        version = None
        if has_table:
            rows = fetch_psycopg(conn, self.statements.schema_version, [])
            version = rows[0]["version_num"] if rows else None
        check_revision(schema, has_table, version)
