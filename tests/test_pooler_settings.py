"""``statement_cache_size`` and ``listen_dsn``: what a transaction pooler needs, on a plain server.

The end-to-end proof through a real PgBouncer is in test_pgbouncer.py; these pin down the parts:
no named server-side prepared statement where the cache is off, no startup parameter but the
application name, and hot-path plan settings that live in each statement's own transaction.
"""

from __future__ import annotations

import pytest

from pgqueue import PgQueue
from pgqueue.database import DedicatedConnection
from pgqueue.errors import ConfigurationError
from pgqueue.settings import load_settings

PREPARED = "SELECT count(*) FROM pg_prepared_statements"
SETTINGS = ("SELECT current_setting('enable_seqscan') AS seqscan, current_setting('jit') AS jit, "
            "current_setting('enable_bitmapscan') AS bitmapscan, "
            "current_setting('plan_cache_mode') AS cache_mode")


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://u@bouncer:6432/app")
    monkeypatch.setenv("PGQUEUE_STATEMENT_CACHE_SIZE", "0")
    monkeypatch.setenv("PGQUEUE_LISTEN_DSN", "postgresql://u@db:5432/app")
    settings = load_settings()
    assert (settings.statement_cache_size, settings.listen_dsn) == (0, "postgresql://u@db:5432/app")
    assert load_settings(statement_cache_size=7).statement_cache_size == 7
    with pytest.raises(ConfigurationError, match="statement_cache_size"):
        load_settings(statement_cache_size=-1)


def test_listen_dsn_defaults_to_the_dsn() -> None:
    pgq = PgQueue(dsn="postgresql://u@db:5432/app")
    assert pgq.settings.statement_cache_size == 100  # asyncpg's default
    assert pgq._backend.listen_dsn == "postgresql://u@db:5432/app"
    other = PgQueue(dsn="postgresql://u@bouncer:6432/app", listen_dsn="postgresql://u@db/app")
    assert other._backend.listen_dsn == "postgresql://u@db/app"


async def test_without_a_statement_cache_the_pool_prepares_nothing_by_name(
    database_url: str,
) -> None:
    async with PgQueue(dsn=database_url, statement_cache_size=0, pool_max_size=1) as pgq:
        await pgq.enqueue("t", 1)
        await pgq.enqueue("t", 2)
        async with pgq.acquire() as conn:
            assert await conn.fetchval(PREPARED) == 0
            assert await conn.fetchval("SHOW jit") == "on"  # no startup settings but the name
            assert await conn.fetchval("SHOW application_name") == "pgqueue"
    async with PgQueue(dsn=database_url, pool_max_size=1) as pgq:
        await pgq.enqueue("t", 3)
        async with pgq.acquire() as conn:
            assert await conn.fetchval(PREPARED) > 0  # the default keeps asyncpg's cache


async def test_a_hot_path_sets_its_plan_settings_per_transaction_or_per_session(
    database_url: str,
) -> None:
    uncached = DedicatedConnection(database_url, 0, plan_cache_mode="force_generic_plan",
                                   enable_seqscan="off")
    cached = DedicatedConnection(database_url, 100, plan_cache_mode="force_generic_plan",
                                 enable_seqscan="off")
    try:
        [row] = await uncached.fetch(SETTINGS)
        # Inside the statement's transaction: the settings, and what they imply.
        assert dict(row) == {"seqscan": "off", "jit": "off", "bitmapscan": "off",
                             "cache_mode": "auto"}
        # Nothing outlives that transaction, and nothing was prepared by name.
        [row] = await uncached.fetch(f"{SETTINGS}, ({PREPARED}) AS prepared")
        assert row["prepared"] == 0
        conn = uncached._conn
        assert conn is not None and not conn.is_in_transaction()
        assert await conn.fetchval("SHOW enable_seqscan") == "on"

        # With the cache (a direct connection) the settings are the session's, set once after
        # connecting, never as startup parameters: the statement runs in one round trip, and
        # its generic plan is made and kept under them.
        [row] = await cached.fetch(f"{SETTINGS}, ({PREPARED}) AS prepared")
        assert dict(row) == {"seqscan": "off", "jit": "off", "bitmapscan": "off",
                             "cache_mode": "force_generic_plan", "prepared": 1}
        conn = cached._conn
        assert conn is not None and not conn.is_in_transaction()
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        startup = await conn.fetchval(
            "SELECT count(*) FROM pg_settings WHERE name = 'enable_seqscan' AND source = 'client'")
        assert startup == 0  # set by SET (source 'session'), not sent at startup
    finally:
        await uncached.close()
        await cached.close()
