"""``Backend``: the settings, the statements and the connection pool, and nothing else.

It is what tasks and the worker's parts are given, the way River's services get a config and a
driver and never the client: they can reach the database, but not each other, nor the ``PgQueue``
that owns them.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from .database import DedicatedConnection, check_dsn, create_pool, server_address
from .errors import NotOpenError
from .migrate import check_revision
from .settings import Settings
from .sql import Statements

logger = logging.getLogger("pgqueue")


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.statements = Statements(settings.schema)
        self._pool: asyncpg.Pool | None = None
        self.enqueue_hook: Any = None
        """Told of every enqueue's jobs (``enqueue.EnqueueHook``): ``pgqueue.testing.inline``."""

    @property
    def dsn(self) -> str:
        """The configured DSN, or a ``ConfigurationError`` saying what to set."""
        return check_dsn(self.settings.dsn)

    @property
    def listen_dsn(self) -> str:
        """Where LISTEN connections go: ``listen_dsn``, else the DSN (a pooler cannot LISTEN)."""
        return check_dsn(self.settings.listen_dsn or self.settings.dsn)

    def dedicated_connection(self, **plan_settings: str) -> DedicatedConnection:
        """A connection of its own for one hot path, opened as the settings say."""
        return DedicatedConnection(self.dsn, self.settings.statement_cache_size, **plan_settings)

    async def open(self) -> None:
        """Open the pool and check the schema is there and current."""
        if self._pool is not None:
            return
        pool = await create_pool(
            self.dsn, self.settings.pool_min_size, self.settings.pool_max_size,
            self.settings.statement_cache_size,
        )
        try:
            async with pool.acquire() as conn:
                await self._check_schema(conn)
                logger.debug("pool connected to %s", server_address(conn))
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotOpenError(
                "the PgQueue is not open: use `async with pgq:` or `await pgq.open()` first"
            )
        return self._pool

    def acquire(self) -> Any:
        """A pooled connection: ``async with backend.acquire() as conn``."""
        return self.pool.acquire()

    async def _check_schema(self, conn: asyncpg.Connection) -> None:
        schema = self.settings.schema
        has_table = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f"{schema}.alembic_version"
        )
        version = await conn.fetchval(self.statements.schema_version) if has_table else None
        check_revision(schema, has_table, version)
