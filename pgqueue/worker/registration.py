"""The worker's row in ``<schema>.workers``: its id, and whether it is still there."""

from __future__ import annotations

import logging
import os
import socket

import asyncpg

from ..backend import Backend
from ..database import CONNECTION_ERRORS

logger = logging.getLogger("pgqueue.worker")


class Registration:
    def __init__(self, backend: Backend, queues: list[str] | None, concurrency: int) -> None:
        self._backend = backend
        self._queues = queues
        self._concurrency = concurrency
        self.id: int | None = None
        """The worker's id; it changes if the worker was declared dead and registers again."""

    async def register(self, conn: asyncpg.Connection) -> None:
        self.id = await conn.fetchval(
            self._backend.statements.register_worker,
            socket.gethostname(),
            os.getpid(),
            self._queues,
            self._concurrency,
        )

    async def unregister(self) -> None:
        if self.id is None:
            return
        try:
            async with self._backend.acquire() as conn:
                await conn.execute(self._backend.statements.unregister_worker, self.id)
        except CONNECTION_ERRORS:
            logger.warning("worker %s: could not unregister; it will be forgotten after %s s",
                           self.id, self._backend.settings.rescue_after)
