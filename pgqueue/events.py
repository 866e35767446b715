"""Job events (status changes, progress, log lines) for everyone in this process who watches.

One LISTEN connection per ``PgQueue`` feeds every watcher (``pgq.wait``, each dashboard client), so
a hundred open dashboards cost one connection, not a hundred.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .listener import Listener
from .messages import RESYNC, Event, read_events

logger = logging.getLogger("pgqueue.events")

_QUEUE_SIZE = 1000


class EventHub:
    def __init__(self, dsn: str, channel: str, statement_cache_size: int = 100) -> None:
        self._dsn = dsn  # the listen DSN: LISTEN cannot pass a transaction pooler
        self._channel = channel
        self._cache_size = statement_cache_size
        self._watchers: dict[int | None, set[asyncio.Queue[Event]]] = {}
        self._listener: Listener | None = None

    async def _start(self) -> None:
        if self._listener is None:
            self._listener = Listener(self._dsn, [self._channel], self._on_notify,
                                      self._on_connected, self._cache_size)
            self._listener.start()
        try:
            await asyncio.wait_for(self._listener.connected.wait(), timeout=10)
        except TimeoutError:
            logger.warning("job events are not connected yet; watchers will catch up on reconnect")

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None

    @asynccontextmanager
    async def watch(self, job_id: int | None = None) -> AsyncIterator[asyncio.Queue[Event]]:
        """Events about one job (or all jobs, with ``None``) while the block runs."""
        queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE_SIZE)
        self._watchers.setdefault(job_id, set()).add(queue)
        try:
            await self._start()
            yield queue
        finally:
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[job_id]

    def _publish(self, job_id: int | None, event: Event) -> None:
        for key in (job_id, None) if job_id is not None else (None,):
            for queue in self._watchers.get(key, ()):
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    # A watcher that stopped reading gets a resync instead of everything it missed.
                    queue.get_nowait()
                    queue.put_nowait(dict(RESYNC))

    def _on_connected(self) -> None:
        for queues in list(self._watchers.values()):
            for queue in queues:
                if not queue.full():
                    queue.put_nowait(dict(RESYNC))

    def _on_notify(self, _channel: str, payload: str) -> None:
        for event in read_events(payload):
            self._publish(event["id"], event)
