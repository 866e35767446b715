"""Flow control: queue limits kept in the database and enforced by the claim, and job groups.

``queues`` gains its limits: ``concurrency`` (jobs running at once), ``rate`` starts per
``period`` seconds, ``group_concurrency`` (running at once per job group). A job's ``group_key``
travels with its ready row; grouped ready rows have an index of their own, so a claim finds the
next job of each group in one probe per group.

The claim becomes one function, ``claim(queues, n, worker)``. Queues without limits are claimed
as before. A limited queue is claimed under its ``queues`` row lock, so every worker on every
host sees the same count: a VOLATILE function's statements each take a fresh snapshot, so after
the lock they see what the previous holder committed. What is running or recently started in a
limited queue is read from ``leases``, one row per start, written by the claim itself; a lease
whose job is no longer running that attempt (finished, rescued, handed back) holds nothing, and is
deleted once it is also out of the rate window. So a worker that dies holding slots frees them
when its jobs are rescued, and no other path needs to know about limits.

The function carries the claim's planner settings (generic plans; no seq scans, bitmap scans, hash
or merge joins, or JIT), so no connection needs them as startup parameters,
which a transaction pooler refuses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Ready rows in the claim's order, picked and deleted by their whole key in their own slot.
_TAKE = """
    taken AS (
        DELETE FROM {s}.ready r USING picked p
        WHERE r.slot = p.slot AND r.queue = p.queue AND r.priority = p.priority
          AND r.run_at = p.run_at AND r.id = p.id
        RETURNING r.id
    ), claimed AS (
        UPDATE {s}.jobs j
        SET status = 'running', attempts = j.attempts + 1, started_at = {started}, worker_id = worker
        WHERE j.id = ANY(ARRAY(SELECT id FROM taken)) AND j.status = 'queued'
        RETURNING j.*
    )
"""

# The status of a lease's job in the attempt it leased (NULL once that attempt is over).
_LEASE_JOB_STATUS = (
    "(SELECT j.status FROM {s}.jobs j WHERE j.id = l.job_id AND j.attempts = l.attempt)"
)

# The claim of queues without limits: the best ready rows of every queue asked for.
_CLAIM_FREE = """
    RETURN QUERY
    WITH RECURSIVE asked AS (
        {asked}
    ), picked AS (
        SELECT c.* FROM asked q CROSS JOIN LATERAL (
            SELECT r.slot, r.queue, r.priority, r.run_at, r.id FROM {s}.ready r
            WHERE r.queue = q.name
            ORDER BY r.priority DESC, r.run_at, r.id
            LIMIT room
            FOR UPDATE SKIP LOCKED
        ) c
        WHERE q.name IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM {s}.queues p WHERE p.name = q.name
                          AND (p.paused OR p.concurrency IS NOT NULL OR p.rate IS NOT NULL
                               OR p.group_concurrency IS NOT NULL))
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT room
    ), {take}
    SELECT * FROM claimed;
"""

_ASKED = "SELECT unnest(wanted) AS name"
# Every queue with ready rows, by a loose index scan over the ring: one probe per queue.
_ALL_QUEUES = """
        (SELECT queue AS name FROM {s}.ready ORDER BY queue LIMIT 1)
        UNION ALL
        SELECT (SELECT queue FROM {s}.ready WHERE queue > a.name ORDER BY queue LIMIT 1)
        FROM asked a WHERE a.name IS NOT NULL
"""

_PLANNER = """
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_bitmapscan = off
    SET jit = off
"""

CLAIM = """
CREATE FUNCTION {s}.claim(wanted text[], n integer, worker bigint)
RETURNS SETOF {s}.jobs
LANGUAGE plpgsql {planner} AS $$
DECLARE
    room integer := n;
    got integer;
    limits {s}.queues;
BEGIN
    FOR limits IN
        SELECT * FROM {s}.queues p
        WHERE (wanted IS NULL OR p.name = ANY(wanted)) AND NOT p.paused
          AND (p.concurrency IS NOT NULL OR p.rate IS NOT NULL OR p.group_concurrency IS NOT NULL)
        ORDER BY p.name
        FOR NO KEY UPDATE
    LOOP
        EXIT WHEN room <= 0;
        RETURN QUERY SELECT * FROM {s}.claim_limited(limits, room, worker);
        GET DIAGNOSTICS got = ROW_COUNT;
        room := room - got;
    END LOOP;
    IF room <= 0 THEN
        RETURN;
    ELSIF wanted IS NULL THEN
        {claim_all}
    ELSE
        {claim_listed}
    END IF;
