"""The worker: claims jobs as slots free up, runs them, and keeps its duties going.

Claiming: one statement takes as many jobs as there are free slots, plus a few ahead
(``FOR UPDATE SKIP LOCKED``), so any number of workers share a queue without running a job twice,
and a slot that frees up starts its next job without a round trip (how many ahead: ``pace.py``).
The worker sleeps until a notification says work is ready (or a scheduled job comes due), not on
a polling timer.
Jobs claimed ahead and not started when the worker stops go straight back to the queue.

Stopping: ``stop()`` (or SIGTERM/SIGINT in the CLI) stops claiming at once and lets running jobs
finish within ``shutdown_grace``; what is still running then is cancelled and handed back to the
queue without counting the attempt. Outcomes the database could not take in that time (it is
away) are left behind: those jobs are rescued and run again. A second ``stop()`` skips the rest
of the wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..context import JobContext
from ..database import CONNECTION_ERRORS, Backoff, DedicatedConnection
from ..job import Job, JobStatus
from ..listener import Listener
from ..queue import PgQueue
from .completer import Completer
from .executor import Outcome, execute, unknown_task
from .outage import OutageLog
from .pace import ClaimPace
from .reporter import Reporter
from .services import Heartbeat, PeriodicEnqueuer, Pruner, Rescuer, Scheduler, Vacuumer

logger = logging.getLogger("pgqueue.worker")


@dataclass(slots=True)
class _Running:
    job: Job
    ctx: JobContext
    task: asyncio.Task[None]
    stop_reason: str | None = None  # "cancelled" by a user, or "shutdown"


class Worker:
    """Runs the jobs of one ``PgQueue`` in this process.

    ``await worker.run()`` runs until ``stop()``; ``async with pgq.worker():`` runs it in the
    background for the block. ``burst=True`` makes ``run()`` return once nothing is left to claim
    (handy in tests and one-off scripts).
    """

    def __init__(
        self,
        pgq: PgQueue,
        queues: list[str] | None = None,
        concurrency: int = 10,
        *,
        burst: bool = False,
        shutdown_grace: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if queues is not None and not queues:
            raise ValueError("queues must name at least one queue, or be None for all queues")
        self.pgq = pgq
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.burst = burst
        self.shutdown_grace = (
            pgq.settings.shutdown_grace if shutdown_grace is None else shutdown_grace
        )
        self.id: int | None = None
        self.ran: list[int] = []
        """Ids of the jobs started in burst mode, in order (what ``pgqueue.testing.drain`` reports)."""
        self._running: dict[int, _Running] = {}
        self._ready: deque[asyncpg.Record] = deque()  # claimed, waiting for a free slot
        self._cancelled_ahead: set[int] = set()
        self._threads: ThreadPoolExecutor
        # Claimed and not yet settled in the database: waiting in _ready, running, or finished
        # with the outcome still waiting to be written.
        self._held: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._stop_requests = 0
        self._stop_deadline = 0.0  # loop time by which a stopping worker is gone
        self._started = asyncio.Event()
        self._background: asyncio.Task[None] | None = None
        self._reporter = Reporter(pgq)
        self._completer: Completer | None = None
        self._claim_outage = OutageLog(logger, "claiming jobs")
        self._pace = ClaimPace(concurrency)

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
        assert self._stopping is not None and self._hurry is not None and self._loop is not None
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
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        requested, self._stop_requests = self._stop_requests, 0
        for _ in range(requested):
            self._request_stop()
        opened_here = not self.pgq.is_open
        await self.pgq.open()
        self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="pgqueue-job")
        self._completer = Completer(self.pgq, self._settled, self._reporter)
        listener = Listener(
            self.pgq.settings.dsn or "",
            [self.pgq.statements.jobs_channel],
            self._on_notify,
            self._wake.set,
        )
        services: list[asyncio.Task[Any]] = []
        try:
            async with self.pgq.acquire() as conn:
                await self.register(conn)
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
                ", ".join(sorted(self.pgq.tasks)) or "none",
            )
            self._started.set()
            await self._claim_loop()
            await self._finish_running()
            await self._write_outcomes()
            await self._completer.close()
            await self._reporter.flush()
        finally:
            for service in services:
                service.cancel()
            await asyncio.gather(*services, return_exceptions=True)
            await listener.stop()
            await self._unregister()
            self._threads.shutdown(wait=False, cancel_futures=True)
            if opened_here:
                await self.pgq.close()
            logger.info("worker %s: stopped", self.id)

    def _service_coroutines(self) -> list[tuple[str, Any]]:
        assert self._completer is not None
        coroutines = [
            ("completer", self._completer.run()),
            ("reporter", self._reporter.run()),
            ("heartbeat", Heartbeat(self).run()),
            ("rescuer", Rescuer(self.pgq).run()),
            ("scheduler", Scheduler(self.pgq).run()),
            ("pruner", Pruner(self.pgq).run()),
        ]
        if self.pgq.settings.vacuum_interval:
            coroutines.append(("vacuumer", Vacuumer(self.pgq).run()))
        for periodic in self.pgq.periodic_tasks:
            if self.queues is None or periodic.task.queue in self.queues:
                coroutines.append((f"periodic-{periodic.task.name}",
                                   PeriodicEnqueuer(self.pgq, periodic).run()))
        return coroutines

    async def register(self, conn: asyncpg.Connection) -> None:
        self.id = await conn.fetchval(
            self.pgq.statements.register_worker,
            socket.gethostname(),
            os.getpid(),
            self.queues,
            self.concurrency,
        )

    async def _unregister(self) -> None:
        if self.id is None:
            return
        try:
            async with self.pgq.acquire() as conn:
                await conn.execute(self.pgq.statements.unregister_worker, self.id)
        except CONNECTION_ERRORS:
            logger.warning("worker %s: could not unregister; it will be forgotten after %s s",
                           self.id, self.pgq.settings.rescue_after)

    # -- notifications ---------------------------------------------------------------------------

    def _on_notify(self, _channel: str, payload: str) -> None:
        kind, _, value = payload.partition(":")
        if kind == "queued":
            if self.queues is None or value in self.queues:
                assert self._wake is not None
                self._wake.set()
        elif kind == "cancel":
            self.cancel_running(int(value))

    def running_ids(self) -> list[int]:
        return list(self._running)

    def cancel_running(self, job_id: int) -> None:
        running = self._running.get(job_id)
        if running is None and job_id in self._held:
            self._cancelled_ahead.add(job_id)  # claimed ahead and not started: never start it
        if running is not None and running.stop_reason is None:
            logger.info("job %s %s: cancelled while running; stopping it", job_id, running.job.task)
            running.stop_reason = "cancelled"
            running.ctx._cancel()
            running.task.cancel()

    # -- claiming --------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._stopping and self._wake and self._slot_freed and self._loop
        backoff = Backoff()
        # Claim in batches under load: wait for a quarter of the slots rather than claiming
        # one job per round trip as each finishes.
        batch_floor = max(1, self.concurrency // 4)
        # The claim runs on a connection of its own (no pool round trip on the hot path) with its
        # generic plan: planning it anew per call costs more than running it. A generic plan is
        # made once, so seq scans are ruled out lest a plan made on an empty table outlive it.
        claims = DedicatedConnection(
            self.pgq.settings.dsn or "", plan_cache_mode="force_generic_plan", enable_seqscan="off"
        )
        statement = (
            self.pgq.statements.claim_from_queues
            if self.queues
            else self.pgq.statements.claim_from_all_queues
        )
        limit = self.pgq.settings.claim_batch
        claim_lost = False
        try:
            while not self._stopping.is_set():
                free = self._room()
                if free < batch_floor and self._held:
                    self._slot_freed.clear()
                    await _first(self._slot_freed, self._stopping)
                    continue
                self._wake.clear()
                try:
                    if claim_lost:
                        await self._give_back_lost_claims(claims)
                        claim_lost = False
                    sent = self._loop.time()
                    rows = await claims.fetch(statement, self.queues, min(free, limit), self.id)
                    self._pace.claimed(self._loop.time() - sent)
                except CONNECTION_ERRORS as exc:
                    # The claim may have committed with its answer lost: look before the next one.
                    claim_lost = True
                    self._claim_outage.failed(exc)
                    await _first(self._stopping, timeout=backoff.next_delay())
                    continue
                backoff.reset()
                self._claim_outage.recovered()
                self._ready.extend(rows)
                self._held.update(row["id"] for row in rows)
                self._start_ready()
                if len(rows) == min(free, limit):
                    continue  # there may be more right now
                if self.burst and not rows and not self._running and not self._ready:
                    logger.info("worker %s: nothing left to claim (burst mode)", self.id)
                    self._request_stop()
                    break
                # Fewer rows than asked for: the queue had no more. Wait for news (a notification
                # that came during the claim has set _wake again) rather than asking again at once;
                # the jobs just claimed start meanwhile.
                await _first(self._wake, self._stopping, self._slot_freed if self.burst else None,
                             timeout=self.pgq.settings.poll_interval)
        finally:
            await claims.close()

    async def _give_back_lost_claims(self, claims: DedicatedConnection) -> None:
        rows = await claims.fetch(
            self.pgq.statements.requeue_lost_claims, list(self._held), self.id
        )
        for row in rows:
            logger.warning("job %s %s: its claim was lost with a connection; handed back",
                           row["id"], row["task"])

    def _room(self) -> int:
        """How many jobs to claim now: free slots, plus those to claim ahead (``ClaimPace``).
        Outcomes still waiting to be written hold slots beyond two concurrencies' worth, so a slow
        database pushes back on claiming instead of piling up results in memory."""
        unwritten = len(self._held) - len(self._running) - len(self._ready)
        return (
            self.concurrency
            + self._pace.ahead
            - len(self._running)
            - len(self._ready)
            - max(0, unwritten - 2 * self.concurrency)
        )

    def _start_ready(self) -> None:
        """Start claimed jobs while there are free slots."""
        while self._ready and len(self._running) < self.concurrency:
            row = self._ready.popleft()
            if row["id"] in self._cancelled_ahead:
                self._cancelled_ahead.discard(row["id"])
                self._held.discard(row["id"])
                continue
            self._start(row)

    def _start(self, row: asyncpg.Record) -> None:
        # Unpacked in the claim's column order: cheaper than a lookup per field, paid per job.
        (job_id, task_name, queue, call, priority, attempts, max_attempts, run_at, created_at,
         started_at, unique_key) = row
        args, kwargs = json.loads(call)  # one parse for both
        job = Job(job_id, task_name, queue, JobStatus.RUNNING, args, kwargs, priority, attempts,
                  max_attempts, run_at, created_at, started_at, None, None, None, None, None,
                  unique_key, self.id)
        ctx = JobContext(job, self._reporter)
        task = asyncio.create_task(self._run_job(job, ctx), name=f"pgqueue-job-{job.id}")
        self._running[job.id] = _Running(job, ctx, task)
        self._reporter.started(job.id)
        if self.burst:
            self.ran.append(job.id)

    async def _run_job(self, job: Job, ctx: JobContext) -> None:
        assert self._completer is not None and self._slot_freed is not None
        assert self._loop is not None
        try:
            task = self.pgq.tasks.get(job.task)
            if task is None:
                outcome = unknown_task(job, list(self.pgq.tasks))
            else:
                try:
                    started = self._loop.time()
                    outcome = await execute(task, job, ctx, self._threads)
                    self._pace.job_ran(self._loop.time() - started)
                except asyncio.CancelledError:
                    running = self._running.get(job.id)
                    if running is not None and running.stop_reason == "cancelled":
                        self._held.discard(job.id)
                        return  # the row already says cancelled
                    raise
            self._completer.add(outcome)
        finally:
            self._running.pop(job.id, None)
            if not self._stopping.is_set():
                self._start_ready()
            self._slot_freed.set()

    # -- stopping --------------------------------------------------------------------------------

    async def _finish_running(self) -> None:
        assert self._hurry is not None
        if self._ready:  # claimed ahead, never started: straight back to the queue
            ids = [row["id"] for row in self._ready]
            self._ready.clear()
            await self._requeue(ids)
            self._held.difference_update(ids)
        if not self._running:
            return
        grace = self._grace_left()
        logger.info("worker %s: waiting up to %.0f s for %s running job(s) to finish",
                    self.id, grace, len(self._running))
        await self._unless_hurried(asyncio.wait([r.task for r in self._running.values()]), grace)
        left = list(self._running.values())
        if not left:
            return
        for running in left:
            running.stop_reason = "shutdown"
            running.ctx._cancel()
            running.task.cancel()
        await asyncio.gather(*(running.task for running in left), return_exceptions=True)
        ids = [running.job.id for running in left]
        await self._requeue(ids)
        self._held.difference_update(ids)
        for running in left:
            logger.warning("job %s %s: did not finish within the shutdown grace period; "
                           "handed back to the queue", running.job.id, running.job.task)

    async def _write_outcomes(self) -> None:
        """Wait for the outcomes of finished jobs to be written: up to the rest of the grace
        period (at least a few seconds; a healthy database takes them in milliseconds)."""
        assert self._completer is not None
        await self._unless_hurried(self._completer.drained(), max(self._grace_left(), 5.0))
        unwritten = len(self._held)  # nothing runs or waits to start any more
        if unwritten:
            logger.warning("worker %s: the outcomes of %s finished job(s) were not written before "
                           "stopping; they will be rescued and run again after %s s",
                           self.id, unwritten, self.pgq.settings.rescue_after)

    def _grace_left(self) -> float:
        assert self._loop is not None
        return max(0.0, self._stop_deadline - self._loop.time())

    async def _unless_hurried(self, awaitable: Awaitable[object], timeout: float) -> None:
        """Wait for ``awaitable`` until the timeout or a second stop request, whichever is first."""
        assert self._hurry is not None
        waiting = asyncio.ensure_future(awaitable)
        hurry = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait([waiting, hurry], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        hurry.cancel()

    async def _requeue(self, ids: list[int]) -> None:
        try:
            async with self.pgq.acquire() as conn:
                await conn.fetch(self.pgq.statements.requeue_unfinished, ids, self.id)
        except CONNECTION_ERRORS as exc:
            logger.warning("worker %s: could not hand back %s job(s) (%s); they will be rescued "
                           "after %s s", self.id, len(ids), exc, self.pgq.settings.rescue_after)

    async def _settled(self, outcomes: list[Outcome]) -> None:
        """Outcomes were written: let go of those jobs and call the ``on_failure`` hooks of the
        ones that just failed for good."""
        assert self._slot_freed is not None
        self._slot_freed.set()
        for outcome in outcomes:
            self._held.discard(outcome.job.id)
            if not outcome.recorded or outcome.status is not JobStatus.FAILED:
                continue
            task = self.pgq.tasks.get(outcome.job.task)
            if task is None or task.on_failure is None:
                continue
            outcome.job.status = JobStatus.FAILED
            outcome.job.error = outcome.error
            try:
                result = task.on_failure(outcome.job)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("job %s %s: on_failure hook raised", outcome.job.id, outcome.job.task)


async def _first(*events: asyncio.Event | None, timeout: float | None = None) -> None:
    """Wait until any of the events is set, or the timeout passes."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events if event is not None]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
