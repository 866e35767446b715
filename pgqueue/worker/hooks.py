"""``on_failure`` hooks: called once a job has failed for good, away from the worker's hot paths.

Jobs fail for good when a run raises with no attempts left, when the rescuer finds their worker
dead with no attempts left, and when no worker defines their task; each calls the task's hook (if
this worker defines the task) and then the ``PgQueue``'s own. Each call runs in an asyncio task of
its own (a sync hook in a thread), so a slow or raising hook never delays the writing of outcomes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..job import Job
from ..task import OnFailure, Task
from .threads import SyncRunner

logger = logging.getLogger("pgqueue.worker")


class FailureHooks:
    def __init__(self, tasks: Mapping[str, Task], on_failure: OnFailure | None) -> None:
        self._tasks = tasks
        self._on_failure = on_failure
        self._threads = SyncRunner("pgqueue-hook")
        self._running: set[asyncio.Task[None]] = set()

    def failed(self, job: Job) -> None:
        """``job`` failed for good: call its hooks in the background."""
        task = self._tasks.get(job.task)
        hooks = [hook for hook in (task.on_failure if task else None, self._on_failure) if hook]
        for hook in hooks:
            call = asyncio.create_task(self._call(hook, job), name=f"pgqueue-on-failure-{job.id}")
            self._running.add(call)
            call.add_done_callback(self._running.discard)

    async def finish(self, timeout: float) -> None:
        """Give running hooks up to ``timeout`` seconds, then stop waiting for them."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=timeout)
        self._threads.close()

    async def _call(self, hook: Callable[[Job], Any], job: Job) -> None:
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(job)
            else:
                result = await self._threads.run(hook, (job,))
                if inspect.isawaitable(result):
                    await result
        except Exception:
            logger.exception("job %s %s: on_failure hook raised", job.id, job.task)
