"""Test fixtures: a real PostgreSQL, and a fresh database for every test.

The server is found in this order: ``PGQUEUE_TEST_DSN`` (any database on a server where we may
CREATE DATABASE); else a container through testcontainers where a Docker engine answers; else an
embedded PostgreSQL from the ``embedded`` extra, kept in ``.pgqueue/test-pgdata``. Each test gets
its own database, copied from a template migrated once per test process, so tests may run in
parallel (``pytest -n auto``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pgqueue import PgQueue
from pgqueue.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent

# Short intervals so tests finish quickly; production defaults are in settings.py. Not the rescue
# window: a worker starved for a few seconds on a loaded machine must not be declared dead (its
# jobs would run twice). Tests of rescue shorten it for the worker that rescues.
RESCUE_QUICKLY = 3.0
FAST = dict(
    heartbeat_interval=0.5,
    rescue_after=60.0,
    poll_interval=0.2,
    shutdown_grace=10.0,
    progress_interval=0.05,
)


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A DSN to some database of a server we may create databases on."""
    if dsn := os.environ.get("PGQUEUE_TEST_DSN"):
        yield dsn
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
    else:
        from pgqueue.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(ROOT / ".pgqueue" / "test-pgdata")
        try:
            yield server.start()
        finally:
            server.stop()


async def _admin(server_dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(server_dsn: str) -> Iterator[str]:
    """A database with pgqueue's schema, copied for each test (one per xdist process)."""
    name = f"pgqueue_tpl_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'))
    upgrade(with_database(server_dsn, name), "pgqueue")
    yield name
    asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def empty_database_url(server_dsn: str) -> AsyncIterator[str]:
    """A new database with nothing of pgqueue's in it."""
    name = f"pgqueue_t_{uuid.uuid4().hex[:12]}"
    await _admin(server_dsn, f'CREATE DATABASE "{name}"')
    yield with_database(server_dsn, name)
    await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """A new database of its own for this test, with pgqueue's schema in place."""
    name = f"pgqueue_t_{uuid.uuid4().hex[:12]}"
    await _admin(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield with_database(server_dsn, name)
    await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pgq(database_url: str) -> AsyncIterator[PgQueue]:
    """An open PgQueue on this test's database, with short maintenance intervals."""
    queue = PgQueue(dsn=database_url, **FAST)
    async with queue:
        yield queue


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to this test's database, for looking at rows directly."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


# -- the tasks that worker subprocesses run (tests/worker_tasks.py, tests/flow_tasks.py) ---------


@pytest.fixture
async def tasks_db(db: asyncpg.Connection) -> asyncpg.Connection:
    """``db``, with the tables the worker tasks record their runs in and wait on."""
    from . import worker_tasks

    await db.execute(worker_tasks.CREATE_RUNS)
    await db.execute(worker_tasks.CREATE_GATES)
    return db


@pytest.fixture
async def producer(database_url: str) -> AsyncIterator[PgQueue]:
    """The tests' own handle on the worker tasks' queue (same task names as the subprocesses)."""
    from . import worker_tasks

    worker_tasks.pgq.settings.dsn = database_url
    async with worker_tasks.pgq:
        yield worker_tasks.pgq


@pytest.fixture
async def flows(database_url: str, db: asyncpg.Connection) -> AsyncIterator[PgQueue]:
    """The tests' handle on the flow tasks' queue, and the tasks' own tables."""
    from . import flow_tasks

    await db.execute(flow_tasks.CREATE_TABLES)
    flow_tasks.pgq.settings.dsn = database_url
    async with flow_tasks.pgq:
        yield flow_tasks.pgq
    await flow_tasks.close_pool()