END
$$
"""

CLAIM_LIMITED = """
CREATE FUNCTION {s}.claim_limited(limits {s}.queues, n integer, worker bigint)
RETURNS SETOF {s}.jobs
LANGUAGE plpgsql {planner} AS $$
DECLARE
    room integer := n;
    running integer;
    recent integer;
    window_start timestamptz := clock_timestamp() - make_interval(secs => limits.period);
BEGIN
    -- The caller holds this queue's row lock, and each statement here sees what earlier holders
    -- committed. A lease holds a slot while its job runs that attempt, and counts against the
    -- rate while it is in the window.
    -- A lease's job is found by its primary key, its status compared outside that lookup: with
    -- `status = 'running'` inside, the planner may scan the partial index jobs_running for every
    -- lease instead (leases x running jobs per claim).
    DELETE FROM {s}.leases l
    WHERE l.queue = limits.name
      AND (limits.rate IS NULL OR l.started_at <= window_start)
      AND {lease_job_status} IS DISTINCT FROM 'running';
    SELECT count(*) FILTER (WHERE {lease_job_status} = 'running'),
           count(*) FILTER (WHERE l.started_at > window_start)
    INTO running, recent
    FROM {s}.leases l
    WHERE l.queue = limits.name;
    IF limits.concurrency IS NOT NULL THEN
        room := least(room, limits.concurrency - running);
    END IF;
    IF limits.rate IS NOT NULL THEN
        room := least(room, limits.rate - recent);
    END IF;
    IF room <= 0 THEN
        RETURN;
    END IF;
    IF limits.group_concurrency IS NULL THEN
        RETURN QUERY
        WITH picked AS (
            SELECT r.slot, r.queue, r.priority, r.run_at, r.id FROM {s}.ready r
            WHERE r.queue = limits.name
            ORDER BY r.priority DESC, r.run_at, r.id
            LIMIT room
            FOR UPDATE SKIP LOCKED
        ), {take}, leased AS (
            INSERT INTO {s}.leases (queue, group_key, job_id, attempt, started_at)
            SELECT c.queue, c.group_key, c.id, c.attempts, c.started_at FROM claimed c
        )
        SELECT * FROM claimed;
        RETURN;
    END IF;
    -- Fair between groups: each group offers what its limit leaves it, and the next slot goes to
    -- the group running least (counting what this claim gives it), then to the longest waiting.
    -- Jobs without a group are not limited, and share as one group.
    RETURN QUERY
    WITH RECURSIVE groups AS (
        (SELECT r.group_key FROM {s}.ready r
         WHERE r.queue = limits.name AND r.group_key IS NOT NULL
         ORDER BY r.group_key LIMIT 1)
        UNION ALL
        SELECT (SELECT r.group_key FROM {s}.ready r
                WHERE r.queue = limits.name AND r.group_key > g.group_key
                ORDER BY r.group_key LIMIT 1)
        FROM groups g WHERE g.group_key IS NOT NULL
    ), busy AS (
        SELECT l.group_key, count(*)::integer AS n FROM {s}.leases l
        WHERE l.queue = limits.name AND l.group_key IS NOT NULL
          AND {lease_job_status} = 'running'
        GROUP BY l.group_key
    ), offered AS (
        SELECT c.*, coalesce(b.n, 0) AS busy FROM groups g
        LEFT JOIN busy b ON b.group_key = g.group_key
        CROSS JOIN LATERAL (
            SELECT r.slot, r.queue, r.priority, r.run_at, r.id, r.group_key FROM {s}.ready r
            WHERE r.queue = limits.name AND r.group_key = g.group_key
            ORDER BY r.priority DESC, r.run_at, r.id
            LIMIT greatest(0, limits.group_concurrency - coalesce(b.n, 0))
            FOR UPDATE SKIP LOCKED
        ) c
        WHERE g.group_key IS NOT NULL
        UNION ALL
        SELECT u.*, 0 FROM (
            SELECT r.slot, r.queue, r.priority, r.run_at, r.id, r.group_key FROM {s}.ready r
            WHERE r.queue = limits.name AND r.group_key IS NULL
            ORDER BY r.priority DESC, r.run_at, r.id
            LIMIT room
            FOR UPDATE SKIP LOCKED
        ) u
    ), ranked AS (
        SELECT o.*, o.busy + row_number() OVER (
            PARTITION BY o.group_key ORDER BY o.priority DESC, o.run_at, o.id) AS load
        FROM offered o
    ), picked AS (
        SELECT * FROM ranked
        ORDER BY priority DESC, load, run_at, id
        LIMIT room
    ), {take}, leased AS (
        INSERT INTO {s}.leases (queue, group_key, job_id, attempt, started_at)
        SELECT c.queue, c.group_key, c.id, c.attempts, c.started_at FROM claimed c
    )
    SELECT * FROM claimed;
