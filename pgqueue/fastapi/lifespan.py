"""Tie a ``PgQueue``'s connection pool (and, if wanted, a worker) to a FastAPI app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from ..queue import PgQueue


def lifespan(
    pgq: PgQueue, *, worker: bool = False, **worker_options: Any
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """``FastAPI(lifespan=lifespan(pgq))``: the pool opens at startup and closes at shutdown.

    With ``worker=True`` a worker runs in the app's process for its whole life, given
    ``worker_options`` (``queues``, ``concurrency``, …, as ``pgq.worker``); at shutdown it stops
    gracefully before the pool closes. Handy for small deployments, demos and tests; larger ones
    run ``python -m pgqueue.worker`` separately.

    A pool that was already open when the app started is left open at shutdown. To combine with
    a lifespan of your own, enter it there: ``async with lifespan(pgq)(app): yield``.
    """

    @asynccontextmanager
    async def run(_app: Any) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if not pgq.is_open:
                await pgq.open()
                stack.push_async_callback(pgq.close)
            if worker:
                await stack.enter_async_context(pgq.worker(**worker_options))
            yield

    return run
