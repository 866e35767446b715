"""Opening connections: the asyncpg pool, single connections, and errors a person can act on.

Every connection is opened with ``_connect_kwargs``, so a DSN's libpq parameters mean the same
everywhere (see ``pgqueue.dsn``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

from .dsn import check_dsn, describe, parse
from .errors import ConfigurationError, DatabaseUnavailable

CONNECT_TIMEOUT = 10.0
# pgqueue's statements are short index lookups. JIT compilation only ever makes them slower, and
# bitmap scans, unlike plain index scans, never mark the index entries of dead rows as dead: without
# (auto)vacuum a bitmap scan of a queue index visits every job that ever passed through it.
# Defaults: settings in the DSN (application_name=myapp) win.
_SERVER_SETTINGS = {"application_name": "pgqueue", "jit": "off", "enable_bitmapscan": "off"}

# Errors that mean "the database is not there right now", as opposed to a bug or bad SQL.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InternalClientError,
)

# What the server answers to a startup setting it does not know, a bad value, or bad `options`.
_SETTING_ERRORS = (
    asyncpg.exceptions.UndefinedObjectError,
    asyncpg.exceptions.InvalidParameterValueError,
    asyncpg.exceptions.PostgresSyntaxError,
)


def unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    reason = str(exc).strip() or type(exc).__name__
    return DatabaseUnavailable(f"cannot reach PostgreSQL at {describe(dsn)}: {reason}")


@contextmanager
def _reported(dsn: str) -> Iterator[None]:
    """Turn a failed connection attempt into one ``DatabaseUnavailable`` line naming the server."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise unavailable(dsn, exc) from exc
    except asyncpg.exceptions.InvalidCatalogNameError as exc:
        raise DatabaseUnavailable(f"PostgreSQL at {describe(dsn)}: {exc}") from exc
    except asyncpg.exceptions.InvalidAuthorizationSpecificationError as exc:
        raise DatabaseUnavailable(f"PostgreSQL at {describe(dsn)} refused the login: {exc}") from exc
    except _SETTING_ERRORS as exc:
        raise ConfigurationError(
            f"PostgreSQL at {describe(dsn)} refused a setting from the DSN's query string: {exc} "
            "(a query parameter that is not a libpq connection parameter is sent to the server "
            "as a setting; fix or remove it)"
        ) from exc


def _connect_kwargs(dsn: str, settings: dict[str, str]) -> dict[str, Any]:
    """asyncpg's arguments for ``dsn``. Server settings: pgqueue's defaults, then the DSN's, then
    the caller's own (a hot path's plan settings are what that one statement needs)."""
    args = parse(check_dsn(dsn))
    return dict(
        dsn=args.dsn,
        timeout=args.timeout or CONNECT_TIMEOUT,
        server_settings={**_SERVER_SETTINGS, **args.server_settings, **settings},
    )


async def connect(dsn: str, **settings: str) -> asyncpg.Connection:
    """One connection outside the pool (listeners, the migrations' SQLAlchemy engine)."""
    with _reported(dsn):
        return await asyncpg.connect(**_connect_kwargs(dsn, settings))


async def _reset(conn: asyncpg.Connection) -> None:
    """Release a pooled connection cheaply: pgqueue leaves no session state behind, so only an
    unfinished transaction needs undoing (asyncpg's default reset costs a round trip per use)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, min_size: int, max_size: int) -> asyncpg.Pool:
    with _reported(dsn):
        return await asyncpg.create_pool(
            min_size=min(min_size, max_size), max_size=max_size, reset=_reset,
            **_connect_kwargs(dsn, {}),
        )


class DedicatedConnection:
    """A connection of its own for one hot path, (re)opened on first use after a failure.

    The worker's claim and completion statements run on dedicated connections: no pool round
    trip, and each path gets the plan caching that suits it (``plan_cache_mode``).
    """

    def __init__(self, dsn: str, **settings: str) -> None:
        self._dsn = dsn
        self._settings = settings
        self._conn: asyncpg.Connection | None = None

    async def fetch(self, statement: str, *args: object) -> list[asyncpg.Record]:
        if self._conn is None or self._conn.is_closed():
            # Untranslated on purpose: callers retry on CONNECTION_ERRORS.
            self._conn = await asyncpg.connect(**_connect_kwargs(self._dsn, self._settings))
        try:
            return await self._conn.fetch(statement, *args)
        except CONNECTION_ERRORS:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except Exception:
                conn.terminate()


class Backoff:
    """Exponential backoff with full jitter, for reconnect loops."""

    def __init__(self, base: float = 0.1, cap: float = 10.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.cap, self.base * 2**self.failures))

    def reset(self) -> None:
        self.failures = 0