END
$$
"""

MAKE_READY = """
CREATE OR REPLACE FUNCTION {s}.make_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.ready (slot, queue, priority, run_at, id{group})
    VALUES ({s}.ready_slot(), NEW.queue, NEW.priority, NEW.run_at, NEW.id{new_group});
    RETURN NULL;
END
$$
"""

MAKE_INSERTED_READY = """
CREATE OR REPLACE FUNCTION {s}.make_inserted_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.ready (slot, queue, priority, run_at, id{group})
    SELECT {s}.ready_slot(), queue, priority, run_at, id{group} FROM inserted
    WHERE status = 'queued';
    RETURN NULL;
END
$$
"""


def _functions() -> list[str]:
    # A limited claim's start is the moment it counted the window, not its transaction's start.
    claim_free = _CLAIM_FREE.replace("{take}", _TAKE.strip().replace("{started}", "now()"))
    take_limited = _TAKE.strip().replace("{started}", "clock_timestamp()")
    return [
        CLAIM_LIMITED.replace("{take}", take_limited).replace("{planner}", _PLANNER)
        .replace("{lease_job_status}", _LEASE_JOB_STATUS),
        CLAIM.replace("{planner}", _PLANNER)
        .replace("{claim_all}", claim_free.replace("{asked}", _ALL_QUEUES))
        .replace("{claim_listed}", claim_free.replace("{asked}", _ASKED)),
    ]


UPGRADE = [
    "ALTER TABLE {s}.jobs ADD COLUMN group_key text",
    "ALTER TABLE {s}.ready ADD COLUMN group_key text",
    """
    CREATE INDEX ready_groups ON {s}.ready (queue, group_key, priority DESC, run_at, id)
        WHERE group_key IS NOT NULL
    """,
    MAKE_READY.replace("{group}", ", group_key").replace("{new_group}", ", NEW.group_key"),
    MAKE_INSERTED_READY.replace("{group}", ", group_key"),
    """
    ALTER TABLE {s}.queues
        ADD COLUMN concurrency integer CHECK (concurrency > 0),
        ADD COLUMN rate integer CHECK (rate > 0),
        ADD COLUMN period double precision NOT NULL DEFAULT 1 CHECK (period > 0),
        ADD COLUMN group_concurrency integer CHECK (group_concurrency > 0)
    """,
    """
    CREATE TABLE {s}.leases (
        queue      text NOT NULL,
        group_key  text,
        job_id     bigint NOT NULL,
        attempt    integer NOT NULL,
        started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (job_id, attempt)
    )
    """,
    "CREATE INDEX leases_queue ON {s}.leases (queue)",
    *_functions(),
]

DOWNGRADE = [
    "DROP FUNCTION {s}.claim(text[], integer, bigint)",
    "DROP FUNCTION {s}.claim_limited({s}.queues, integer, bigint)",
    "DROP TABLE {s}.leases",
    """
    ALTER TABLE {s}.queues
        DROP COLUMN concurrency, DROP COLUMN rate, DROP COLUMN period,
        DROP COLUMN group_concurrency
    """,
    MAKE_READY.replace("{group}", "").replace("{new_group}", ""),
    MAKE_INSERTED_READY.replace("{group}", ""),
    "DROP INDEX {s}.ready_groups",
    "ALTER TABLE {s}.ready DROP COLUMN group_key",
    "ALTER TABLE {s}.jobs DROP COLUMN group_key",
]


def _run(statements: list[str]) -> None:
    schema = op.get_context().config.attributes["pgqueue_schema"]
    for statement in statements:
        op.execute(statement.replace("{s}", schema))


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
