"""Through a real PgBouncer in transaction pooling mode, with its default configuration.

The application enqueues in its own transactions (asyncpg and SQLAlchemy) through the pooler; a
worker process claims and completes through it too, with ``statement_cache_size=0``, while its
LISTEN connection goes straight to PostgreSQL (``listen_dsn``). PgBouncer's own counters and
``pg_stat_activity`` show which connection went which way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from pgqueue import PgQueue
from pgqueue.worker.maintenance import PRUNE_LOCK, Pruner
from tests import worker_tasks
from tests.conftest import FAST
from tests.helpers import eventually, start_worker, stop_worker
from tests.servers import PGBOUNCER, PSQL, PgBouncer

pytestmark = pytest.mark.skipif(
    PGBOUNCER is None or PSQL is None,
    reason="needs the pgbouncer and psql binaries (apt-get install pgbouncer postgresql-client)",
)

JOBS = 40


@pytest.fixture
def bouncer(server_dsn: str) -> Iterator[PgBouncer]:
    if urlsplit(server_dsn).hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("the test's PgBouncer fronts a PostgreSQL on this machine (PGQUEUE_TEST_DSN)")
    bouncer = PgBouncer(server_dsn).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


def _pooled(bouncer: PgBouncer, database_url: str) -> str:
    return bouncer.url(urlsplit(database_url).path.lstrip("/"))


def _transactions(bouncer: PgBouncer, database: str) -> int:
    """Transactions PgBouncer has passed to ``database`` so far."""
    return sum(int(row["total_xact_count"]) for row in bouncer.show("STATS")
               if row["database"] == database)


def _server_pids(bouncer: PgBouncer) -> set[int]:
    """The backends PgBouncer holds: every connection that goes through it lands on one."""
    return {int(row["remote_pid"]) for row in bouncer.show("SERVERS") if row["remote_pid"]}


async def _enqueue_through_the_pooler(pooled: str) -> list[int]:
    """Half through an asyncpg connection, half through a SQLAlchemy session, each job in the
    application's own transaction, with a row of the application's that commits with it."""
    ids = []
    conn = await asyncpg.connect(pooled, statement_cache_size=0)
    try:
        await conn.execute("CREATE TABLE signups (id serial PRIMARY KEY, job_id bigint)")
        for i in range(JOBS // 2):
            async with conn.transaction():
                job = await worker_tasks.noop.using(conn).enqueue(i)
                await conn.execute("INSERT INTO signups (job_id) VALUES ($1)", job.id)
            ids.append(job.id)
    finally:
        await conn.close()
    # SQLAlchemy's asyncpg dialect prepares every statement: behind a transaction pooler it needs
    # no statement caches and unique statement names (SQLAlchemy's documented PgBouncer setup).
    engine = create_async_engine(
        pooled.replace("postgresql://", "postgresql+asyncpg://", 1)
        + "?prepared_statement_cache_size=0",
        poolclass=NullPool,
        connect_args={"statement_cache_size": 0,
                      "prepared_statement_name_func": lambda: f"__pgq_{uuid.uuid4().hex}__"},
    )
    try:
        async with AsyncSession(engine) as session:
            for i in range(JOBS // 2, JOBS):
                async with session.begin():
                    job = await worker_tasks.noop.using(session).enqueue(i)
                    await session.execute(text("INSERT INTO signups (job_id) VALUES (:id)"),
                                          {"id": job.id})
                ids.append(job.id)
    finally:
        await engine.dispose()
    return ids


@pytest.mark.slow
async def test_enqueue_claims_and_completions_go_through_pgbouncer_and_listen_goes_direct(
    bouncer: PgBouncer, database_url: str, db: asyncpg.Connection
) -> None:
    database = urlsplit(database_url).path.lstrip("/")
    pooled = _pooled(bouncer, database_url)
    await db.execute(worker_tasks.CREATE_RUNS)
    before = _transactions(bouncer, database)
    ids = await _enqueue_through_the_pooler(pooled)
    assert await db.fetchval("SELECT count(*) FROM signups WHERE job_id = ANY($1)", ids) == JOBS
    after_enqueue = _transactions(bouncer, database)
    assert after_enqueue - before >= JOBS  # each enqueue's transaction passed through PgBouncer

    worker = start_worker(pooled, "--concurrency", "8", env={
        "PGQUEUE_LISTEN_DSN": database_url, "PGQUEUE_STATEMENT_CACHE_SIZE": "0",
    })
    output = ""
    try:
        async def all_done() -> bool:
            assert worker.poll() is None, f"the worker exited: {stop_worker(worker)}"
            return await db.fetchval(
                "SELECT count(*) FROM pgqueue.jobs WHERE id = ANY($1) AND status = 'succeeded'",
                ids) == JOBS
        await eventually(all_done, timeout=90, what="every job to succeed through PgBouncer")
        # Wake-ups come by NOTIFY: a job enqueued now runs without waiting for a poll. The
        # worker's only direct connection is the one that LISTENs.
        async def worker_backends() -> list[asyncpg.Record]:
            rows = await db.fetch(
                "SELECT pid, query FROM pg_stat_activity WHERE datname = $1 AND pid <> "
                "pg_backend_pid() AND backend_type = 'client backend'", database)
            return rows if any(r["query"].startswith("LISTEN") for r in rows) else []
        backends = await eventually(worker_backends, timeout=30, what="the worker's LISTEN")
        pooled_pids = _server_pids(bouncer)
        direct = [r for r in backends if r["pid"] not in pooled_pids]  # type: ignore[union-attr]
        assert direct and all(r["query"].startswith("LISTEN") for r in direct), direct
        assert worker.poll() is None, "the worker exited"
    finally:
        output = stop_worker(worker)
    assert "unsupported startup parameter" not in output + bouncer.log(), output
    assert "Traceback" not in output, output
    # Claims, completions and the tasks' own writes (one transaction per job) went through it.
    assert _transactions(bouncer, database) - after_enqueue > JOBS, output
    runs = await db.fetch("SELECT job_id, count(*) AS n FROM test_runs GROUP BY job_id")
    assert {r["job_id"]: r["n"] for r in runs} == dict.fromkeys(ids, 1)


async def test_a_pgqueue_through_pgbouncer_waits_on_events_from_the_direct_listen_dsn(
    bouncer: PgBouncer, database_url: str
) -> None:
    """``pgq.wait`` needs job events: they come over ``listen_dsn`` while the pool, with no
    server-side prepared statements, works through the pooler."""
    pgq = PgQueue(dsn=_pooled(bouncer, database_url), listen_dsn=database_url,
                  statement_cache_size=0, **FAST)

    @pgq.task()
    async def double(x: int) -> int:
        return 2 * x

    async with pgq:
        assert pgq.settings.listen_dsn == database_url
        jobs = [await double.enqueue(i) for i in range(5)]
        async with pgq.worker(concurrency=2):
            done = [await pgq.wait(job.id, timeout=60) for job in jobs]
    assert [job.result for job in done] == [0, 2, 4, 6, 8]
    assert "unsupported startup parameter" not in bouncer.log()


async def test_duties_leave_no_session_lock_behind_the_pooler(
    bouncer: PgBouncer, database_url: str, db: asyncpg.Connection
) -> None:
    """A session advisory lock taken through a transaction pooler would stay on a server session
    the pooler hands to other clients, and its release would go to another: the duty would then
    skip nearly every turn in every worker. Behind the pooler the duties that run one at a time
    elsewhere (pruning, vacuuming, the ready ring) take none; they are safe side by side."""
    pgq = PgQueue(dsn=_pooled(bouncer, database_url), listen_dsn=database_url,
                  statement_cache_size=0, **FAST)
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    async with pgq:
        pruner, other = Pruner(pgq.backend), Pruner(pgq.backend)
        async with pgq.acquire() as conn, pruner._alone(conn, PRUNE_LOCK) as mine:
            assert mine
            assert await db.fetchval(held) == 0
            async with pgq.acquire() as conn2, other._alone(conn2, PRUNE_LOCK) as theirs:
                assert theirs
        assert await db.fetchval(held) == 0
        pruned = await Pruner(pgq.backend).tick()  # a whole turn, through the pooler
    assert pruned is None and await db.fetchval(held) == 0
