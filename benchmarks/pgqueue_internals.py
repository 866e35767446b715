"""Everything benchmarks/ knows about pgqueue beyond its public API, in one place.

Some measurements need pgqueue's insides: the profiler times pgqueue's own statements without the
Python around them, the large-table run fills the jobs table by SQL and EXPLAINs the claim, the
stats and prune runs need millions of finished jobs in seconds (``fill_finished``), and the
chaos run checks the table against what really ran. pgqueue's internals change without
notice, so when they do, this module is the one to follow them; every other benchmark module
uses only ``PgQueue``, its tasks, ``pgq.worker`` and ``enqueue``/``enqueue_many``.
"""

from __future__ import annotations

import json
from typing import Any

from pgqueue import PgQueue, Task
from pgqueue.migrate import upgrade
from pgqueue.settings import validate_schema_name

SCHEMA = "pgqueue"
JOBS = f"{SCHEMA}.jobs"
READY = f"{SCHEMA}.ready"
"""The ready ring: claimable jobs, partitioned into slots (pgqueue's migration 0002)."""
APPLICATION_NAME = "pgqueue"
"""What pgqueue's connections call themselves in pg_stat_activity."""

FINAL_STATUSES = ("succeeded", "failed", "cancelled")


def install_schema(dsn: str) -> None:
    """pgqueue's migrations into an empty database (blocking: Alembic)."""
    upgrade(dsn, SCHEMA)


# --------------------------------------------------------------------------- statements

def insert_statement(pgq: PgQueue, jobs: int) -> str:
    return pgq.statements.insert(many=jobs > 1, unique=False)


def insert_params(task: Task, ids: list[int]) -> list[Any]:
    """The insert's parameters for ``task(i)`` per id, made ready without the API."""
    many = len(ids) > 1
    args = json.dumps([[i] for i in ids]) if many else json.dumps([ids[0]])
    kwargs = json.dumps([{}] * len(ids)) if many else "{}"
    return [task.name, task.queue, task.priority, args, kwargs, task.max_attempts, None, None, None,
            None]


LADDER = ("no ready row", "no wake-up", "no RETURNING", "no partial indexes")
"""What the profiler takes from pgqueue's single-job insert, one more part per step, until little
more than a bare INSERT is left: each step's time, next to the previous one's, is that part's cost."""

_TWIN = f"{SCHEMA}.jobs_twin"
_BARE_TWIN = f"{SCHEMA}.jobs_twin_bare"


async def create_twins(conn: Any) -> None:
    """Copies of the jobs table without the ready ring's trigger: with every index, and with the
    primary key only (what ``insert_without`` writes into)."""
    await conn.execute(f"CREATE TABLE {_TWIN} (LIKE {JOBS} INCLUDING ALL)")
    await conn.execute(f"CREATE TABLE {_BARE_TWIN} (LIKE {JOBS} INCLUDING DEFAULTS "
                       "INCLUDING IDENTITY INCLUDING CONSTRAINTS, PRIMARY KEY (id))")


def insert_without(pgq: PgQueue, steps: int) -> str:
    """pgqueue's single-job insert without the first ``steps`` parts of ``LADDER``."""
    statement = insert_statement(pgq, 1)
    twin = _BARE_TWIN if steps >= 4 else _TWIN
    statement = _replace_once(statement, f"INSERT INTO {JOBS} (", f"INSERT INTO {twin} (")
    if steps >= 2:
        statement = _replace_once(statement, "pg_notify(", "nullif(")
    if steps >= 3:
        statement = statement[:_index_once(statement, " RETURNING ")]
    return statement


def _index_once(text: str, part: str) -> int:
    if text.count(part) != 1:
        raise RuntimeError(f"pgqueue's insert no longer holds {part!r} once; follow it here")
    return text.index(part)


def _replace_once(text: str, old: str, new: str) -> str:
    _index_once(text, old)
    return text.replace(old, new)


def claim_statements(pgq: PgQueue) -> dict[str, str]:
    """The worker's claim, as a worker without and with ``--queue`` runs it (one statement; its
    parameters: queues (NULL for every queue), limit, worker id)."""
    return {"claim_from_all_queues": pgq.statements.claim,
            "claim_from_queues": pgq.statements.claim}


async def explain_claim(conn: Any, pgq: PgQueue, queues: list[str] | None, n: int,
                        worker_id: int = 0) -> list[str]:
    """EXPLAIN ANALYZE of each statement the claim function runs (by ``auto_explain``, reported
    to this client; the function's own settings and cached plans apply), rolled back."""
    notices: list[str] = []
    await conn.execute("LOAD 'auto_explain'")
    for setting, value in (("log_min_duration", "0"), ("log_analyze", "on"),
                           ("log_buffers", "on"), ("log_nested_statements", "on"),
                           ("log_level", "notice")):
        await conn.execute(f"SET auto_explain.{setting} = {value}")

    def listener(_conn: Any, message: Any) -> None:
        notices.append(message.message)

    conn.add_log_listener(listener)
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.fetch(pgq.statements.claim, queues, n, worker_id)
    finally:
        await tx.rollback()
        conn.remove_log_listener(listener)
        await conn.execute("SET auto_explain.log_min_duration = -1")
    return notices


def statements_only() -> PgQueue:
    """A PgQueue never opened, for its statements' text (the flow benchmark's EXPLAIN)."""
    return PgQueue(dsn="postgresql://unused/x", schema=SCHEMA)


async def claim_now(conn: Any, queues: list[str] | None, n: int, worker_id: int = 0) -> int:
    """Claim up to ``n`` jobs of ``queues`` and commit, as a worker would (the jobs stay
    ``running``: in a limited queue they hold its slots); returns how many."""
    return len(await conn.fetch(statements_only().statements.claim, queues, n, worker_id))


