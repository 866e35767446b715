"""Progress and log lines from tasks, coalesced and written a few times a second.

Tasks may report as often as they like: only the latest progress of each job and the log lines
gathered since the last write go to the database, in two statements per interval. Sync tasks report
from their threads, hence the lock. Status changes are not announced here: the ``OutcomeWriter``
owns those.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import asyncpg

from ..backend import Backend
from ..database import CONNECTION_ERRORS
from .outage import OutageLog

logger = logging.getLogger("pgqueue.worker")


class Reporter:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._progress: dict[int, tuple[float, str | None]] = {}
        self._logs: list[tuple[int, str]] = []
        self._outage = OutageLog(logger, "writing progress")
        self._writing = asyncio.Lock()  # one write at a time keeps log lines in order

    def progress(self, job_id: int, percent: float, message: str | None) -> None:
        with self._lock:
            self._progress[job_id] = (percent, _storable(message))

    def log(self, job_id: int, message: str) -> None:
        with self._lock:
            self._logs.append((job_id, _storable(message)))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._backend.settings.progress_interval)
            await self.flush()

    async def flush(self) -> None:
        """Write what was reported so far (waiting for a write already under way): the outcome
        writer calls it first, so that a task's last words go out before its final status."""
        async with self._writing:
            await self._write()

    async def _write(self) -> None:
        with self._lock:
            progress, self._progress = self._progress, {}
            logs, self._logs = self._logs, []
        if not progress and not logs:
            return
        statements = self._backend.statements
        try:
            async with self._backend.acquire() as conn:
                if progress:
                    ids = list(progress)
                    await conn.execute(
                        statements.record_progress,
                        ids,
                        [progress[i][0] for i in ids],
                        [progress[i][1] for i in ids],
                    )
                if logs:
                    await conn.execute(
                        statements.record_logs,
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


def _storable(message: str | None) -> str | None:
    """PostgreSQL text cannot hold U+0000; such a character is shown escaped instead."""
    return None if message is None else message.replace("\x00", "\\x00")
