"""Bits shared by run.py, soak.py, scale.py and memory.py: where the server is, and DSNs for
the throw-away databases the benchmarks create."""

from __future__ import annotations

import importlib.util
import os
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DSN_BASE = os.environ.get("PGQUEUE_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432")
"""A server where we may CREATE/DROP databases: ``postgresql://user@host:port`` or any DSN of that
server (its database, if it names one, is used for the CREATE/DROP DATABASE statements)."""

# Python packages each peer adapter needs; a contestant whose packages are missing is skipped
# with a warning (see requirements.txt).
REQUIRES = {
    "pgqueuer": ["pgqueuer"],
    "procrastinate": ["procrastinate", "psycopg_pool"],
    "awa": ["awa"],
}


def db_dsn(base: str, database: str) -> str:
    """The DSN of ``database`` on the server of ``base`` (query string and credentials kept)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{database}"))


def admin_dsn(base: str) -> str:
    """Where CREATE/DROP DATABASE is sent: the database named in ``base``, else ``postgres``."""
    path = urlsplit(base).path.strip("/")
    return base if path else db_dsn(base, "postgres")


def missing_packages(contestant: str) -> list[str]:
    return [m for m in REQUIRES.get(contestant, []) if importlib.util.find_spec(m) is None]


async def recreate_database(base: str, name: str, drop_only: bool = False) -> None:
    """Drop ``name`` on the server of ``base`` (disconnecting its users) and, unless
    ``drop_only``, create it afresh."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn(base))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
