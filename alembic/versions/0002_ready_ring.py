"""Claimable jobs in a ring of small tables, and kept counts of finished jobs.

A job that becomes queued (inserted queued, promoted, retried, handed back, rescued) gets a row in
``ready``, from a trigger, so every path that queues a job makes it claimable, old code and the
application's own SQL included. The insert trigger is per statement (with its transition table):
a per-row one cost a bulk enqueue 40% of its speed; the update trigger is per row, as its WHEN
clause filters the claims' and outcomes' updates without calling the function.
A claim deletes ready rows instead of walking the jobs table's claim index. ``ready`` is
partitioned into a ring of slots by the second a row was written; a slot that holds nothing any
more is truncated whole. So claims only ever step over the dead rows of the last seconds, even
while another transaction's snapshot keeps every dead row from being vacuumed.

Finished jobs are counted as they finish: ``job_count_changes`` takes an appended row per batch,
folded now and then into ``job_counts``, so ``stats()`` never counts history.

Safe to run while workers run: the trigger and the backfill are one transaction, so no job
queued meanwhile is missed; workers of the previous version keep claiming (from the jobs table,
leaving ready rows that new workers skip) until they are replaced.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SLOTS = 8
"""Slots in the ring; each takes the rows written during one second, round and round."""

UPGRADE = [
    """
    CREATE TABLE {s}.ready (
        slot     smallint NOT NULL,
        queue    text NOT NULL,
        priority integer NOT NULL,
        run_at   timestamptz NOT NULL,
        id       bigint NOT NULL
    ) PARTITION BY LIST (slot)
    """,
    *[f"CREATE TABLE {{s}}.ready_{slot} PARTITION OF {{s}}.ready FOR VALUES IN ({slot})"
      for slot in range(SLOTS)],
    "CREATE INDEX ready_claim ON {s}.ready (queue, priority DESC, run_at, id)",
    f"""
    CREATE FUNCTION {{s}}.ready_slot() RETURNS smallint LANGUAGE sql STABLE AS
    $$ SELECT (floor(extract(epoch FROM statement_timestamp()))::bigint % {SLOTS})::smallint $$
    """,
    """
    CREATE FUNCTION {s}.make_ready() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.ready (slot, queue, priority, run_at, id)
        VALUES ({s}.ready_slot(), NEW.queue, NEW.priority, NEW.run_at, NEW.id);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION {s}.make_inserted_ready() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.ready (slot, queue, priority, run_at, id)
        SELECT {s}.ready_slot(), queue, priority, run_at, id FROM inserted
        WHERE status = 'queued';
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER jobs_ready_on_insert AFTER INSERT ON {s}.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.make_inserted_ready()
    """,
    """
    CREATE TRIGGER jobs_ready_on_update AFTER UPDATE OF status ON {s}.jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION {s}.make_ready()
    """,
    """
    INSERT INTO {s}.ready (slot, queue, priority, run_at, id)
    SELECT {s}.ready_slot(), queue, priority, run_at, id FROM {s}.jobs WHERE status = 'queued'
    """,
    "DROP INDEX {s}.jobs_claim",
    """
    CREATE TABLE {s}.job_counts (
        queue  text NOT NULL,
        status {s}.job_status NOT NULL,
        n      bigint NOT NULL,
        PRIMARY KEY (queue, status)
    )
    """,
    """
    CREATE TABLE {s}.job_count_changes (
        queue  text NOT NULL,
        status {s}.job_status NOT NULL,
        n      bigint NOT NULL
    )
    """,
    """
    INSERT INTO {s}.job_counts (queue, status, n)
    SELECT queue, status, count(*) FROM {s}.jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY queue, status
    """,
]

DOWNGRADE = [
    "DROP TABLE {s}.job_count_changes",
    "DROP TABLE {s}.job_counts",
    """
    CREATE INDEX jobs_claim ON {s}.jobs (queue, priority DESC, run_at, id)
        WHERE status = 'queued'
    """,
    "DROP TRIGGER jobs_ready_on_update ON {s}.jobs",
    "DROP TRIGGER jobs_ready_on_insert ON {s}.jobs",
    "DROP FUNCTION {s}.make_inserted_ready()",
    "DROP FUNCTION {s}.make_ready()",
    "DROP FUNCTION {s}.ready_slot()",
    "DROP TABLE {s}.ready",
]


def _run(statements: list[str]) -> None:
    schema = op.get_context().config.attributes["pgqueue_schema"]
    for statement in statements:
        op.execute(statement.format(s=schema))


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
