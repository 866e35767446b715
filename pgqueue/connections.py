"""Run a pgqueue statement on whatever connection the caller hands over.

Jobs are written in the caller's transaction, so enqueue accepts the connection the application
already holds: an asyncpg ``Connection``, a SQLAlchemy ``AsyncSession`` or ``AsyncConnection``, or
(for ``enqueue_sync``) a SQLAlchemy ``Session`` or ``Connection`` or a psycopg 3 ``Connection``. SQLAlchemy objects are used
through SQLAlchemy itself, so its transaction handling (autobegin, savepoints) stays in charge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from .psycopg_rows import fetch_psycopg, is_psycopg
from .sql import to_sqlalchemy

Rows = list[Mapping[str, Any]]


def _sqlalchemy_params(params: Sequence[Any]) -> dict[str, Any]:
    return {f"p{i}": value for i, value in enumerate(params, start=1)}


def _is_sqlalchemy_async(conn: Any) -> bool:
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return False
    return isinstance(conn, (AsyncSession, AsyncConnection))


def _is_sqlalchemy_sync(conn: Any) -> bool:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    return isinstance(conn, (Session, Connection))


async def fetch(conn: Any, statement: str, params: Sequence[Any]) -> Rows:
    """Run ``statement`` on an asyncpg or async SQLAlchemy connection, in its transaction."""
    if isinstance(conn, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)):
        return await conn.fetch(statement, *params)
    if _is_sqlalchemy_async(conn):
        from sqlalchemy import text

        result = await conn.execute(text(to_sqlalchemy(statement)), _sqlalchemy_params(params))
        return list(result.mappings().all())
    if _is_sqlalchemy_sync(conn):
        raise TypeError(
            "this is a synchronous SQLAlchemy Session/Connection: use .enqueue_sync(...) with it"
        )
    raise TypeError(
        f"cannot enqueue through {type(conn).__name__}: pass an asyncpg Connection, a SQLAlchemy "
        "AsyncSession or AsyncConnection (or a sync Session/Connection with enqueue_sync)"
    )


def fetch_sync(conn: Any, statement: str, params: Sequence[Any]) -> Rows:
    """Run ``statement`` on a synchronous SQLAlchemy ``Session`` or ``Connection``, or a psycopg 3
    ``Connection`` (Django's ``connection.connection``), in its transaction."""
    if is_psycopg(conn):
        return fetch_psycopg(conn, statement, params)
    if not _is_sqlalchemy_sync(conn):
        raise TypeError(
            f"enqueue_sync needs a SQLAlchemy Session or Connection or a psycopg 3 Connection, "
            f"not {type(conn).__name__}; with an async connection use `await ....enqueue(...)`"
        )
    from sqlalchemy import text

    result = conn.execute(text(to_sqlalchemy(statement)), _sqlalchemy_params(params))
    return list(result.mappings().all())
