"""The ready ring becomes unlogged: claimable rows cost no WAL, and are restored after a crash.

A row of ``ready`` only says that a queued job can be claimed; the job itself, and its status, are
in ``jobs``. So the ring needs no WAL: writing it, locking it and deleting it at claim time was a
quarter of a job's WAL (about 250 of 1,150 bytes), shipped to every standby and archived for
nothing. Unlogged, its slots are left empty when PostgreSQL recovers from a crash and when a
standby is promoted. ``ready_intact``, unlogged too, holds one row while the ring is whole; when
it is found empty, ``restore_ready()`` puts every queued job back into the ring, once (under the
marker's lock), and sets the row again. The worker's ring duty calls it every turn (a look at a
one-row table), so jobs queued before a crash or failover are claimable within half a second of
the first worker's return.

A restored row may meet a ready row written by an enqueue that committed meanwhile: claims skip
a ready row whose job is no longer queued, so the job still runs once.

``SET UNLOGGED`` rewrites each slot under an exclusive lock; the slots are small, so claims and
enqueues wait for a moment, and nothing is lost: safe while workers run. Workers of 0005 keep
working, but do not restore the ring after a crash: replace them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SLOTS = 8  # as in migration 0002

RESTORE_READY = """
CREATE FUNCTION {s}.restore_ready() RETURNS bigint
LANGUAGE plpgsql SET enable_seqscan = on AS $$
DECLARE
    restored bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM {s}.ready_intact) THEN
        RETURN 0;
    END IF;
    -- One restorer at a time; the next statement's fresh snapshot sees what an earlier one set.
    LOCK TABLE {s}.ready_intact IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM {s}.ready_intact) THEN
        RETURN 0;
    END IF;
    INSERT INTO {s}.ready (slot, queue, priority, run_at, id, group_key)
    SELECT {s}.ready_slot(), queue, priority, run_at, id, group_key
    FROM {s}.jobs WHERE status = 'queued';
    GET DIAGNOSTICS restored = ROW_COUNT;
    INSERT INTO {s}.ready_intact DEFAULT VALUES;
    RETURN restored;
END
$$
"""

UPGRADE = [
    *[f"ALTER TABLE {{s}}.ready_{slot} SET UNLOGGED" for slot in range(SLOTS)],
    "CREATE UNLOGGED TABLE {s}.ready_intact (since timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO {s}.ready_intact DEFAULT VALUES",
    RESTORE_READY,
]

DOWNGRADE = [
    "DROP FUNCTION {s}.restore_ready()",
    "DROP TABLE {s}.ready_intact",
    *[f"ALTER TABLE {{s}}.ready_{slot} SET LOGGED" for slot in range(SLOTS)],
]


def _run(statements: list[str]) -> None:
    schema = op.get_context().config.attributes["pgqueue_schema"]
    for statement in statements:
        op.execute(statement.format(s=schema))


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    # Back to a logged ring, whole: restore it first if a crash emptied it.
    schema = op.get_context().config.attributes["pgqueue_schema"]
    op.execute(f"SELECT {schema}.restore_ready()")
    _run(DOWNGRADE)
