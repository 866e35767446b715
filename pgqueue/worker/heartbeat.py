"""The heartbeat: proves the worker alive, registers it again if it was declared dead, and catches
cancellations whose notification was missed."""

from __future__ import annotations

import logging

from ..backend import Backend
from .maintenance import Service
from .registration import Registration
from .slots import Slots

logger = logging.getLogger("pgqueue.worker")


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(self, backend: Backend, registration: Registration, slots: Slots) -> None:
        super().__init__(backend)
        self._registration = registration
        self._slots = slots

    def interval(self) -> float:
        return self.backend.settings.heartbeat_interval

    async def tick(self) -> None:
        statements = self.backend.statements
        async with self.backend.acquire() as conn:
            alive = await conn.fetchval(statements.heartbeat, self._registration.id)
            if alive is None:
                old = self._registration.id
                await self._registration.register(conn)
                logger.warning(
                    "worker %s was declared dead (no heartbeat for %s s) and its jobs were given "
                    "to others; carrying on as worker %s",
                    old, self.backend.settings.rescue_after, self._registration.id,
                )
            running = list(self._slots.running)
            if running:
                for row in await conn.fetch(statements.cancelled_among, running):
                    self._slots.cancel(row["id"])
