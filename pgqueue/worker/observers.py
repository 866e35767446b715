"""What the worker tells observers (metrics, traces) about each run of a job.

An observer is entered around a run and told its outcome. The worker keeps a list of them and
takes its plain path when the list is empty, so without metrics or traces nothing is measured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Protocol

from ..job import Job
from .executor import Outcome

Told = Callable[[Outcome], None]
"""Given the run's outcome once it is known (not called for a run that was cancelled)."""


class RunObserver(Protocol):
    def run(self, job: Job) -> AbstractAsyncContextManager[Told]:
        """Entered just before ``job`` runs, left once it has finished or was cancelled."""
        ...


async def observed(
    observers: Sequence[RunObserver], job: Job, run: Callable[[], Awaitable[Outcome | None]]
) -> Outcome | None:
    """``run()`` inside every observer; each is told the outcome (None: cancelled, not told)."""
    async with AsyncExitStack() as stack:
        told = [await stack.enter_async_context(observer.run(job)) for observer in observers]
        outcome = await run()
        if outcome is not None:
            for tell in told:
                tell(outcome)
        return outcome
