"""Write the outcomes of finished jobs in batches: one statement for many jobs.

A finished job frees its slot at once; its outcome waits here while the previous batch is being
written, and goes with the next. If the database is away the outcomes stay here and are written
when it is back; a job that another worker rescued meanwhile is left alone by the statement's
guard. The writer owns the worker's status events: "running" when a job starts, then its outcome
once the batch commits. Outcomes go out at once after a quiet spell, else gathered over
``ANNOUNCE_EVERY`` so that under load one NOTIFY transaction serves many batches; starts go out
with the next outcomes, or ``ANNOUNCE_EVERY`` after the job started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from ..backend import Backend
from ..database import CONNECTION_ERRORS, Backoff
from ..messages import status_messages
from .executor import Outcome
from .outage import OutageLog
from .reporter import Reporter
from .waiting import first_of

logger = logging.getLogger("pgqueue.worker")

MAX_BATCH = 250  # outcomes per statement: a bounded statement, and a long outage's backlog in steps
# Status events go out at once after a quiet spell, else at most this often (seconds): under load
# one NOTIFY transaction serves many batches instead of one each.
ANNOUNCE_EVERY = 0.02


class OutcomeWriter:
    def __init__(
        self,
        backend: Backend,
        reporter: Reporter,
        on_written: Callable[[list[Outcome]], Awaitable[None]],
        wake_here: Callable[[], None] = lambda: None,
    ) -> None:
        self._backend = backend
        self._on_written = on_written
        # This worker's own claim loop hears of a freed limited slot or a job back in its queue at
        # once; the others by the NOTIFY, which waits up to ANNOUNCE_EVERY to be gathered.
        self._wake_here = wake_here
        self._reporter = reporter
        self._pending: list[Outcome] = []
        self._has_work = asyncio.Event()
        self._has_news = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._outage = OutageLog(logger, "writing job outcomes")
        self._changes: list[tuple[int, str]] = []  # status changes not announced yet, in order
        self._wake: set[str] = set()  # queues that got a job back to run now, not announced yet
        self._announcing = asyncio.Lock()
        self._announced_at = -ANNOUNCE_EVERY
        self._start_news: asyncio.TimerHandle | None = None  # when held starts fall due
        # One generic plan, made once: planning this statement per call cost more than running
        # it. Without seq scans and nested loops that plan is the same on an empty table and a
        # huge one: the primary key finds the batch's rows, a hash join pairs them with their
        # outcomes (a nested loop would re-read the outcome arrays once per row).
        self._conn = backend.dedicated_connection(
            plan_cache_mode="force_generic_plan",
            enable_seqscan="off",
            enable_nestloop="off",
        )

    def started(self, job_id: int) -> None:
        """Announce that the job is running (after the claim commits: see
        ``Statements.announce``), within ``ANNOUNCE_EVERY``.

        Not at once: a NOTIFY sent as the job starts competes with it for the database and the
        CPU, and a short job's start then goes out with its outcome, in one NOTIFY instead of two.
        """
        self._changes.append((job_id, "running"))
        if self._start_news is None:
            self._start_news = asyncio.get_running_loop().call_later(
                ANNOUNCE_EVERY, self._starts_due)

    def _starts_due(self) -> None:
        self._start_news = None
        self._has_news.set()

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._idle.clear()
        self._has_work.set()

    async def drained(self) -> None:
        """Wait until every outcome added so far is written."""
        await self._idle.wait()

    async def close(self) -> None:
        """Announce what is left (when every outcome was written), then let go of the connection."""
        if self._start_news is not None:
            self._start_news.cancel()
        if self._idle.is_set():
            await self._announce()
        await self._conn.close()

    async def run(self) -> None:
        """Flush until cancelled; cancel only after ``drained()``.

        No timer: outcomes that finish while a write is under way go together in the next one,
        so batches grow with the load by themselves, and a lone job is written at once.
        """
        while True:
            await self._next_work()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._write(batch)
            if not self._pending:
                self._idle.set()

    async def _next_work(self) -> None:
        """Wait for outcomes to write, announcing held-back events when they fall due."""
        while not self._has_work.is_set():
            if not self._changes and not self._wake:
                self._has_news.clear()
                await first_of(self._has_work, self._has_news)
                continue
            due_in = self._announced_at + ANNOUNCE_EVERY - asyncio.get_running_loop().time()
            if due_in <= 0:
                await self._announce()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due_in):
                    await self._has_work.wait()
        self._has_work.clear()

    async def _announce(self) -> None:
        async with self._announcing:
            changes, self._changes = self._changes, []
            queues, self._wake = sorted(self._wake), set()
            if not changes and not queues:
                return
            self._announced_at = asyncio.get_running_loop().time()
            try:
                await self._conn.fetch(self._backend.statements.announce,
                                       status_messages(changes), queues)
            except CONNECTION_ERRORS as exc:
                # Watchers re-read on reconnect and workers poll: a missed hint delays, loses
                # nothing.
                self._outage.failed(exc)

    async def _write(self, batch: list[Outcome]) -> None:
        await self._reporter.flush()
        rows = [outcome.row for outcome in batch]
        columns = [list(column) for column in zip(*rows, strict=True)]
        backoff = Backoff()
        while True:
            try:
                written = (await self._conn.fetch(self._backend.statements.write_outcomes,
                                                  *columns))[0]
                break
            except CONNECTION_ERRORS as exc:
                self._outage.failed(exc)
                await asyncio.sleep(backoff.next_delay())
            except asyncpg.PostgresError:
                # Not an outage, so a bug; the outcomes are kept and retried rather than lost.
                logger.exception("could not write %s job outcome(s); retrying", len(batch))
                await asyncio.sleep(backoff.next_delay())
        self._outage.recovered()
        if written["ids"] is not None:
            self._changes += zip(written["ids"], written["statuses"], strict=True)
            self._wake.update(written["queues"] or ())
        if asyncio.get_running_loop().time() >= self._announced_at + ANNOUNCE_EVERY:
            await self._announce()
        written_ids = set(written["ids"] or ())
        for outcome in batch:
            outcome.recorded = outcome.job.id in written_ids
            if not outcome.recorded and outcome.completed_in:
                logger.debug("job %s %s: completed in the task's own transaction", outcome.job.id,
                             outcome.job.task)
            elif not outcome.recorded:
                logger.info(
                    "job %s %s: outcome %s not recorded: the job was cancelled or rescued meanwhile",
                    outcome.job.id, outcome.job.task, outcome.status,
                )
        await self._on_written(batch)
        if written["queues"]:
            self._wake_here()  # after the slots are let go: the claim counts them free
