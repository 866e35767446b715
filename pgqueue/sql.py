"""Every SQL statement pgqueue runs, in one place.

Statements are written for asyncpg (``$1`` parameters) against one schema; the schema name is
validated as a plain identifier before it is spliced in (``settings.validate_schema_name``), and every
value travels as a bound parameter.

Two channels carry notifications (both schema-scoped, NOTIFY is already database-scoped):

* ``<schema>_jobs`` wakes workers: ``queued:<queue>`` when work is ready, ``cancel:<id>`` when a
  running job must stop. The insert statement sends its ``queued:`` itself, once per statement,
  so it is delivered when the enqueueing transaction commits.
* ``<schema>_events`` tells watchers (``pgq.wait``, the dashboard) what happened, as JSON:
  ``{"kind": "status", "jobs": [[id, status], ...]}``, ``{"kind": "progress", "id", "progress",
  "message"}`` and ``{"kind": "log", "id", "message"}``.

Updates of job rows by id list the ids twice (``j.id = ANY($1)`` beside the join) so the planner
reaches rows through the primary key even when the table was never analyzed (autovacuum off).
"""

from __future__ import annotations

import re
from functools import cached_property

from .settings import validate_schema_name

JOB_COLUMNS = (
    "id, task, queue, status, args::text AS args, kwargs::text AS kwargs, priority, attempts, "
    "max_attempts, run_at, created_at, started_at, finished_at, result::text AS result, error, "
    "progress, progress_message, unique_key, worker_id"
)

_UNFINISHED = "('queued', 'scheduled', 'running')"
_FINAL = "('succeeded', 'failed', 'cancelled')"


def channel_names(schema: str) -> tuple[str, str]:
    """The (jobs, events) notification channels of a schema."""
    return f"{schema}_jobs", f"{schema}_events"


def to_sqlalchemy(statement: str) -> str:
    """Rewrite ``$1`` parameters as ``(:p1)`` for ``sqlalchemy.text`` (the parentheses keep a
    following ``::type`` cast from being read as part of the parameter name)."""
    return re.sub(r"\$(\d+)", r"(:p\1)", statement)


