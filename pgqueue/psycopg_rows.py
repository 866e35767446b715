"""Run pgqueue's statements on a psycopg 3 connection: the sync write path and ``SyncQueue``.

The statements in ``pgqueue.sql`` use ``$1`` parameters, as asyncpg does; psycopg's
``RawCursor`` takes exactly those, so the same text runs on both, untranslated.

psycopg is optional: a connection is recognised as psycopg's only if psycopg is already imported
(it must be, for the caller to hold one), so nothing here imports it for a caller without it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

Rows = list[Mapping[str, Any]]

INSTALL_HINT = "pip install 'pgqueue[sync]'"


def is_psycopg(conn: Any) -> bool:
    """Whether ``conn`` is a (sync) psycopg 3 ``Connection``."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(conn, psycopg.Connection)


def fetch_psycopg(conn: Any, statement: str, params: Sequence[Any]) -> Rows:
    """Run ``statement`` on ``conn`` in its current transaction (psycopg opens one if the
    connection is not in autocommit mode, as Django's is inside ``transaction.atomic()``)."""
    from psycopg import RawCursor
    from psycopg.rows import dict_row

    with RawCursor(conn, row_factory=dict_row) as cursor:
        cursor.execute(statement, list(params))
        return cursor.fetchall() if cursor.description is not None else []
