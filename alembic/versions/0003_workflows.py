"""Workflows: jobs that wait for other jobs, released or cancelled when those finish.

A job enqueued ``after`` others gets one ``job_dependencies`` row per dependency and the status
``waiting`` while any of them is unfinished; ``pending_dependencies`` counts those (NULL: the job
never had dependencies; 0: released, or cancelled by hand; -1: cancelled because a dependency
failed). A job that others wait for is flagged ``has_dependents``.

Release and cascade are a trigger on the jobs table, like the ready ring's: every path that
finishes a job (the worker's outcomes, ``complete_in``, cancel, the rescuer, the application's own
SQL) settles its dependents in the same transaction, so no window exists where a dependency is
final and a dependent is lost. The trigger's WHEN clause only calls it for a job flagged as having
dependents, so finishing any other job costs nothing more. Each of its statements finds the
dependents by the ``depends_on`` index and updates them by primary key (``id = ANY(ARRAY(...))``,
no join whatever the session's planner settings): a job with 10,000 dependents is settled in one
indexed statement, a failure's cascade in one per level of the graph (a loop, not recursion, so a
long chain does not exhaust the stack). Dependents released to ``queued`` get their ready rows
from the ready ring's update trigger, and workers and watchers are told by NOTIFY.

``waiting`` is a new value of the status enum. A value added in a transaction cannot be used in
it, and these migrations run in one transaction (possibly the application's own), so nothing here
names it outside function bodies: the index that ``stats()`` counts waiting jobs through is on
``pending_dependencies > 0``, which holds exactly while a job waits. PostgreSQL cannot drop a value
from an enum, so the downgrade leaves ``waiting`` in the type, unused (waiting jobs become
cancelled), and the upgrade adds it only if it is missing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATUS_EVENTS = (
    "pg_notify('{s}_events', json_build_object('kind', 'status', 'jobs', pairs)::text)"
)

UPGRADE = [
    "ALTER TYPE {s}.job_status ADD VALUE IF NOT EXISTS 'waiting' BEFORE 'queued'",
    "ALTER TABLE {s}.jobs ADD COLUMN pending_dependencies integer, ADD COLUMN has_dependents boolean",
    """
    CREATE TABLE {s}.job_dependencies (
        job_id     bigint NOT NULL,
        depends_on bigint NOT NULL,
        PRIMARY KEY (job_id, depends_on)
    )
    """,
    "CREATE INDEX job_dependencies_depends_on ON {s}.job_dependencies (depends_on)",
    "CREATE INDEX jobs_waiting ON {s}.jobs (queue) WHERE pending_dependencies > 0",
    # Session planner settings (the outcome writer turns nested loops and seq scans off) must not
    # reach these statements; auto lets each lookup get its plan for the job at hand.
    f"""
    CREATE FUNCTION {{s}}.settle_dependents() RETURNS trigger LANGUAGE plpgsql
    SET enable_nestloop = on SET enable_seqscan = on SET plan_cache_mode = auto AS $$
    DECLARE
        frontier bigint[];
        reason text;
        notified bigint;
    BEGIN
        IF NEW.status = 'succeeded' THEN
            WITH released AS (
                UPDATE {{s}}.jobs d
                SET pending_dependencies = d.pending_dependencies - 1,
                    status = CASE WHEN d.pending_dependencies > 1 THEN d.status
                                  WHEN d.run_at > now() THEN 'scheduled'::{{s}}.job_status
                                  ELSE 'queued'::{{s}}.job_status END
                WHERE d.id = ANY(ARRAY(SELECT job_id FROM {{s}}.job_dependencies
                                       WHERE depends_on = NEW.id))
                  AND d.status = 'waiting'
                RETURNING d.id, d.queue, d.status
            ), woken AS (
                SELECT pg_notify('{{s}}_jobs', 'queued:' || queue)
                FROM (SELECT DISTINCT queue FROM released WHERE status = 'queued') q
            ), told AS (
                SELECT {_STATUS_EVENTS.replace("pairs", "json_agg(json_build_array(id, status))")}
                FROM (SELECT id, status, (row_number() OVER () - 1) / 250 AS chunk
                      FROM released WHERE status <> 'waiting') c
                GROUP BY chunk
            )
            SELECT (SELECT count(*) FROM woken) + (SELECT count(*) FROM told) INTO notified;
            RETURN NULL;
        END IF;
        IF NEW.pending_dependencies = -1 THEN
            RETURN NULL;  -- cancelled by the loop below, which cancels its dependents too
        END IF;
        reason := format('DependencyFailed: dependency %s (%s) ended %s', NEW.id, NEW.task, NEW.status);
        frontier := ARRAY[NEW.id];
        LOOP
            WITH cancelled AS (
                UPDATE {{s}}.jobs d
                SET status = 'cancelled', finished_at = now(), error = reason,
                    pending_dependencies = -1
                WHERE d.id = ANY(ARRAY(SELECT job_id FROM {{s}}.job_dependencies
                                       WHERE depends_on = ANY(frontier)))
                  AND d.status = 'waiting'
                RETURNING d.id, d.queue, d.has_dependents
            ), counted AS (
                INSERT INTO {{s}}.job_count_changes (queue, status, n)
                SELECT queue, 'cancelled', count(*) FROM cancelled GROUP BY queue
            ), told AS (
                SELECT {_STATUS_EVENTS.replace("pairs", "json_agg(json_build_array(id, 'cancelled'))")}
                FROM (SELECT id, (row_number() OVER () - 1) / 250 AS chunk FROM cancelled) c
                GROUP BY chunk
            )
            SELECT array_agg(id) FILTER (WHERE has_dependents) INTO frontier
            FROM cancelled WHERE (SELECT count(*) FROM told) >= 0;
            EXIT WHEN frontier IS NULL;
        END LOOP;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER jobs_settle_dependents AFTER UPDATE OF status ON {s}.jobs
    FOR EACH ROW WHEN (NEW.has_dependents AND OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION {s}.settle_dependents()
    """,
]

DOWNGRADE = [
    "DROP TRIGGER jobs_settle_dependents ON {s}.jobs",
    "DROP FUNCTION {s}.settle_dependents()",
    # Waiting jobs cannot wait any more: cancelled, visibly, and counted as such.
    """
    WITH cancelled AS (
        UPDATE {s}.jobs SET status = 'cancelled', finished_at = now(),
            error = 'cancelled by the downgrade of pgqueue''s schema below workflows'
        WHERE status::text = 'waiting'
        RETURNING queue
    )
    INSERT INTO {s}.job_count_changes (queue, status, n)
    SELECT queue, 'cancelled', count(*) FROM cancelled GROUP BY queue
    """,
    "DROP INDEX {s}.jobs_waiting",
    "DROP TABLE {s}.job_dependencies",
    "ALTER TABLE {s}.jobs DROP COLUMN pending_dependencies, DROP COLUMN has_dependents",
]


def _run(statements: list[str]) -> None:
    schema = op.get_context().config.attributes["pgqueue_schema"]
    for statement in statements:
        op.execute(statement.format(s=schema))


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
