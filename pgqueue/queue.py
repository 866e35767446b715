"""``PgQueue``: the registry of tasks, the connection pool, and the calls to inspect and control jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

import asyncpg

from .backend import Backend
from .control import BulkControl
from .enqueue import Enqueuer
from .events import EventHub
from .job import Job, JobStatus
from .limits import UNSET, QueueInfo, QueueLimits, limit_changes, limits_from_row, queue_infos
from .settings import Settings, load_settings
from .sql import Statements
from .stats import StatsReader
from .sync import SyncQueue
from .task import OnFailure, RetryDelay, Task
from .worker import Worker
from .worker.periodic import Periodic


@dataclass(frozen=True, slots=True)
class LogLine:
    id: int
    at: datetime
    message: str


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: int
    hostname: str
    pid: int
    queues: list[str] | None
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    running: int


class PgQueue:
    """A job queue in one PostgreSQL schema.

    ``PgQueue()`` reads its settings from ``PGQUEUE_*`` environment variables; any setting may be
    passed here instead (``dsn``, ``schema``, ``rescue_after``, ``shutdown_grace`` …), and wins.
    """

    def __init__(
        self,
        dsn: str | None = None,
        schema: str | None = None,
        *,
        on_failure: OnFailure | None = None,
        **settings: Any,
    ) -> None:
        self._backend = Backend(load_settings(dsn=dsn, schema=schema, **settings))
        self.on_failure = on_failure
        """Called (sync or async) with every job that fails for good in this PgQueue's workers,
        whatever its task, after the task's own ``on_failure``: a job out of attempts, one whose
        worker died on its last attempt, one whose task no worker defines."""
        self.tasks: dict[str, Task] = {}
        self.periodic_tasks: list[Periodic] = []
        self._events: EventHub | None = None
        self._stats = StatsReader(self._backend)
        self._bulk = BulkControl(self._backend)

    @property
    def backend(self) -> Backend:
        """Settings, statements and pool: what this queue's tasks and workers share."""
        return self._backend

    @property
    def settings(self) -> Settings:
        return self._backend.settings

    @property
    def statements(self) -> Statements:
        return self._backend.statements

    def __repr__(self) -> str:
        return f"<PgQueue schema={self.settings.schema!r} tasks={len(self.tasks)}>"

    # -- tasks -----------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        timeout: float | None = None,
        retry_delay: RetryDelay | None = None,
        on_failure: OnFailure | None = None,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register a function as a task: ``@pgq.task`` or ``@pgq.task(queue=..., ...)``."""

        def register(fn: Callable[..., Any]) -> Task:
            name = options.pop("name", None) or f"{fn.__module__}.{fn.__qualname__}"
            if name in self.tasks:
                raise ValueError(f"a task named {name!r} is already registered on this PgQueue")
            task = Task(self._backend, fn, name=name, **options)
            self.tasks[name] = task
            return task

        return register(fn) if fn is not None else register

    def periodic(self, cron: str, *args: Any, **kwargs: Any) -> Callable[[Task], Task]:
        """Enqueue a task on a cron schedule (``"*/5 * * * *"``), given these arguments.

        Put it above ``@pgq.task``. Every worker serving the task's queue keeps the schedule; each
        slot is enqueued exactly once however many workers run.
        """
        Periodic.check_cron(cron)

        def register(task: Task) -> Task:
            if not isinstance(task, Task) or task.backend is not self._backend:
                raise TypeError("put @pgq.periodic(...) above @pgq.task of the same PgQueue")
            self.periodic_tasks.append(Periodic(task, cron, args, kwargs))
            return task

        return register

    def task_named(self, name: str) -> Task:
        """The registered task, or a stand-in that enqueues by name (for tasks defined elsewhere)."""
        return self.tasks.get(name) or Task(self._backend, None, name=name)

    # -- pool ------------------------------------------------------------------------------------

    async def open(self) -> PgQueue:
        """Open the connection pool and check the schema is there and current."""
        await self._backend.open()
        return self

    async def close(self) -> None:
        if self._events is not None:
            await self._events.close()
            self._events = None
        await self._backend.close()

    async def __aenter__(self) -> PgQueue:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._backend.is_open

    @property
    def pool(self) -> asyncpg.Pool:
        return self._backend.pool

    def acquire(self) -> Any:
        """A pooled connection: ``async with pgq.acquire() as conn``."""
        return self._backend.acquire()

    @property
    def events(self) -> EventHub:
        """Job events for this process's watchers (one LISTEN connection, opened on first use)."""
        if self._events is None:
            self._events = EventHub(self._backend.listen_dsn, self.statements.events_channel,
                                    self.settings.statement_cache_size)
        return self._events

    def sync(self) -> SyncQueue:
        """A ``SyncQueue`` on this queue's database and schema: the inspect and control calls as
        plain functions over psycopg 3, for code without an event loop."""
        return SyncQueue(dsn=self.settings.dsn, schema=self.settings.schema)

    # -- enqueue ---------------------------------------------------------------------------------

    async def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue a task by its name; it need not be defined (or importable) in this process."""
        return await self.task_named(task_name).enqueue(*args, **kwargs)

    def using(self, task_name: str, conn: Any = None, **options: Any) -> Enqueuer:
        """``task.using(...)`` for a task known by name only."""
        return self.task_named(task_name).using(conn, **options)

    # -- inspect ---------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        async with self.acquire() as conn:
            row = await conn.fetchrow(self.statements.get_job, job_id)
        return None if row is None else Job.from_row(row)

    async def get_jobs(self, job_ids: list[int]) -> list[Job | None]:
        """The jobs with these ids, in the same order (None where there is no such job)."""
        async with self.acquire() as conn:
            rows = await conn.fetch(self.statements.get_jobs, job_ids)
        by_id = {row["id"]: Job.from_row(row) for row in rows}
        return [by_id.get(job_id) for job_id in job_ids]

    async def dependencies(self, job_id: int) -> list[Job]:
        """The jobs that job ``job_id`` was enqueued ``after``, in id order."""
        async with self.acquire() as conn:
            rows = await conn.fetch(self.statements.dependencies_of, job_id)
        return [Job.from_row(row) for row in rows]

    async def dependents(self, job_id: int, limit: int = 100) -> list[Job]:
        """Up to ``limit`` of the jobs enqueued ``after`` job ``job_id``, in id order."""
        async with self.acquire() as conn:
            rows = await conn.fetch(self.statements.dependents_of, job_id, limit)
        return [Job.from_row(row) for row in rows]

    async def list_jobs(
        self,
        *,
        status: str | JobStatus | None = None,
        queue: str | None = None,
        task: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first; pass the last id seen as ``before_id`` for the next page."""
        if status is not None:
            status = JobStatus(status)
        statement = self.statements.list_jobs(
            status=status is not None,
            queue=queue is not None,
            task=task is not None,
            before=before_id is not None,
        )
        params = [limit] + [p for p in (status, queue, task, before_id) if p is not None]
        async with self.acquire() as conn:
            rows = await conn.fetch(statement, *params)
        return [Job.from_row(row) for row in rows]

    async def job_logs(self, job_id: int, after_id: int = 0, limit: int = 1000) -> list[LogLine]:
        async with self.acquire() as conn:
            rows = await conn.fetch(self.statements.job_logs, job_id, after_id, limit)
        return [LogLine(row["id"], row["at"], row["message"]) for row in rows]

    async def stats(self, max_age: float = 0.0) -> dict[str, dict[str, int]]:
        """Job counts per queue and status, e.g. ``{"default": {"queued": 3, "succeeded": 120}}``.

        Finished jobs are counted as they finish, so this costs the same with ten finished jobs
        or ten million. ``max_age``: a read at most that many seconds old will do, shared with
        every caller in this process (what a dashboard polling every second wants)."""
        return await self._stats.read(max_age)

    async def workers(self) -> list[WorkerInfo]:
        async with self.acquire() as conn:
            rows = await conn.fetch(self.statements.list_workers)
        return [WorkerInfo(**dict(row)) for row in rows]

    async def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Return the job once it is final (succeeded, failed or cancelled).

        Woken by notifications; raises ``TimeoutError`` after ``timeout`` seconds, ``LookupError``
        if there is no such job.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self.events.watch(job_id) as events:
            while True:
                job = await self.get_job(job_id)
                if job is None:
                    raise LookupError(f"no job with id {job_id}")
                if job.status.is_final:
                    return job
                while True:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(
                            f"job {job_id} ({job.task}) is still {job.status} after {timeout} s"
                        )
                    try:
                        # The cap only bounds the cost of a lost notification.
                        event = await asyncio.wait_for(events.get(), min(remaining or 30.0, 30.0))
                    except TimeoutError:
                        break
                    if event["kind"] in ("status", "resync"):
                        break

    # -- control ---------------------------------------------------------------------------------

    async def cancel(self, job_id: int) -> bool:
        """Cancel a job that has not finished. A running job's worker stops it within a second.

        True if this call cancelled the job; False if it had already finished (or does not exist).
        """
        async with self.acquire() as conn:
            row = await conn.fetchrow(self.statements.cancel, job_id)
        return row is not None

    async def retry(self, job_id: int) -> bool:
        """Put a failed or cancelled job back in its queue, to run now with at least one more
        attempt. False, and nothing changed, for a job in any other status."""
        async with self.acquire() as conn:
            row = await conn.fetchrow(self.statements.retry, job_id)
        return row is not None

    async def cancel_jobs(self, status: str | JobStatus | None = None, queue: str | None = None,
                          task: str | None = None, *, limit: int | None = None) -> int:
        """Cancel every unfinished job matching the filter (``status`` one of queued, scheduled,
        running; None: all three), as ``cancel`` does, in one statement; return how many.

        At most ``limit`` jobs (default ``pgqueue.bulk.DEFAULT_LIMIT``, 10,000) per call: a
        result equal to the limit means call again for the rest."""
        return await self._bulk.cancel_jobs(status, queue, task, limit=limit)

    async def retry_jobs(self, status: str | JobStatus | None = "failed", queue: str | None = None,
                         task: str | None = None, *, limit: int | None = None) -> int:
        """Put every failed job matching the filter (``status="cancelled"``, or None for both)
        back to queued, as ``retry`` does, in one statement; return how many. Bounded like
        ``cancel_jobs``."""
        return await self._bulk.retry_jobs(status, queue, task, limit=limit)

    async def prune(self, older_than: float | None = None) -> int:
        """Delete finished jobs past their retention now, or every finished job that finished
        more than ``older_than`` seconds ago; return how many (what ``pgqueue prune`` runs)."""
        return await self._bulk.prune(older_than)

    async def pause_queue(self, queue: str) -> None:
        """Workers stop claiming from ``queue``; running jobs carry on."""
        async with self.acquire() as conn:
            await conn.execute(self.statements.pause_queue, queue, True)

    async def resume_queue(self, queue: str) -> None:
        async with self.acquire() as conn:
            async with conn.transaction():
                await conn.execute(self.statements.pause_queue, queue, False)
                await conn.execute(self.statements.wake_queue, queue)

    async def paused_queues(self) -> list[str]:
        async with self.acquire() as conn:
            return [row["name"] for row in await conn.fetch(self.statements.paused_queues)]

    async def configure_queue(
        self, queue: str, *, concurrency: int | None = UNSET, rate: int | None = UNSET,
        period: float | None = UNSET, group_concurrency: int | None = UNSET,
    ) -> QueueLimits:
        """Set the limits of ``queue`` for every worker, from their next claim on; returns them.

        ``concurrency``: jobs running at once; ``rate`` job starts per ``period`` seconds (default
        1); ``group_concurrency``: jobs running at once per job ``group``. Only the limits given
        change; None removes one.
        """
        params = limit_changes(queue, concurrency=concurrency, rate=rate, period=period,
                               group_concurrency=group_concurrency)
        async with self.acquire() as conn:
            return limits_from_row(await conn.fetchrow(self.statements.configure_queue, *params))

    async def queue_limits(self, queue: str) -> QueueLimits:
        """The limits of ``queue``; every value is None for a queue never limited."""
        async with self.acquire() as conn:
            return limits_from_row(await conn.fetchrow(self.statements.queue_limits, queue))

    async def queues(self) -> list[QueueInfo]:
        """Every queue that has jobs, is paused or has limits, by name."""
        counts = await self.stats()
        async with self.acquire() as conn:
            paused = {row["name"] for row in await conn.fetch(self.statements.paused_queues)}
            limited = {row["name"]: row for row in await conn.fetch(self.statements.limited_queues)}
        return queue_infos(counts, paused, limited)

    # -- workers ---------------------------------------------------------------------------------

    def worker(
        self,
        queues: list[str] | None = None,
        concurrency: int = 10,
        *,
        burst: bool = False,
        shutdown_grace: float | None = None,
        metrics_port: int | None = None,
    ) -> Worker:
        """A worker for this process: ``await worker.run()`` or ``async with pgq.worker():``.

        It runs this PgQueue's tasks only, keeps its periodic schedules, and calls its
        ``on_failure`` hooks. ``burst``: return once nothing is left to claim.
        ``shutdown_grace`` and ``metrics_port``: override the settings of those names for this
        worker (``metrics_port`` serves its Prometheus metrics; 0 picks a free port).
        """
        return Worker(
            self._backend, self.tasks, queues, concurrency, periodic=self.periodic_tasks,
            on_failure=self.on_failure, burst=burst, shutdown_grace=shutdown_grace,
            metrics_port=metrics_port,
        )
