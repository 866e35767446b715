"""``inline(pgq)``: inside the block every job enqueued through ``pgq``'s tasks runs in this
process as soon as it is committed, and its outcome is recorded on its row, so a test needs no
worker.

When a job runs, by the connection it was enqueued on:

- none (``task.enqueue``, ``enqueue_many``, ``pgq.enqueue``): before the enqueue returns; the
  returned ``Job`` is updated in place (status, result, error, attempts).
- an asyncpg ``Connection`` or SQLAlchemy ``AsyncConnection``: before the enqueue returns when it
  is not in a transaction; else right after that transaction's ``COMMIT``, in a background task
  (``await running.settle()``, ``await pgq.wait(job.id)`` or leaving ``async with inline(pgq)``
  waits for it). A rolled-back transaction's jobs do not exist, and do not run.
- a SQLAlchemy ``Session`` or ``AsyncSession``: when it commits, before ``commit()`` returns.
- a SQLAlchemy sync ``Connection`` (or another) in a transaction: at ``settle()`` or the end of the
  block, if its transaction committed by then.

A job runs at once even if it was scheduled for later; a failing job runs again at once while it
has attempts left (no backoff) and ``on_failure`` hooks are called when it fails for good. Its
progress and log lines are written with its outcome. Jobs enqueued through a sync path run on an
event loop of their own, in another thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg

from ..context import JobContext
from ..job import Job, JobStatus
from ..messages import status_messages
from ..queue import PgQueue
from ..sql import Statements
from ..worker.completion import RunDatabase
from ..worker.executor import Outcome, execute, unknown_task
from ..worker.threads import SyncRunner


def inline(pgq: PgQueue) -> Inline:
    """``with inline(pgq):`` or ``async with inline(pgq):`` — see this module's docstring."""
    return Inline(pgq)


class Inline:
    """Runs ``pgq``'s jobs as they are enqueued, while installed (inside its block)."""

    def __init__(self, pgq: PgQueue) -> None:
        self._pgq = pgq
        self._after_commit: dict[Any, list[int]] = {}  # asyncpg connection -> its jobs
        self._at_settle: list[int] = []
        self._background: set[asyncio.Task[None]] = set()

    # -- the block -------------------------------------------------------------------------------

    def __enter__(self) -> Inline:
        self._pgq.backend.enqueue_hook = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._at_settle:
                ids, self._at_settle = self._at_settle, []
                _blocking(self._run(ids))
        finally:
            self._pgq.backend.enqueue_hook = None

    async def __aenter__(self) -> Inline:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.settle()
        finally:
            self._pgq.backend.enqueue_hook = None

    async def settle(self) -> None:
        """Wait for the jobs running after a commit, and run those left for ``settle``."""
        if self._at_settle:
            ids, self._at_settle = self._at_settle, []
            await self._run(ids)
        while self._background:
            await asyncio.gather(*self._background)

    # -- the hook --------------------------------------------------------------------------------

    async def written(self, jobs: list[Job], conn: Any) -> None:
        ids = _ids(jobs)
        if conn is None:
            await self._run(ids)
            await self._refresh(jobs)
        elif _is_session(conn):
            _on_session_commit(conn.sync_session, lambda: _await_in_greenlet(self._run(ids)))
        elif (driver := _asyncpg_of(conn)) is not None:
            if driver.is_in_transaction():
                self._run_after_commit(driver, ids)
            else:
                await self._run(ids)
                await self._refresh(jobs)
        else:
            self._at_settle += ids

    def written_sync(self, jobs: list[Job], conn: Any) -> None:
        ids = _ids(jobs)
        if _is_session(conn):
            _on_session_commit(conn, lambda: _blocking(self._run(ids)))
        elif hasattr(conn, "in_transaction") and not conn.in_transaction():
            _blocking(self._run(ids))
        else:
            self._at_settle += ids

    def _run_after_commit(self, conn: Any, ids: list[int]) -> None:
        if conn in self._after_commit:
            self._after_commit[conn] += ids
            return
        self._after_commit[conn] = list(ids)

        def ended(query: Any) -> None:
            verb = query.query.lstrip().upper()
            if not verb.startswith(("COMMIT", "END", "ROLLBACK")) or verb.startswith("ROLLBACK TO"):
                return
            conn.remove_query_logger(ended)
            ids = self._after_commit.pop(conn, [])
            if verb.startswith("ROLLBACK"):
                return
            task = asyncio.get_running_loop().create_task(self._run(ids))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        conn.add_query_logger(ended)

    # -- running ---------------------------------------------------------------------------------

    async def _run(self, ids: list[int]) -> None:
        conn = await asyncpg.connect(self._pgq.backend.dsn)
        threads = SyncRunner("pgqueue-inline")
        try:
            for job_id in ids:
                await self._run_job(conn, threads, job_id)
        finally:
            threads.close()
            await conn.close()

    async def _run_job(self, conn: asyncpg.Connection, threads: SyncRunner, job_id: int) -> None:
        """Run the job until it succeeds or fails for good (at most its ``max_attempts`` runs)."""
        statements, tasks = self._pgq.statements, self._pgq.tasks
        database = RunDatabase(self._pgq.backend)  # for ctx.dependencies() and ctx.complete_in()
        runs = 0
        while (row := await conn.fetchrow(statements.take_inline, job_id)) is not None:
            job = Job.from_claim(tuple(row), None)
            task = tasks.get(job.task)
            report = _Report()
            outcome = (unknown_task(job, list(tasks)) if task is None
                       else await execute(task, job, JobContext(job, report, database), threads))
            await report.write(conn, statements)
            await conn.fetch(statements.write_outcomes, *([value] for value in outcome.row))
            await conn.fetch(statements.announce,
                             status_messages([(job.id, str(outcome.status))]), [])
            runs += 1
            if outcome.status is JobStatus.FAILED:
                await self._failed(job, outcome)
            if outcome.status.is_final or runs >= job.max_attempts:
                return

    async def _failed(self, job: Job, outcome: Outcome) -> None:
        job.status, job.error = JobStatus.FAILED, outcome.error
        task = self._pgq.tasks.get(job.task)
        for hook in (task.on_failure if task else None, self._pgq.on_failure):
            if hook is not None:
                result = hook(job)
                if inspect.isawaitable(result):
                    await result

    async def _refresh(self, jobs: list[Job]) -> None:
        """Bring the ``Job`` objects the enqueue returned up to date with their rows."""
        conn = await asyncpg.connect(self._pgq.backend.dsn)
        try:
            rows = await conn.fetch(self._pgq.statements.get_jobs, _ids(jobs))
        finally:
            await conn.close()
        fresh = {row["id"]: Job.from_row(row) for row in rows}
        for job in jobs:
            if job.id in fresh:
                for field in dataclasses.fields(Job):
                    setattr(job, field.name, getattr(fresh[job.id], field.name))


