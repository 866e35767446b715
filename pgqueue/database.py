"""Opening connections: the asyncpg pool, single connections, and errors a person can act on.

Every connection is opened with ``_connect_kwargs``, so a DSN's libpq parameters mean the same
everywhere (see ``pgqueue.dsn``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

from .dsn import check_dsn, describe, parse
from .errors import ConfigurationError, DatabaseUnavailable

logger = logging.getLogger("pgqueue.database")

CONNECT_TIMEOUT = 10.0
# The only startup parameter pgqueue adds: a pooler (PgBouncer) refuses any other it does not know
# ("unsupported startup parameter"). Settings in the DSN (application_name=myapp) win.
_SERVER_SETTINGS = {"application_name": "pgqueue"}
# What every hot path's plan settings imply. Plan nodes switched off are priced at 1e10, far past
# jit_above_cost, so JIT would compile each such statement. Bitmap scans, unlike plain index scans,
# never mark the index entries of dead rows as dead: without (auto)vacuum a bitmap scan of a queue
# index visits every job that ever passed through it.
HOT_PATH_SETTINGS = {"jit": "off", "enable_bitmapscan": "off"}
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")

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


class _OneLine(logging.Filter):
    """asyncpg's pool logs each failed attempt to refill itself with a traceback: while the
    database is away (a restart, a failover) that is a screenful per second. The reason fits on
    the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, CONNECTION_ERRORS):
            record.msg = f"{record.getMessage()} ({str(exc).strip() or type(exc).__name__})"
            record.args = ()
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())


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


def _connect_kwargs(dsn: str, statement_cache_size: int) -> dict[str, Any]:
    """asyncpg's arguments for ``dsn``. Server settings: pgqueue's default name, then the DSN's
    (a user's own settings in the DSN are theirs to make pooler-safe)."""
    args = parse(check_dsn(dsn))
    return dict(
        dsn=args.dsn,
        timeout=args.timeout or CONNECT_TIMEOUT,
        server_settings={**_SERVER_SETTINGS, **args.server_settings},
        statement_cache_size=statement_cache_size,
    )


def server_address(conn: asyncpg.Connection) -> str:
    """``host:port`` this connection actually reached: with several hosts in the DSN, the one
    that answered (after a failover, the new primary)."""
    addr = getattr(conn, "_addr", None)  # asyncpg keeps the address it connected to here
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr) if addr else "?"


_last_server: dict[str, str] = {}


def note_server(dsn: str, conn: asyncpg.Connection, what: str) -> str:
    """Log where a new connection landed, and return ``host:port``: a warning when a connection
    for ``dsn`` lands on another server than the one before (a failover), else at debug level."""
    address = server_address(conn)
    before, _last_server[dsn] = _last_server.get(dsn), address
    if before is not None and before != address:
        logger.warning("%s connected to %s, no longer to %s", what, address, before)
    else:
        logger.debug("%s connected to %s", what, address)
    return address


async def connect(dsn: str, *, statement_cache_size: int = 100) -> asyncpg.Connection:
    """One connection outside the pool (listeners, the migrations' SQLAlchemy engine)."""
    with _reported(dsn):
        return await asyncpg.connect(**_connect_kwargs(dsn, statement_cache_size))


async def _reset(conn: asyncpg.Connection) -> None:
    """Release a pooled connection cheaply: pgqueue leaves no session state behind, so only an
    unfinished transaction needs undoing (asyncpg's default reset costs a round trip per use)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    dsn: str, min_size: int, max_size: int, statement_cache_size: int = 100
) -> asyncpg.Pool:
    with _reported(dsn):
        return await asyncpg.create_pool(
            min_size=min(min_size, max_size), max_size=max_size, reset=_reset,
            init=lambda conn: _noted(dsn, conn),
            **_connect_kwargs(dsn, statement_cache_size),
        )


async def _noted(dsn: str, conn: asyncpg.Connection) -> None:
    note_server(dsn, conn, "pool connection")


class DedicatedConnection:
    """A connection of its own for one hot path, (re)opened on first use after a failure.

    The worker's claim and completion statements run on dedicated connections: no pool round
    trip, and each path gets the plan settings that suit it. Those are never startup parameters,
    which a pooler (PgBouncer) refuses. With the statement cache on (a direct connection), they
    are set once for the session right after connecting; the first execution under
    ``plan_cache_mode=force_generic_plan`` then makes the one generic plan the connection keeps.
    With the cache off (``statement_cache_size=0``, as behind a transaction pooler, where a
    session setting would stay with whichever server connection took it), they are set for each
    statement's own transaction (``BEGIN; SET LOCAL …`` in one round trip, the statement,
    ``COMMIT``), and ``plan_cache_mode`` is left out: there is no kept plan to shape.
    """

    def __init__(self, dsn: str, statement_cache_size: int = 100, **settings: str) -> None:
        self._dsn = dsn
        self._cache_size = statement_cache_size
        if settings:
            settings = {**HOT_PATH_SETTINGS, **settings}
        if not statement_cache_size:
            settings.pop("plan_cache_mode", None)
        pooled = not statement_cache_size
        self._set_local = _set(settings, local=True) if settings and pooled else None
        self._set_session = _set(settings, local=False) if settings and not pooled else None
        self._conn: asyncpg.Connection | None = None
        self._reconnecting = False

    async def fetch(self, statement: str, *args: object) -> list[asyncpg.Record]:
        if self._conn is None or self._conn.is_closed():
            # Untranslated on purpose: callers retry on CONNECTION_ERRORS.
            self._conn = await asyncpg.connect(
                **_connect_kwargs(self._dsn, self._cache_size)
            )
            if self._set_session is not None:
                await self._conn.execute(self._set_session)
            address = note_server(self._dsn, self._conn, "dedicated connection")
            if self._reconnecting:
                logger.info("reconnected to %s", address)
            self._reconnecting = False
        conn = self._conn
        try:
            if self._set_local is None:
                return await conn.fetch(statement, *args)
            await conn.execute(self._set_local)  # BEGIN and the settings: one round trip
            try:
                rows = await conn.fetch(statement, *args)
            except BaseException:
                # Failed or cancelled inside its transaction: the connection goes with it (the
                # next call opens another) rather than a rollback that may not get through.
                self._conn = None
                conn.terminate()
                raise
            await conn.execute("COMMIT")
            return rows
        except CONNECTION_ERRORS:
            await self.close()
            self._reconnecting = True
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except Exception:
                conn.terminate()


def _set(settings: dict[str, str], *, local: bool) -> str:
    """``SET`` of each setting as one simple-protocol query; ``local``: ``BEGIN`` and ``SET LOCAL``
    for one transaction. The names and values come from pgqueue's code, never from users; checked
    all the same."""
    parts = ["BEGIN"] if local else []
    for name, value in settings.items():
        if not _SETTING_NAME.match(name) or "'" in value:
            raise ValueError(f"not a setting pgqueue can SET: {name}={value!r}")
        parts.append(f"SET {'LOCAL ' if local else ''}{name} TO '{value}'")
    return "; ".join(parts)


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
