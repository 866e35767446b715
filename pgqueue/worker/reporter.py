"""Progress, log lines and "running" events from tasks, coalesced and written a few times a second.

Tasks may report as often as they like: only the latest progress of each job and the log lines
gathered since the last write go to the database, in two statements per interval. Sync tasks report
from their threads, hence the lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import asyncpg

from ..database import CONNECTION_ERRORS
from ..events import status_events
from ..queue import PgQueue
from .outage import OutageLog

logger = logging.getLogger("pgqueue.worker")


class Reporter:
    def __init__(self, pgq: PgQueue) -> None:
        self._pgq = pgq
        self._lock = threading.Lock()
        self._progress: dict[int, tuple[float, str | None]] = {}
        self._logs: list[tuple[int, str]] = []
        self._started: list[int] = []
        self._outage = OutageLog(logger, "writing progress")
        self._writing = asyncio.Lock()  # one write at a time keeps log lines in order

    def progress(self, job_id: int, percent: float, message: str | None) -> None:
        with self._lock:
            self._progress[job_id] = (percent, message)

    def started(self, job_id: int) -> None:
        """Announce that the job is running (outside the claim's transaction: see
        ``Statements.announce``)."""
        self._started.append(job_id)

    def log(self, job_id: int, message: str) -> None:
        with self._lock:
            self._logs.append((job_id, message))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._pgq.settings.progress_interval)
            await self.flush()

    async def flush(self) -> None:
        """Write what was reported so far (waiting for a write already under way)."""
        async with self._writing:
            await self._write(self._take_started())

    async def flush_ahead_of_outcomes(self) -> list[int]:
        """Write the progress and log lines reported so far, so that a task's last words go out
        before its final status; return the jobs started since the last write, for the caller to
        announce with the outcomes it is about to write (one NOTIFY transaction, not two)."""
        async with self._writing:
            started = self._take_started()
            await self._write([])
            return started

    def _take_started(self) -> list[int]:
        started, self._started = self._started, []
        return started

    async def _write(self, started: list[int]) -> None:
        with self._lock:
            progress, self._progress = self._progress, {}
            logs, self._logs = self._logs, []
        if not progress and not logs and not started:
            return
        try:
            async with self._pgq.acquire() as conn:
                if started:
                    events = status_events([(job_id, "running") for job_id in started])
                    await conn.execute(self._pgq.statements.announce, events, [])
                if progress:
                    ids = list(progress)
                    await conn.execute(
                        self._pgq.statements.record_progress,
                        ids,
                        [progress[i][0] for i in ids],
                        [progress[i][1] for i in ids],
                    )
                if logs:
                    await conn.execute(
                        self._pgq.statements.record_logs,
                        [job_id for job_id, _ in logs],
                        [message for _, message in logs],
                    )
        except CONNECTION_ERRORS as exc:
            # Progress is advisory: keep the lines for the next try, drop superseded progress.
            self._outage.failed(exc)
            with self._lock:
                self._logs[:0] = logs
                for job_id, value in progress.items():
                    self._progress.setdefault(job_id, value)
            return
        except asyncpg.PostgresError:
            logger.exception("could not write progress and log lines; dropped them")
            return
        self._outage.recovered()