class Statements:
    """The statements for one schema, built once per ``PgQueue``."""

    def __init__(self, schema: str) -> None:
        self.schema = validate_schema_name(schema)
        self.jobs_channel, self.events_channel = channel_names(schema)

    def _format(self, template: str) -> str:
        return template.format(
            s=self.schema,
            jobs_channel=self.jobs_channel,
            events_channel=self.events_channel,
            unfinished=_UNFINISHED,
            final=_FINAL,
            columns=JOB_COLUMNS,
        )

    # -- schema version -------------------------------------------------------------------------

    @cached_property
    def schema_version(self) -> str:
        return self._format(
            "SELECT (SELECT version_num FROM {s}.alembic_version LIMIT 1) AS version, "
            "to_regclass('{s}.alembic_version') IS NOT NULL AS has_table"
        )

    # -- enqueue ---------------------------------------------------------------------------------

    def insert(self, *, many: bool, unique: bool) -> str:
        """Insert one job, or many from arrays of arguments in one round trip.

        Parameters: $1 task, $2 queue, $3 priority, $4 args JSON, $5 kwargs JSON (with ``many``,
        JSON arrays of those, one element per job), $6 max_attempts, $7 run_at (NULL: now),
        $8 unique_key. With ``unique``, a row
        whose key has an unfinished job already is skipped.

        Returns at most one row, however many jobs: ``ids``, the new ids in ascending (that is,
        input) order, and ``created_at``, the transaction's time, shared by all. Decoding one array
        is far cheaper than a row per job. No row, or NULL ids, when the unique key was taken.

        All rows share one queue and one run_at, so one ``queued:`` wake-up per statement serves
        them all (none when they are scheduled for later). It is sent by the statement itself rather
        than by a trigger: a statement trigger with a transition table cost about 7% of a single
        enqueue's time. A single job sends it from ``RETURNING``, which also spares it the CTE and
        the aggregate that many jobs need (together about 10% of a single enqueue's time).
        """
        return self._inserts[(many, unique)]

    @cached_property
    def _inserts(self) -> dict[tuple[bool, bool], str]:
        run_at = "coalesce($7::timestamptz, now())"
        status = (
            "CASE WHEN $7::timestamptz > now() THEN 'scheduled'::{s}.job_status "
            "ELSE 'queued'::{s}.job_status END"
        )
        wake = (
            "CASE WHEN $7::timestamptz > now() THEN NULL "
            "ELSE pg_notify('{jobs_channel}', 'queued:' || $2) END"
        )
        columns = "task, queue, priority, args, kwargs, max_attempts, run_at, status, unique_key"
        conflict = (
            "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL "
            "AND status IN {unfinished} DO NOTHING"
        )
        one = (
            f"INSERT INTO {{s}}.jobs ({columns}) "
            f"VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, {run_at}, {status}, $8) {{conflict}} "
            f"RETURNING ARRAY[id] AS ids, created_at, {wake} AS woken"
        )
        # One JSON array per column, split here: one json.dumps per batch in Python. A CTE with a
        # volatile function is materialized: pg_notify runs once, not once per row.
        many = (
            f"WITH inserted AS (INSERT INTO {{s}}.jobs ({columns}) "
            f"SELECT $1, $2, $3, a, k, $6, {run_at}, {status}, $8 FROM ROWS FROM "
            "(jsonb_array_elements($4::jsonb), jsonb_array_elements($5::jsonb)) AS x(a, k) "
            "{conflict} RETURNING id, created_at), "
            f"woken AS (SELECT {wake}) "
            "SELECT array_agg(id ORDER BY id) AS ids, min(created_at) AS created_at "
            "FROM inserted, woken"
        )
        # A unique key admits one job, so a batch is never unique.
        return {
            (False, False): self._format(one.replace("{conflict}", "")),
            (False, True): self._format(one.replace("{conflict}", conflict)),
            (True, False): self._format(many.replace("{conflict}", "")),
        }

    @cached_property
    def unfinished_by_unique_key(self) -> str:
        return self._format(
            "SELECT {columns} FROM {s}.jobs WHERE unique_key = ANY($1::text[]) "
            "AND status IN {unfinished}"
        )

    # -- inspect ---------------------------------------------------------------------------------

    @cached_property
    def get_job(self) -> str:
        return self._format("SELECT {columns} FROM {s}.jobs WHERE id = $1")

    @cached_property
    def get_jobs(self) -> str:
        return self._format("SELECT {columns} FROM {s}.jobs WHERE id = ANY($1::bigint[])")

    @cached_property
    def stats(self) -> str:
        return self._format(
            "SELECT queue, status::text AS status, count(*) AS n FROM {s}.jobs "
            "GROUP BY queue, status ORDER BY queue, status"
        )

    def list_jobs(self, *, status: bool, queue: bool, task: bool, before: bool) -> str:
        """Newest first, keyset-paginated on id; the flags say which filters are bound.

        Parameters, in order: limit, then each filter that is present (status, queue, task, before).
        """
        conditions = []
        params = ["$1"]
        for present, condition in (
            (status, "status = {p}::{s}.job_status"),
            (queue, "queue = {p}"),
            (task, "task = {p}"),
            (before, "id < {p}"),
        ):
            if present:
                placeholder = f"${len(params) + 1}"
                params.append(placeholder)
                conditions.append(condition.replace("{p}", placeholder))
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._format(
            f"SELECT {{columns}} FROM {{s}}.jobs {where} ORDER BY id DESC LIMIT $1"
        )

    @cached_property
    def job_logs(self) -> str:
        return self._format(
            "SELECT id, at, message FROM {s}.job_logs WHERE job_id = $1 AND id > $2 "
            "ORDER BY id LIMIT $3"
        )

    # -- control ---------------------------------------------------------------------------------

    @cached_property
    def cancel(self) -> str:
        """Cancel a job that is not final; a running one is told to stop through its worker."""
        return self._format(
            """
            WITH cancelled AS (
                UPDATE {s}.jobs SET status = 'cancelled', finished_at = now()
                WHERE id = $1 AND status IN {unfinished}
                RETURNING id, (SELECT status FROM {s}.jobs WHERE id = $1) AS previous
            )
            SELECT id, previous::text,
                   pg_notify('{events_channel}',
                             json_build_object('kind', 'status',
                                               'jobs', json_build_array(json_build_array(id, 'cancelled')))::text),
                   CASE WHEN previous = 'running' THEN pg_notify('{jobs_channel}', 'cancel:' || id) END
            FROM cancelled
            """
        )

    @cached_property
    def retry(self) -> str:
        """Put a failed or cancelled job back to queued, now, with at least one attempt left."""
        return self._format(
            """
            WITH retried AS (
                UPDATE {s}.jobs
                SET status = 'queued', run_at = now(), finished_at = NULL, worker_id = NULL,
                    max_attempts = greatest(max_attempts, attempts + 1), progress = NULL,
                    progress_message = NULL
                WHERE id = $1 AND status IN ('failed', 'cancelled')
                RETURNING id, queue
            )
            SELECT id,
                   pg_notify('{jobs_channel}', 'queued:' || queue),
                   pg_notify('{events_channel}',
                             json_build_object('kind', 'status',
                                               'jobs', json_build_array(json_build_array(id, 'queued')))::text)
            FROM retried
            """
        )

    @cached_property
    def pause_queue(self) -> str:
        return self._format(
            "INSERT INTO {s}.queues (name, paused) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused"
        )

    @cached_property
    def wake_queue(self) -> str:
        return self._format("SELECT pg_notify('{jobs_channel}', 'queued:' || $1::text)")

    @cached_property
    def paused_queues(self) -> str:
        return self._format("SELECT name FROM {s}.queues WHERE paused ORDER BY name")

    # -- worker: claim and complete --------------------------------------------------------------

    @cached_property
    def claim_from_queues(self) -> str:
        """Claim up to $2 jobs from the queues in $1 for worker $3, best first."""
        return self._format(
            _CLAIM.replace("{queues}", "SELECT unnest($1::text[]) AS name")
        )

    @cached_property
    def claim_from_all_queues(self) -> str:
        """As ``claim_from_queues`` over every queue that has queued jobs ($1 is ignored).

        The queues are found with a loose index scan over the claim index, one probe per queue.
        """
        return self._format(
            _CLAIM.replace(
                "{queues}",
                """
                (SELECT queue AS name FROM {s}.jobs WHERE status = 'queued' AND $1::text[] IS NULL
                 ORDER BY queue LIMIT 1)
                UNION ALL
                SELECT (SELECT queue FROM {s}.jobs
                        WHERE status = 'queued' AND queue > q.name ORDER BY queue LIMIT 1)
                FROM queues q WHERE q.name IS NOT NULL
                """,
            )
        )

    @cached_property
    def complete(self) -> str:
        """Record the outcome of many runs at once.

        Arrays, in order: id, attempt, new status, result JSON, error, retry delay in seconds.
        A row is written only if that very run still holds the job (status running, same attempt):
        a job rescued, cancelled or re-claimed meanwhile is left alone.

        Returns one row (decoding one row is far cheaper than a row per job): ``ids`` and
        ``statuses``, the jobs written and their new status, in the same order (NULL if none);
        ``queues``, the queues that got a job back to run now.

        ``id = ANY($1)`` bounds the scan of the primary key by the batch whatever the plan, so
        the worker keeps one generic plan even if it was made on an empty table (see
        ``Completer``).
        """
        return self._format(
            """
            WITH outcome AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[],
                                     $5::text[], $6::float8[])
                    AS o(id, attempt, status, result, error, delay)
            ), written AS (
                UPDATE {s}.jobs j
                SET status = o.status::{s}.job_status,
                    result = o.result::jsonb,
                    error = o.error,
                    finished_at = CASE WHEN o.status IN {final} THEN now() END,
                    run_at = CASE WHEN o.status IN ('queued', 'scheduled')
                                  THEN now() + make_interval(secs => o.delay) ELSE j.run_at END,
                    worker_id = NULL
                FROM outcome o
                -- status as text: the partial index of running jobs must not be used here; it is
                -- full of entries for jobs long finished until a vacuum, and the primary key
                -- reaches these rows directly.
                WHERE j.id = ANY($1::bigint[]) AND j.id = o.id AND j.attempts = o.attempt
                  AND j.status::text = 'running'
                RETURNING j.id, o.status, j.queue
            )
            SELECT array_agg(id) AS ids, array_agg(status) AS statuses,
                   array_agg(DISTINCT queue) FILTER (WHERE status = 'queued') AS queues
            FROM written
            """
        )

    @cached_property
    def announce(self) -> str:
        """Tell watchers the events $1, in order, and wake the workers of queues $2.

        Sent after a write commits rather than inside it: a NOTIFY in a writing transaction holds
        a database-wide lock across that commit's WAL flush, which would serialize the commits of
        every worker. Events are a hint (watchers re-read the row), so nothing is lost by that.
        """
        return self._format(
            """
            SELECT pg_notify('{events_channel}', e) FROM unnest($1::text[]) AS e
            UNION ALL
            SELECT pg_notify('{jobs_channel}', 'queued:' || q) FROM unnest($2::text[]) AS q
            """
        )

    @cached_property
    def requeue_unfinished(self) -> str:
        """Give back jobs $1 that stopping worker $2 could not finish; the aborted attempt is not
        counted."""
        return self._format(_GIVE_BACK.replace("{which}", "id = ANY($1::bigint[])"))

    @cached_property
    def requeue_lost_claims(self) -> str:
        """Give back the jobs worker $2 holds in the database but not in memory (ids $1 are what
        it holds): a claim committed but its answer was lost with the connection. Only the
        worker's claim loop runs it, between claims, so no claim is under way. The attempt never
        started, so it is not counted."""
        return self._format(_GIVE_BACK.replace("{which}", "id <> ALL($1::bigint[])"))

    @cached_property
    def cancelled_among(self) -> str:
        return self._format(
            "SELECT id FROM {s}.jobs WHERE id = ANY($1::bigint[]) AND status = 'cancelled'"
        )

    # -- progress and logs -----------------------------------------------------------------------

    @cached_property
    def record_progress(self) -> str:
        """Arrays: id, percent, message (written even if the job finished meanwhile: it is its last word)."""
        return self._format(
            """
            WITH p AS (
                SELECT * FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS p(id, progress, message)
            ), written AS (
                UPDATE {s}.jobs j SET progress = p.progress, progress_message = p.message
                FROM p WHERE j.id = ANY($1::bigint[]) AND j.id = p.id
                RETURNING j.id, j.progress, j.progress_message
            )
            SELECT pg_notify('{events_channel}',
                             json_build_object('kind', 'progress', 'id', id, 'progress', progress,
                                               'message', progress_message)::text)
            FROM written
            """
        )

    @cached_property
    def record_logs(self) -> str:
        """Arrays: job id, message; stored (and announced) in the order given."""
        return self._format(
            """
            WITH written AS (
                INSERT INTO {s}.job_logs (job_id, message)
                SELECT l.job_id, l.message
                FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS l(job_id, message, n)
                WHERE EXISTS (SELECT 1 FROM {s}.jobs j WHERE j.id = l.job_id)
                ORDER BY l.n
                RETURNING id, job_id, message
            )
            SELECT pg_notify('{events_channel}',
                             json_build_object('kind', 'log', 'id', job_id, 'message', message)::text)
            FROM (SELECT * FROM written ORDER BY id) w
            """
        )

    # -- maintenance -----------------------------------------------------------------------------

    @cached_property
    def register_worker(self) -> str:
        return self._format(
            "INSERT INTO {s}.workers (hostname, pid, queues, concurrency) VALUES ($1, $2, $3, $4) "
            "RETURNING id"
        )

    @cached_property
    def heartbeat(self) -> str:
        return self._format(
            "UPDATE {s}.workers SET heartbeat_at = now() WHERE id = $1 RETURNING id"
        )

    @cached_property
    def unregister_worker(self) -> str:
        return self._format("DELETE FROM {s}.workers WHERE id = $1")

    @cached_property
    def list_workers(self) -> str:
        return self._format(
            """
            SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.started_at, w.heartbeat_at,
                   (SELECT count(*) FROM {s}.jobs j WHERE j.worker_id = w.id AND j.status = 'running')
                       AS running
            FROM {s}.workers w ORDER BY w.id
            """
        )

    @cached_property
    def rescue(self) -> str:
        """Requeue (or fail, when out of attempts) running jobs whose worker stopped heartbeating,
        then forget those workers. $1: seconds of silence after which a worker is dead.

        Runs under ``try_maintenance_lock`` so one worker at a time does it.
        """
        return self._format(
            """
            WITH orphans AS (
                SELECT j.id FROM {s}.jobs j
                WHERE j.status = 'running' AND NOT EXISTS (
                    SELECT 1 FROM {s}.workers w
                    WHERE w.id = j.worker_id AND w.heartbeat_at > now() - make_interval(secs => $1))
                FOR UPDATE SKIP LOCKED
            ), rescued AS (
                UPDATE {s}.jobs j
                SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed'::{s}.job_status
                                  ELSE 'queued' END,
                    finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
                    error = format('worker %s stopped heartbeating during attempt %s of %s',
                                   coalesce(j.worker_id::text, '?'), j.attempts, j.max_attempts),
                    worker_id = NULL
                WHERE j.id = ANY(ARRAY(SELECT id FROM orphans))
                RETURNING j.id, j.task, j.queue, j.status, j.attempts
            ), forgotten AS (
                DELETE FROM {s}.workers WHERE heartbeat_at <= now() - make_interval(secs => $1)
                RETURNING id
            ), woke_workers AS (
                SELECT pg_notify('{jobs_channel}', 'queued:' || queue)
                FROM (SELECT DISTINCT queue FROM rescued WHERE status = 'queued') q
            ), told_watchers AS (
                SELECT pg_notify('{events_channel}',
                                 json_build_object('kind', 'status',
                                                   'jobs', json_agg(json_build_array(id, status)))::text)
                FROM rescued HAVING count(*) > 0
            )
            SELECT id, task, status::text AS status, attempts FROM rescued
            WHERE (SELECT count(*) FROM forgotten) >= 0 AND (SELECT count(*) FROM woke_workers) >= 0
              AND (SELECT count(*) FROM told_watchers) >= 0
            """
        )

    @cached_property
    def promote_scheduled(self) -> str:
        """Move due scheduled jobs to queued and say when the next one is due."""
        return self._format(
            """
            WITH due AS (
                SELECT id FROM {s}.jobs WHERE status = 'scheduled' AND run_at <= now()
                ORDER BY run_at LIMIT 1000 FOR UPDATE SKIP LOCKED
            ), promoted AS (
                UPDATE {s}.jobs SET status = 'queued' WHERE id = ANY(ARRAY(SELECT id FROM due))
                RETURNING id, queue
            ), woke_workers AS (
                SELECT pg_notify('{jobs_channel}', 'queued:' || queue)
                FROM (SELECT DISTINCT queue FROM promoted) q
            ), told_watchers AS (
                SELECT pg_notify('{events_channel}',
                                 json_build_object('kind', 'status',
                                                   'jobs', json_agg(json_build_array(id, 'queued')))::text)
                FROM promoted HAVING count(*) > 0
            )
            SELECT (SELECT count(*) FROM promoted) AS promoted,
                   (SELECT count(*) FROM woke_workers) AS woken,
                   (SELECT count(*) FROM told_watchers) AS told,
                   (SELECT min(run_at) FROM {s}.jobs WHERE status = 'scheduled'
                        AND id <> ALL(ARRAY(SELECT id FROM due))) AS next_due
            """
        )

    @cached_property
    def prune(self) -> str:
        """Delete up to $3 final jobs finished before their retention ($1 seconds; $2 for failed)."""
        return self._format(
            """
            WITH old AS (
                SELECT id FROM {s}.jobs
                WHERE (status IN ('succeeded', 'cancelled')
                       AND finished_at < now() - make_interval(secs => $1))
                   OR (status = 'failed' AND finished_at < now() - make_interval(secs => $2))
                ORDER BY id LIMIT $3
            )
            DELETE FROM {s}.jobs WHERE id = ANY(ARRAY(SELECT id FROM old))
            """
        )

    @cached_property
    def jobs_dead_rows(self) -> str:
        """(dead, live) row versions of the jobs table, from the statistics PostgreSQL keeps."""
        return self._format(
            "SELECT n_dead_tup AS dead, n_live_tup AS live FROM pg_stat_user_tables "
            "WHERE schemaname = '{s}' AND relname = 'jobs'"
        )

    @cached_property
    def vacuum_jobs(self) -> str:
        return self._format("VACUUM (SKIP_LOCKED) {s}.jobs")

    @cached_property
    def try_session_lock(self) -> str:
        """The session-scoped twin of ``try_maintenance_lock``, for work that cannot run inside a
        transaction (VACUUM)."""
        return self._format("SELECT pg_try_advisory_lock(hashtext('{s}'), $1)")

    @cached_property
    def release_session_lock(self) -> str:
        return self._format("SELECT pg_advisory_unlock(hashtext('{s}'), $1)")

    @cached_property
    def try_maintenance_lock(self) -> str:
        """A transaction-scoped advisory lock per schema and duty, so one worker does each at a time."""
        return self._format("SELECT pg_try_advisory_xact_lock(hashtext('{s}'), $1)")

    @cached_property
    def claim_periodic(self) -> str:
        """Take the right to enqueue periodic task $1 for slot $2.

        No row: another worker has the slot. ``first`` is true when the schedule was unknown until
        now: that slot is only recorded, so a new deployment does not run a slot long past.
        """
        return self._format(
            """
            INSERT INTO {s}.periodic (task, last_slot) VALUES ($1, $2)
            ON CONFLICT (task) DO UPDATE SET last_slot = EXCLUDED.last_slot
            WHERE {s}.periodic.last_slot < EXCLUDED.last_slot
            RETURNING xmax = 0 AS first
            """
        )


