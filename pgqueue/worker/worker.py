"""The worker: its lifecycle, and the wiring of its parts.

Each duty is a part with one loop: the ``Claimer`` claims jobs as slots free up, the
``OutcomeWriter`` writes what they produced, the ``Reporter`` their progress, the heartbeat, the
rescuer, the scheduler, the pruner, the vacuumer and the periodic enqueuers keep the queue healthy.
Each gets the ``Backend`` and what it needs of the others, never the worker or the ``PgQueue``.

Stopping: ``stop()`` (or SIGTERM/SIGINT in the CLI) stops claiming at once and lets running jobs
finish within ``shutdown_grace``; what is still running then is cancelled and handed back to the
queue without counting the attempt. A sync task that ignores the cancellation cannot be stopped;
its job is handed back to run only after ``rescue_after`` seconds, by which time the worker's
process (whose threads are daemons) is gone. Outcomes the database could not take in that time
(it is away) are left behind: those jobs are rescued and run again. A second ``stop()`` skips the
rest of the wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from ..backend import Backend
from ..context import JobContext
from ..database import CONNECTION_ERRORS
from ..job import Job, JobStatus
from ..listener import Listener
from ..messages import Cancel, Wake, read_jobs_message
from ..task import OnFailure, Task
from ..tracing import configured as tracing_configured
from .claimer import Claimer
from .completion import RunDatabase
from .executor import Outcome, execute, unknown_task
from .heartbeat import Heartbeat
from .hooks import FailureHooks
from .maintenance import Pruner, Rescuer, Scheduler, Vacuumer
from .metrics import WorkerMetrics
from .observers import RunObserver, observed
from .outcomes import OutcomeWriter
from .pace import ClaimPace
from .periodic import Periodic, PeriodicEnqueuer
from .registration import Registration
from .reporter import Reporter
from .ring import ReadyRing
from .slots import Running, Slots
from .threads import SyncRunner
from .tracing import RunTracing

logger = logging.getLogger("pgqueue.worker")

_HOOKS_GRACE = 5.0  # seconds on_failure hooks still running at the end may take


class Worker:
    """Runs the jobs of one ``PgQueue`` in this process; build it with ``pgq.worker(...)``.

    ``await worker.run()`` runs until ``stop()``; ``async with pgq.worker():`` runs it in the
    background for the block. ``burst=True`` makes ``run()`` return once nothing is left to claim
    (handy in tests and one-off scripts). ``metrics_port`` (default: the setting) serves this
    worker's Prometheus metrics at ``http://<metrics_host>:<port>/metrics`` while it runs.
    """

    def __init__(
        self,
        backend: Backend,
        tasks: Mapping[str, Task],
        queues: list[str] | None = None,
        concurrency: int = 10,
        *,
        periodic: Sequence[Periodic] = (),
        on_failure: OnFailure | None = None,
        burst: bool = False,
        shutdown_grace: float | None = None,
        metrics_port: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if queues is not None and not queues:
            raise ValueError("queues must name at least one queue, or be None for all queues")
        self.backend = backend
        self.tasks = tasks
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.burst = burst
        self.shutdown_grace = (
            backend.settings.shutdown_grace if shutdown_grace is None else shutdown_grace
        )
        self.ran: list[int] = []
        """Ids of the jobs started in burst mode, in order (what ``pgqueue.testing.drain`` reports)."""
        self.gave_up: str | None = None
        """Why the worker stopped by itself, if it did (its process should be restarted)."""
        self._periodic = [p for p in periodic if queues is None or p.task.queue in queues]
        self._registration = Registration(backend, self.queues, concurrency)
        self._slots = Slots(concurrency, ClaimPace(concurrency))
        self._threads = SyncRunner()
        self._reporter = Reporter(backend)
        self._wake = asyncio.Event()
        self._writer = OutcomeWriter(backend, self._reporter, self._written, self._wake.set)
        self._run_database = RunDatabase(backend)
        self._hooks = FailureHooks(tasks, on_failure)
        port = backend.settings.metrics_port if metrics_port is None else metrics_port
        self.metrics = None if port is None else WorkerMetrics(port, backend.settings.metrics_host)
        """This worker's metrics (``metrics.port``: where they are served), or None."""
        self._observers: list[RunObserver] = [o for o in (self.metrics,) if o is not None]
        if tracing_configured():
            self._observers.append(RunTracing(backend))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._started = asyncio.Event()
        self._stop_requests = 0
        self._stop_deadline = 0.0  # loop time by which a stopping worker is gone
        self._background: asyncio.Task[None] | None = None

    @property
    def id(self) -> int | None:
        """The worker's id in ``<schema>.workers`` (None until it runs)."""
        return self._registration.id

    # -- lifecycle -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop gracefully; returns at once. Safe from any thread or a signal
        handler. A second call stops waiting for running jobs."""
        loop = self._loop
        if loop is None:
            self._stop_requests += 1
            return
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is loop:
            self._request_stop()
        else:
            loop.call_soon_threadsafe(self._request_stop)

    def _request_stop(self) -> None:
        self._stop_requests += 1
        assert self._loop is not None
        if not self._stopping.is_set():
            self._stop_deadline = self._loop.time() + self.shutdown_grace
        if self._stop_requests == 1:
            logger.info("worker %s: stopping; no new jobs will be claimed", self.id)
        else:
            logger.warning("worker %s: stop requested again; cancelling running jobs", self.id)
            self._hurry.set()
        self._stopping.set()

    async def __aenter__(self) -> Worker:
        self._background = asyncio.create_task(self.run(), name="pgqueue-worker")
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({started, self._background}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._background.done():
            self._background.result()  # raise why it could not start
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        assert self._background is not None
        await self._background

    async def run(self) -> None:
        """Run until ``stop()``; return once running jobs are finished or handed back."""
        self._loop = asyncio.get_running_loop()
        requested, self._stop_requests = self._stop_requests, 0
        for _ in range(requested):
            self._request_stop()
        opened_here = not self.backend.is_open
        await self.backend.open()
        listener = Listener(
            self.backend.listen_dsn, [self.backend.statements.jobs_channel], self._on_notify,
            self._wake.set, self.backend.settings.statement_cache_size,
        )
        services: list[asyncio.Task[Any]] = []
        try:
            if self.metrics is not None:
                self.metrics.start()
            async with self.backend.acquire() as conn:
                await self._registration.register(conn)
            listener.start()
            services = [
                asyncio.create_task(coro, name=f"pgqueue-{name}")
                for name, coro in self._service_coroutines()
            ]
            logger.info(
                "worker %s: serving %s with concurrency %s (tasks: %s)",
                self.id,
                ", ".join(self.queues) if self.queues else "all queues",
                self.concurrency,
                ", ".join(sorted(self.tasks)) or "none",
            )
            self._started.set()
            await Claimer(
                self.backend, self._slots, self._registration, self.queues, wake=self._wake,
                stopping=self._stopping, start_ready=self._start_ready, burst=self.burst,
            ).run()
            if not self._stopping.is_set():
                self._request_stop()  # a burst found nothing left
            await self._finish_running()
            await self._write_outcomes()
            await self._writer.close()
            await self._reporter.flush()
        finally:
            for service in services:
                service.cancel()
            await asyncio.gather(*services, return_exceptions=True)
            await listener.stop()
            await self._hooks.finish(_HOOKS_GRACE)
            await self._registration.unregister()
            self._threads.close()
            if self.metrics is not None:
                self.metrics.stop()
            if opened_here:
                await self.backend.close()
            logger.info("worker %s: stopped", self.id)

    def _service_coroutines(self) -> list[tuple[str, Any]]:
        backend = self.backend
        coroutines = [
            ("outcomes", self._writer.run()),
            ("reporter", self._reporter.run()),
            ("heartbeat", Heartbeat(backend, self._registration, self._slots).run()),
            ("rescuer", Rescuer(backend, self._registration, self._hooks.failed).run()),
            ("scheduler", Scheduler(backend).run()),
            ("pruner", Pruner(backend).run()),
            ("ready ring", ReadyRing(backend).run()),
        ]
        if backend.settings.vacuum_interval:
            coroutines.append(("vacuumer", Vacuumer(backend).run()))
        for periodic in self._periodic:
            coroutines.append((f"periodic-{periodic.task.name}",
                               PeriodicEnqueuer(backend, periodic).run()))
        return coroutines

    def _on_notify(self, _channel: str, payload: str) -> None:
        message = read_jobs_message(payload)
        if isinstance(message, Wake):
            if self.queues is None or message.queue in self.queues:
                self._wake.set()
        elif isinstance(message, Cancel):
            self._slots.cancel(message.job_id)

    # -- running jobs ----------------------------------------------------------------------------

    def _start_ready(self) -> None:
        """Start claimed jobs while there are free slots."""
        while (row := self._slots.next_to_start()) is not None:
            job = Job.from_claim(row, self.id)
            ctx = JobContext(job, self._reporter, self._run_database)
            task = asyncio.create_task(self._run_job(job, ctx), name=f"pgqueue-job-{job.id}")
            self._slots.running[job.id] = Running(job, ctx, task)
            self._writer.started(job.id)
            if self.burst:
                self.ran.append(job.id)

    async def _run_job(self, job: Job, ctx: JobContext) -> None:
        try:
            if self._observers:
                outcome = await observed(self._observers, job, lambda: self._outcome(job, ctx))
            else:
                outcome = await self._outcome(job, ctx)
            if outcome is not None:
                self._writer.add(outcome)
        finally:
            self._slots.running.pop(job.id, None)
            if not self._stopping.is_set():
                self._start_ready()
            self._slots.freed.set()
            self._check_stuck_threads()

    async def _outcome(self, job: Job, ctx: JobContext) -> Outcome | None:
        """Run the job; None if it was cancelled (the row already says so)."""
        assert self._loop is not None
        task = self.tasks.get(job.task)
        if task is None:
            return unknown_task(job, list(self.tasks))
        try:
            started = self._loop.time()
            outcome = await execute(task, job, ctx, self._threads)
            self._slots.pace.job_ran(self._loop.time() - started)
            return outcome
        except asyncio.CancelledError:
            running = self._slots.running.get(job.id)
            if running is not None and running.stop_reason == "cancelled":
                self._slots.release([job.id])
                return None
            raise

    def _check_stuck_threads(self) -> None:
        """Stop the worker once too many sync tasks ignored their cancellation: each keeps a
        thread that only the end of the process frees."""
        limit = 2 * self.concurrency
        if self._threads.stuck > limit and self.gave_up is None:
            self.gave_up = (
                f"{self._threads.stuck} sync tasks timed out or were cancelled but still run "
                f"(more than {limit}, twice the concurrency); restart the process to free their "
                "threads, and make those tasks return when ctx.cancelled is true"
            )
            logger.error("worker %s: stopping: %s", self.id, self.gave_up)
            self._request_stop()

    async def _written(self, outcomes: list[Outcome]) -> None:
        """Outcomes were written: let go of those jobs and call the ``on_failure`` hooks of the
        ones that just failed for good."""
        self._slots.release([outcome.job.id for outcome in outcomes])
        for outcome in outcomes:
            if outcome.recorded and outcome.status is JobStatus.FAILED:
                outcome.job.status = JobStatus.FAILED
                outcome.job.error = outcome.error
                self._hooks.failed(outcome.job)

    # -- stopping --------------------------------------------------------------------------------

    async def _finish_running(self) -> None:
        ids = self._slots.take_ready()
        if ids:  # claimed ahead, never started: straight back to the queue
            await self._hand_back(ids)
            self._slots.release(ids)
        if not self._slots.running:
            return
        grace = self._grace_left()
        logger.info("worker %s: waiting up to %.0f s for %s running job(s) to finish",
                    self.id, grace, len(self._slots.running))
        await self._unless_hurried(
            asyncio.wait([r.task for r in self._slots.running.values()]), grace)
        left = list(self._slots.running.values())
        if not left:
            return
        for running in left:
            Slots.stop(running, "shutdown")
        await asyncio.gather(*(running.task for running in left), return_exceptions=True)
        ids = [running.job.id for running in left]
        # A sync task may still notice ctx.cancelled and return; one that does not keeps running.
        await self._threads.wait_unstuck(list(ids), timeout=1.0)
        stuck = [job_id for job_id in ids if self._threads.is_stuck(job_id)]
        await self._hand_back([job_id for job_id in ids if job_id not in stuck])
        if stuck:
            await self._hand_back(stuck, later=True)
        self._slots.release(ids)
        for running in left:
            if running.job.id in stuck:
                logger.error(
                    "job %s %s: ignored its cancellation and still runs in this process; handed "
                    "back to run again in %s s: end this process before then",
                    running.job.id, running.job.task, self.backend.settings.rescue_after)
            else:
                logger.warning("job %s %s: did not finish within the shutdown grace period; "
                               "handed back to the queue", running.job.id, running.job.task)

    async def _write_outcomes(self) -> None:
        """Wait for the outcomes of finished jobs to be written: up to the rest of the grace
        period (at least a few seconds; a healthy database takes them in milliseconds)."""
        await self._unless_hurried(self._writer.drained(), max(self._grace_left(), 5.0))
        unwritten = len(self._slots.held)  # nothing runs or waits to start any more
        if unwritten:
            logger.warning("worker %s: the outcomes of %s finished job(s) were not written before "
                           "stopping; they will be rescued and run again after %s s",
                           self.id, unwritten, self.backend.settings.rescue_after)

    def _grace_left(self) -> float:
        assert self._loop is not None
        return max(0.0, self._stop_deadline - self._loop.time())

    async def _unless_hurried(self, awaitable: Awaitable[object], timeout: float) -> None:
        """Wait for ``awaitable`` until the timeout or a second stop request, whichever is first."""
        waiting = asyncio.ensure_future(awaitable)
        hurry = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait([waiting, hurry], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        hurry.cancel()

    async def _hand_back(self, ids: list[int], *, later: bool = False) -> None:
        """Put jobs this worker will not finish back in the queue, the attempt not counted;
        ``later``: not before ``rescue_after`` seconds (their code still runs here)."""
        if not ids:
            return
        statements, settings = self.backend.statements, self.backend.settings
        try:
            async with self.backend.acquire() as conn:
                if later:
                    await conn.fetch(statements.hand_back_later, ids, self.id, settings.rescue_after)
                else:
                    await conn.fetch(statements.hand_back, ids, self.id)
        except CONNECTION_ERRORS as exc:
            logger.warning("worker %s: could not hand back %s job(s) (%s); they will be rescued "
                           "after %s s", self.id, len(ids), exc, settings.rescue_after)
