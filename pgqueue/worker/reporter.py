"""Progress, log lines and "running" events from tasks, coalesced and written a few times a second.

Tasks may report as often as they like: only the latest progress of each job and the log lines
gathered since the last write go to the database, in two statements per interval. Sync tasks report
from their threads, hence the lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import asyncpg

from ..database import CONNECTION_ERRORS
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
            await self._write()

    async def _write(self) -> None:
        with self._lock:
            progress, self._progress = self._progress, {}
            logs, self._logs = self._logs, []
            started, self._started = self._started, []
        if not progress and not logs and not started:
            return
        try:
            async with self._pgq.acquire() as conn:
                for chunk in range(0, len(started), 300):  # NOTIFY payloads stay under 8000 bytes
                    event = {"kind": "status",
                             "jobs": [[job_id, "running"] for job_id in started[chunk:chunk + 300]]}
                    await conn.execute(self._pgq.statements.announce, json.dumps(event), [])
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
