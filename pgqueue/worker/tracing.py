"""The worker's side of traces: a CONSUMER span around each run (see ``pgqueue.tracing``).

Only built when OpenTelemetry is configured (a tracer provider set) as the worker is built.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..backend import Backend
from ..database import CONNECTION_ERRORS
from ..job import Job
from ..tracing import consuming
from .observers import Told

logger = logging.getLogger("pgqueue.worker")


class RunTracing:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @asynccontextmanager
    async def run(self, job: Job) -> AsyncIterator[Told]:
        try:
            async with self._backend.acquire() as conn:
                stored = await conn.fetchval(self._backend.statements.trace_context, job.id)
        except CONNECTION_ERRORS as exc:  # a span without its link rather than no run
            logger.warning("job %s %s: could not read its trace context: %s", job.id, job.task, exc)
            stored = None
        with consuming(job, stored) as record:
            yield lambda outcome: record(outcome.status, outcome.error)
