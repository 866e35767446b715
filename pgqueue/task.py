"""Tasks: plain typed functions that pgqueue can run later.

A ``Task`` wraps the user's function. Calling it runs the function in-process; ``enqueue`` writes a
job row instead (``enqueue.py``), its arguments checked and encoded first (``arguments.py``).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .arguments import Arguments, EncodedCall
from .backend import Backend
from .enqueue import NO_OPTIONS, EnqueueOptions, Enqueuer
from .job import Job

RetryDelay = float | Callable[[int], float]
OnFailure = Callable[[Job], Any]
"""Called with the job once it has failed for good; sync or async."""


def exponential_backoff(attempt: int) -> float:
    """The default retry delay: 2, 4, 8 … seconds after attempts 1, 2, 3 …, capped at one hour,
    each scaled by a random factor in [0.5, 1] so that a burst of failures does not retry in step."""
    return min(3600.0, 2.0**attempt) * random.uniform(0.5, 1.0)


class Task:
    """A function registered with a ``PgQueue``; see ``PgQueue.task``."""

    def __init__(
        self,
        backend: Backend,
        fn: Callable[..., Any] | None,
        *,
        name: str,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        timeout: float | None = None,
        retry_delay: RetryDelay | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"task {name}: max_attempts must be at least 1")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"task {name}: timeout must be a positive number of seconds")
        self.backend = backend
        self.fn = fn
        self.name = name
        self.queue = queue
        self.priority = priority
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.retry_delay = exponential_backoff if retry_delay is None else retry_delay
        self.on_failure = on_failure
        self.is_async = fn is not None and inspect.iscoroutinefunction(fn)
        self.arguments = Arguments(name, fn, backend.settings.max_payload_bytes)
        if fn is not None:
            self.__doc__ = fn.__doc__
            self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, as a plain call."""
        if self.fn is None:
            raise TypeError(f"task {self.name} is not defined in this process; enqueue it instead")
        return self.fn(*args, **kwargs)

    def encode(self, args: Sequence[Any], kwargs: dict[str, Any]) -> EncodedCall:
        """Check a call against the signature and encode its arguments (nothing is written)."""
        return self.arguments.encode(args, kwargs)

    def using(self, conn: Any = None, **options: Any) -> Enqueuer:
        """Enqueue through ``conn`` (in its transaction) and/or with per-job options:
        ``delay``, ``run_at``, ``priority``, ``queue``, ``max_attempts``, ``unique_key``,
        ``group``, and ``after`` (jobs or ids this one waits for)."""
        try:
            opts = EnqueueOptions(**options) if options else NO_OPTIONS
        except TypeError:
            unknown = sorted(set(options) - set(EnqueueOptions.__dataclass_fields__))
            if not unknown:
                raise  # a known option with a bad value: its own message says which
            raise TypeError(
                f"task {self.name}: unknown enqueue option(s) {', '.join(unknown)}; "
                f"known: {', '.join(EnqueueOptions.__dataclass_fields__)}"
            ) from None
        return Enqueuer(self, conn, opts)

    async def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Write one job in its own short transaction."""
        return await Enqueuer(self, None, NO_OPTIONS).enqueue(*args, **kwargs)

    async def enqueue_many(self, calls: Iterable[Any]) -> list[Job]:
        """Write many jobs in one statement; see ``Enqueuer.enqueue_many``."""
        return await Enqueuer(self, None, NO_OPTIONS).enqueue_many(calls)

    def delay_before_retry(self, attempt: int) -> float:
        delay = self.retry_delay(attempt) if callable(self.retry_delay) else self.retry_delay
        return max(0.0, float(delay))
