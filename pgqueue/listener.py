"""A LISTEN connection that survives the database going away.

Notifications are only a wake-up: whoever listens must be correct without them, so after every
(re)connect ``on_connected`` runs and the owner re-checks what it might have missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from .database import CONNECTION_ERRORS, Backoff, connect, describe, note_server
from .errors import DatabaseUnavailable

logger = logging.getLogger("pgqueue.listener")

OnNotify = Callable[[str, str], None]
"""Called with (channel, payload) for each notification, on the event loop."""

HEALTH_CHECK_INTERVAL = 5.0


class Listener:
    """Keeps one connection LISTENing on ``channels`` until ``stop()``."""

    def __init__(
        self,
        dsn: str,
        channels: list[str],
        on_notify: OnNotify,
        on_connected: Callable[[], Awaitable[None] | None] | None = None,
        statement_cache_size: int = 100,
    ) -> None:
        self.dsn = dsn
        self.statement_cache_size = statement_cache_size
        self.channels = channels
        self.on_notify = on_notify
        self.on_connected = on_connected
        self.connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pgqueue-listener")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        try:
            self.on_notify(channel, payload)
        except Exception:
            logger.exception("notification handler failed for %s %r", channel, payload)

    async def _run(self) -> None:
        backoff = Backoff()
        outage = False
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.dsn, statement_cache_size=self.statement_cache_size)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self.channels:
                    await conn.add_listener(channel, self._dispatch)
                address = note_server(self.dsn, conn, "listening connection")
                if outage:
                    logger.warning("listening again on %s", address)
                outage = False
                backoff.reset()
                self.connected.set()
                if self.on_connected is not None:
                    result = self.on_connected()
                    if result is not None:
                        await result
                await self._watch(conn, lost)
            except (DatabaseUnavailable, *CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                if not outage and not self._stopping.is_set():
                    logger.warning(
                        "lost the listening connection to %s (%s); reconnecting with backoff",
                        describe(self.dsn),
                        str(exc).strip() or type(exc).__name__,
                    )
                outage = True
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    try:
                        await asyncio.wait_for(conn.close(), timeout=2)
                    except Exception:
                        conn.terminate()
            if not self._stopping.is_set():
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff.next_delay())
                except TimeoutError:
                    pass

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when stopping; raise when the connection is gone (checked by a ping too, as a
        silently dropped TCP connection never closes by itself)."""
        while not self._stopping.is_set():
            waiters = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(self._stopping.wait())]
            await asyncio.wait(waiters, timeout=HEALTH_CHECK_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if self._stopping.is_set():
                return
            if lost.is_set():
                raise ConnectionResetError("the server closed the connection")
            await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=HEALTH_CHECK_INTERVAL)