_GIVE_BACK = """
WITH given_back AS (
    UPDATE {s}.jobs
    SET status = 'queued', attempts = attempts - 1, worker_id = NULL, started_at = NULL
    WHERE status = 'running' AND worker_id = $2 AND {which}
    RETURNING id, task, queue
)
SELECT id, task, pg_notify('{jobs_channel}', 'queued:' || queue),
       pg_notify('{events_channel}',
                 json_build_object('kind', 'status',
                                   'jobs', json_build_array(json_build_array(id, 'queued')))::text)
FROM given_back
"""

_CLAIM = """
WITH RECURSIVE queues AS (
    {queues}
), picked AS (
    SELECT c.id FROM queues q CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM {s}.jobs j
        WHERE j.status = 'queued' AND j.queue = q.name
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE q.name IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM {s}.queues p WHERE p.name = q.name AND p.paused)
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT $2
), claimed AS (
    UPDATE {s}.jobs j
    SET status = 'running', attempts = j.attempts + 1, started_at = now(), worker_id = $3
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    -- Worker._start unpacks these columns in this order.
    RETURNING j.id, j.task, j.queue, jsonb_build_array(j.args, j.kwargs)::text AS call,
              j.priority, j.attempts, j.max_attempts, j.run_at, j.created_at, j.started_at,
              j.unique_key
)
SELECT * FROM claimed
"""
