"""The JSON API of queues: their counts, pausing, and their limits (for every worker at once)."""

from __future__ import annotations

from fastapi import APIRouter

from ..queue import PgQueue
from .params import QueueName
from .schemas import QueueLimitsIn, QueueLimitsOut, QueueOut


def add_queue_routes(router: APIRouter, pgq: PgQueue) -> None:
    async def _queue(name: str) -> QueueOut:
        for queue in await pgq.queues():
            if queue.name == name:
                return QueueOut.of(queue)
        return QueueOut(name=name, paused=False, counts={},
                        limits=QueueLimitsOut(**await pgq.queue_limits(name)), held_back=0)

    @router.get("/queues", response_model=list[QueueOut], summary="Queues, with counts and limits")
    async def list_queues() -> list[QueueOut]:
        """Every queue that has jobs, is paused or has limits."""
        return [QueueOut.of(queue) for queue in await pgq.queues()]

    @router.post("/queues/{name}/pause", response_model=QueueOut, summary="Pause a queue")
    async def pause_queue(name: QueueName) -> QueueOut:
        """Workers stop claiming jobs of this queue; running jobs carry on. A queue may be paused
        before it has any jobs."""
        await pgq.pause_queue(name)
        return await _queue(name)

    @router.post("/queues/{name}/resume", response_model=QueueOut, summary="Resume a queue")
    async def resume_queue(name: QueueName) -> QueueOut:
        await pgq.resume_queue(name)
        return await _queue(name)

    @router.get("/queues/{name}/limits", response_model=QueueLimitsOut,
                summary="A queue's limits")
    async def queue_limits(name: QueueName) -> QueueLimitsOut:
        """Every value is null for a queue without limits."""
        return QueueLimitsOut(**await pgq.queue_limits(name))

    @router.put("/queues/{name}/limits", response_model=QueueOut, summary="Change a queue's limits")
    async def configure_queue(name: QueueName, limits: QueueLimitsIn) -> QueueOut:
        """Only the limits in the body change (`null` removes one); every worker applies them
        from its next claim. For example `{"concurrency": 5}` or `{"rate": 100, "period": 60}`."""
        await pgq.configure_queue(name, **limits.model_dump(exclude_unset=True))
        return await _queue(name)