class _Report:
    """A run's progress and log lines, kept until its outcome is written (``context.Reporter``)."""

    def __init__(self) -> None:
        self._progress: tuple[int, float, str | None] | None = None
        self._logs: list[tuple[int, str]] = []

    def progress(self, job_id: int, percent: float, message: str | None) -> None:
        self._progress = (job_id, percent, message)

    def log(self, job_id: int, message: str) -> None:
        self._logs.append((job_id, message))

    async def write(self, conn: asyncpg.Connection, statements: Statements) -> None:
        if self._progress is not None:
            await conn.execute(statements.record_progress, *([value] for value in self._progress))
        if self._logs:
            await conn.execute(statements.record_logs, *map(list, zip(*self._logs, strict=True)))


def _ids(jobs: list[Job]) -> list[int]:
    return list(dict.fromkeys(job.id for job in jobs))  # a unique key's batch shares one job


def _is_session(conn: Any) -> bool:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    return isinstance(conn, (Session, AsyncSession))


def _asyncpg_of(conn: Any) -> Any:
    """The asyncpg connection under ``conn`` (itself, or a SQLAlchemy AsyncConnection's), or None."""
    if isinstance(conn, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)):
        return conn
    from sqlalchemy.ext.asyncio import AsyncConnection

    if isinstance(conn, AsyncConnection):
        driver = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
        return driver if isinstance(driver, asyncpg.Connection) else None
    return None


def _on_session_commit(session: Any, run: Callable[[], None]) -> None:
    """Call ``run`` once, after ``session``'s next commit (a rollback's jobs are not found)."""
    from sqlalchemy import event

    event.listen(session, "after_commit", lambda _session: run(), once=True)


def _await_in_greenlet(coro: Awaitable[None]) -> None:
    """Run ``coro`` from a sync SQLAlchemy event fired inside an ``AsyncSession`` call."""
    from sqlalchemy.util import await_only

    await_only(coro)


def _blocking(coro: Awaitable[None]) -> None:
    """Run ``coro`` to the end on an event loop of its own, in a thread (this one may have one)."""
    with ThreadPoolExecutor(1, thread_name_prefix="pgqueue-inline") as executor:
        executor.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