async def claim_times(conn: Any) -> dict[int, float]:
    """Per job (its first argument), when pgqueue's claim started it (``started_at``, the moment
    a rate limit counts), in epoch seconds: a diagnostic beside the task's own start."""
    rows = await conn.fetch(f"SELECT (args->>0)::bigint AS i, "
                            f"extract(epoch FROM started_at)::float8 AS t FROM {JOBS} "
                            "WHERE started_at IS NOT NULL")
    return {r["i"]: r["t"] for r in rows}


def write_outcomes_statement(pgq: PgQueue) -> str:
    return pgq.statements.write_outcomes


def write_outcomes_params(rows: list[Any]) -> tuple[list[Any], ...]:
    """``write_outcomes``'s arrays recording every claimed row in ``rows`` as succeeded."""
    k = len(rows)
    return ([r["id"] for r in rows], [r["attempts"] for r in rows], ["succeeded"] * k,
            [None] * k, [None] * k, [0.0] * k)


def register_worker_statement(pgq: PgQueue) -> str:
    """Parameters: hostname, pid, queues, concurrency; returns the worker id a claim needs."""
    return pgq.statements.register_worker


# --------------------------------------------------------------------------- the jobs table

FILL_FINISHED = f"""
INSERT INTO {JOBS} (task, queue, status, args, attempts, run_at, created_at, started_at,
                    finished_at)
SELECT $1, $2, 'succeeded', jsonb_build_array(g), 1, t, t, t, t + interval '1 millisecond'
FROM generate_series(1, $3::int) g,
     LATERAL (SELECT now() - interval '1 day' + g * interval '10 microseconds' AS t) x
"""
"""$3 succeeded jobs of task $1 in queue $2, shaped like the worker's own, older than any queued.
Run ``COUNT_FILLED`` after it: pgqueue keeps the counts of finished jobs rather than counting."""

COUNT_FILLED = f"""
INSERT INTO {SCHEMA}.job_counts (queue, status, n) VALUES ($1, 'succeeded', $2)
ON CONFLICT (queue, status) DO UPDATE SET n = {SCHEMA}.job_counts.n + EXCLUDED.n
"""

FILL_QUEUED = f"""
INSERT INTO {JOBS} (task, queue, args)
SELECT $1, $2, jsonb_build_array(g) FROM generate_series(0, $3::int - 1) g
"""
"""$3 queued jobs ``task(i)`` of task $1 in queue $2, i = 0..$3-1."""

COUNT_BY_STATUS = f"SELECT status::text AS status, count(*) AS n FROM {JOBS} GROUP BY 1"

COUNT_SUCCEEDED = f"SELECT count(*) FROM {JOBS} WHERE status = 'succeeded'"

TABLE_SIZES = (f"SELECT pg_total_relation_size('{JOBS}') AS table_bytes, "
               f"(SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('{READY}')) "
               "AS ready_bytes")

SUCCEEDED_WITHOUT_RUN = f"""
SELECT count(*) FROM {JOBS} j WHERE j.status = 'succeeded'
AND NOT EXISTS (SELECT 1 FROM {{runs}} r WHERE r.job_id = j.id)
"""
"""Jobs recorded succeeded that never ran: the table ``{runs}`` (job_id) records every run."""


# --------------------------------------------------------------------------- finished jobs by SQL

def _fill_finished_sql(schema: str) -> str:
    return f"""
INSERT INTO {schema}.jobs (task, queue, status, args, attempts, run_at, created_at, started_at,
                           finished_at, error)
SELECT $1, $2, $3::{schema}.job_status, jsonb_build_array(g), 1, t, t, t,
       t + interval '1 millisecond', CASE WHEN $3 = 'failed' THEN 'filled by benchmarks' END
FROM generate_series(1, $4::bigint) g,
     LATERAL (SELECT now() - make_interval(secs => $5) - interval '1 millisecond'
                     - ($4::bigint - g) * interval '1 microsecond' AS t) x
"""


async def fill_finished(conn: Any, schema: str, n: int, queue: str = "default",
                        status: str = "succeeded", *, task: str = "noop",
                        finished_at_age_s: float = 3600.0) -> int:
    """Write ``n`` finished jobs of ``task`` in ``queue`` with final ``status`` ('succeeded',
    'failed' or 'cancelled') in one statement, as if a worker had run them; returns how many.

    The newest finished ``finished_at_age_s`` seconds ago, the others 1 µs apart before it, so
    an age past the retention makes them all prunable, and the default (1 hour) none. This is
    the one place that knows how finished jobs are stored: rows of ``<schema>.jobs`` and
    their kept counts; when the storage changes, only this function follows it. ``conn`` is an
    asyncpg connection (the statement runs in its own transaction unless one is open)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
    if n <= 0:
        return 0
    schema = validate_schema_name(schema)
    async with conn.transaction():
        tag = await conn.execute(_fill_finished_sql(schema), task, queue, status, n,
                                 float(finished_at_age_s))
        # pgqueue keeps the counts of finished jobs (migration 0002) rather than counting them.
        await conn.execute(
            f"INSERT INTO {schema}.job_counts (queue, status, n) VALUES ($1, $2, $3) "
            f"ON CONFLICT (queue, status) DO UPDATE SET n = {schema}.job_counts.n + EXCLUDED.n",
            queue, status, n)
    return int(tag.split()[-1])


def prune_batch_size() -> int:
    """Rows the worker's pruner deletes per statement, each in its own transaction."""
    from pgqueue.worker.maintenance import Pruner

    return Pruner.batch
