"""``JobContext``: what a running task may know and say about its own job."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any, Protocol

from .job import Job


class Reporter(Protocol):
    """Where a running job's progress and log lines go (the worker's, batched)."""

    def progress(self, job_id: int, percent: float, message: str | None) -> None: ...

    def log(self, job_id: int, message: str) -> None: ...


class RunDatabase(Protocol):
    """What a running job may read and write in the database itself (the worker's)."""

    async def dependencies(self, job: Job) -> list[Job]: ...

    async def complete_in(self, conn: Any, job: Job, result: Any) -> None: ...


class _Recorded:
    """What ``progress`` and ``log`` return: awaitable in async tasks, ignorable in sync ones.

    The call itself records the update (writes are coalesced by the worker), so there is nothing
    left to wait for; a plain object, unlike a coroutine, may be dropped without a warning.
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


_RECORDED = _Recorded()

logger = logging.getLogger("pgqueue.worker")


class JobContext:
    """Injected into a task that declares a parameter annotated ``JobContext``.

    ``progress`` and ``log`` are cheap: they record in memory and the worker writes them in
    batches, so a task may report as often as it likes. In an async task ``await`` them; in a sync
    task (running in a thread) call them plainly.
    """

    def __init__(
        self, job: Job, reporter: Reporter | None = None, database: RunDatabase | None = None
    ) -> None:
        self.job = job
        self._reporter = reporter
        self._database = database
        self._cancelled = False  # a plain flag: set on the loop, read from a task's thread
        self.completed_in = False
        """True once ``complete_in`` marked the job succeeded (in a transaction that may still
        roll back: the worker's own outcome is then written, guarded like any other)."""

    @property
    def attempt(self) -> int:
        """1 on the job's first run, 2 on its first retry, and so on."""
        return self.job.attempts

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or timed out; a sync task should poll it and return."""
        return self._cancelled

    def progress(self, percent: float, message: str | None = None) -> _Recorded:
        """Report how far the job is, 0 to 100, with an optional short message."""
        if not 0 <= percent <= 100:
            raise ValueError(f"progress must be between 0 and 100, got {percent!r}")
        self.job.progress = float(percent)
        self.job.progress_message = message
        if self._reporter is not None:
            self._reporter.progress(self.job.id, float(percent), message)
        return _RECORDED

    def log(self, message: str) -> _Recorded:
        """Keep a line with the job; the dashboard shows it live."""
        logger.info("job %s %s: %s", self.job.id, self.job.task, message)
        if self._reporter is not None:
            self._reporter.log(self.job.id, str(message))
        return _RECORDED

    def signal_cancelled(self) -> None:
        """Called by the worker when the job is cancelled or timed out."""
        self._cancelled = True

    async def dependencies(self) -> list[Job]:
        """The jobs this one was enqueued ``after``, as they are now (with their results), in id
        order. Async tasks only."""
        return await self._run_database().dependencies(self.job)

    async def complete_in(self, conn: Any, result: Any = None) -> None:
        """Mark this run's job succeeded, with ``result``, inside ``conn``'s current transaction
        (an asyncpg Connection, or a SQLAlchemy AsyncSession or AsyncConnection, on the same
        database): the task's own writes and the job's completion commit together or not at all.

        Raises ``pgqueue.JobLost``, having written nothing, when the job no longer belongs to this
        run (rescued, cancelled or already completed): let it roll the transaction back. Once the
        transaction commits, what the task returns or raises afterwards changes nothing.
        """
        await self._run_database().complete_in(conn, self.job, result)
        self.completed_in = True

    def _run_database(self) -> RunDatabase:
        if self._database is None:
            raise RuntimeError(
                f"job {self.job.id} {self.job.task}: this JobContext was not made by a worker, so "
                "it cannot reach the job's database row"
            )
        return self._database
