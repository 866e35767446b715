"""Periodic tasks: enqueued on a cron schedule by whichever worker gets to each slot first."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from ..backend import Backend
from ..task import Task
from .maintenance import Service

logger = logging.getLogger("pgqueue.worker")


@dataclass(frozen=True, slots=True)
class Periodic:
    """A task enqueued on a cron schedule, with these arguments."""

    task: Task
    cron: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __post_init__(self) -> None:
        self.check_cron(self.cron)
        self.task.encode(self.args, self.kwargs)  # a bad call fails at registration

    @staticmethod
    def check_cron(cron: str) -> None:
        if not croniter.is_valid(cron):
            raise ValueError(f"invalid cron expression {cron!r}")


class PeriodicEnqueuer(Service):
    """Enqueues one periodic task on its cron schedule; the slot is taken in the same transaction
    as the enqueue, so each slot runs once across all workers and none is lost to a crash."""

    def __init__(self, backend: Backend, periodic: Periodic) -> None:
        self.name = f"periodic {periodic.task.name}"
        super().__init__(backend)
        self.periodic = periodic

    def interval(self) -> float:
        return self.backend.settings.poll_interval

    async def tick(self) -> float:
        now = datetime.now(UTC)
        task = self.periodic.task
        slot: datetime = croniter(self.periodic.cron, now).get_prev(datetime)
        async with self.backend.acquire() as conn:
            async with conn.transaction():
                first = await conn.fetchval(self.backend.statements.claim_periodic, task.name, slot)
                if first is False:
                    slot_key = f"{task.name}@{slot.isoformat()}"
                    job = await task.using(conn, unique_key=slot_key).enqueue(
                        *self.periodic.args, **self.periodic.kwargs
                    )
                    logger.info("job %s %s: enqueued for the periodic slot %s", job.id, job.task,
                                slot.isoformat())
        upcoming: datetime = croniter(self.periodic.cron, now).get_next(datetime)
        return max(0.01, (upcoming - datetime.now(UTC)).total_seconds())
