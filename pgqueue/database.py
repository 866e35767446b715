"""Opening connections: DSN checks, the asyncpg pool, and errors a person can act on."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import asyncpg

from .errors import ConfigurationError, DatabaseUnavailable

CONNECT_TIMEOUT = 10.0
_SERVER_SETTINGS = {"application_name": "pgqueue"}

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


def check_dsn(dsn: str | None) -> str:
    """Return the DSN if it looks like a PostgreSQL URL, else say what to set."""
    if not dsn:
        raise ConfigurationError(
            "no database configured: set PGQUEUE_DSN=postgresql://user@host:5432/dbname "
            "or pass PgQueue(dsn=...)"
        )
    scheme = urlsplit(dsn).scheme
    if scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"PGQUEUE_DSN must be a postgresql:// URL, got one starting with {scheme or dsn[:12]!r}"
            " (SQLAlchemy-style 'postgresql+driver://' URLs are not accepted here)"
        )
    return dsn


def describe(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages (never the password)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or 5432
    except ValueError:
        port = "?"
    return f"{host}:{port}{parts.path or ''}"


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


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection outside the pool (listeners)."""
    with _reported(dsn):
        return await asyncpg.connect(check_dsn(dsn), timeout=CONNECT_TIMEOUT, server_settings=_SERVER_SETTINGS)


async def create_pool(dsn: str, min_size: int, max_size: int) -> asyncpg.Pool:
    with _reported(dsn):
        return await asyncpg.create_pool(
            check_dsn(dsn),
            min_size=min(min_size, max_size),
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            server_settings=_SERVER_SETTINGS,
        )


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
