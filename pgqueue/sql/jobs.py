"""Statements about jobs as the application sees them: enqueue, inspect, control."""

from __future__ import annotations

from functools import cached_property

from ..messages import sql_cancel
from .base import StatementsBase


class JobStatements(StatementsBase):
    # -- enqueue ---------------------------------------------------------------------------------

    def insert(self, *, many: bool, unique: bool) -> str:
        """Insert one job, or many from arrays of arguments in one round trip.

        Parameters: $1 task, $2 queue, $3 priority, $4 args JSON, $5 kwargs JSON (with ``many``,
        JSON arrays of those, one element per job), $6 max_attempts, $7 run_at (NULL: now),
        $8 unique_key, $9 group, $10 trace_context JSON (the enqueue's trace, or NULL). With
        ``unique``, a row whose key has an unfinished job already is skipped.

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
        wake = f"CASE WHEN $7::timestamptz > now() THEN NULL ELSE {self._wake('$2')} END"
        columns = (
            "task, queue, priority, args, kwargs, max_attempts, run_at, status, unique_key, "
            "group_key, trace_context"
        )
        conflict = (
            "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL "
            "AND status IN {key_holding} DO NOTHING"
        )
        one = (
            f"INSERT INTO {{s}}.jobs ({columns}) "
            f"VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, {run_at}, {status}, $8, $9, $10::jsonb) "
            "{conflict} "
            f"RETURNING ARRAY[id] AS ids, created_at, {wake} AS woken"
        )
        # One JSON array per column, split here: one json.dumps per batch in Python. A CTE with a
        # volatile function is materialized: pg_notify runs once, not once per row.
        many = (
            f"WITH inserted AS (INSERT INTO {{s}}.jobs ({columns}) "
            f"SELECT $1, $2, $3, a, k, $6, {run_at}, {status}, $8, $9, $10::jsonb FROM ROWS FROM "
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
            "AND status IN {key_holding}"
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
        """Counts per queue and status, none of them by counting history: queued from the ready
        ring, waiting, scheduled and running through their partial indexes, finished ones from the kept
        counts (folded totals plus the changes appended since)."""
        return self._format(
            """
            SELECT queue, status, sum(n)::bigint AS n FROM (
                SELECT queue, 'queued' AS status, count(*) AS n FROM {s}.ready GROUP BY queue
                UNION ALL
                SELECT queue, 'scheduled', count(*) FROM {s}.jobs WHERE status = 'scheduled'
                GROUP BY queue
                UNION ALL
                -- Through the index of jobs_waiting (migration 0003): only waiting jobs have
                -- pending dependencies.
                SELECT queue, 'waiting', count(*) FROM {s}.jobs
                WHERE pending_dependencies > 0 AND status = 'waiting' GROUP BY queue
                UNION ALL
                SELECT queue, 'running', count(*) FROM {s}.jobs WHERE status = 'running'
                GROUP BY queue
                UNION ALL
                SELECT queue, status::text, n FROM {s}.job_counts
                UNION ALL
                SELECT queue, status::text, n FROM {s}.job_count_changes
            ) c
            GROUP BY queue, status HAVING sum(n) <> 0 ORDER BY queue, status
            """
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
                UPDATE {s}.jobs SET status = 'cancelled', finished_at = now(),
                    pending_dependencies = least(pending_dependencies, 0)
                WHERE id = $1 AND status IN {unfinished}
                RETURNING id, queue, priority, run_at,
                          (SELECT status FROM {s}.jobs WHERE id = $1) AS previous
            ), counted AS (
                INSERT INTO {s}.job_count_changes (queue, status, n)
                SELECT queue, 'cancelled', 1 FROM cancelled
            ), unready AS (
                -- Found by the claim index's key. A claim may hold the ready row: it deletes it
                -- itself (and skips the job).
                DELETE FROM {s}.ready WHERE (slot, queue, priority, run_at, id) IN (
                    SELECT r.slot, r.queue, r.priority, r.run_at, r.id
                    FROM {s}.ready r JOIN cancelled c ON r.queue = c.queue
                         AND r.priority = c.priority AND r.run_at = c.run_at AND r.id = c.id
                    FOR UPDATE OF r SKIP LOCKED)
            )
            SELECT id, previous::text,
                   {told},
                   CASE WHEN previous = 'running' THEN {cancel} END
            FROM cancelled
            """.replace("{told}", self._status("json_build_array(json_build_array(id, 'cancelled'))"))
            .replace("{cancel}", sql_cancel(self.jobs_channel, "id"))
        )

    @cached_property
    def retry(self) -> str:
        """Put a failed or cancelled job back to queued, now, with at least one attempt left.

        A job enqueued ``after`` others waits again for those that are unfinished (locked and read
        as they are now, as at enqueue); one that ended failed or cancelled no longer holds it.
        """
        return self._format(
            """
            WITH dependencies AS (
                SELECT status FROM {s}.jobs
                WHERE id = ANY(ARRAY(SELECT depends_on FROM {s}.job_dependencies WHERE job_id = $1))
                FOR SHARE
            ), pending AS (
                SELECT count(*) FILTER (WHERE status IN {unfinished}) AS n FROM dependencies
            ), retried AS (
                UPDATE {s}.jobs
                SET status = CASE WHEN p.n > 0 THEN 'waiting'::{s}.job_status ELSE 'queued' END,
                    pending_dependencies = CASE WHEN pending_dependencies IS NOT NULL THEN p.n END,
                    run_at = now(), finished_at = NULL, worker_id = NULL,
                    max_attempts = greatest(max_attempts, attempts + 1), progress = NULL,
                    progress_message = NULL
                FROM pending p
                WHERE id = $1 AND status IN {retryable}
                RETURNING id, queue, {s}.jobs.status::text AS status,
                          (SELECT status FROM {s}.jobs WHERE id = $1) AS previous
            ), counted AS (
                INSERT INTO {s}.job_count_changes (queue, status, n)
                SELECT queue, previous, -1 FROM retried
            )
            SELECT id, CASE WHEN status = 'queued' THEN {wake} END,
                   {told} FROM retried
            """.replace("{wake}", self._wake("queue"))
            .replace("{told}", self._status("json_build_array(json_build_array(id, status))"))
        )

    @cached_property
    def pause_queue(self) -> str:
        return self._format(
            "INSERT INTO {s}.queues (name, paused) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused"
        )

    @cached_property
    def wake_queue(self) -> str:
        return self._format(f"SELECT {self._wake('$1::text')}")

    @cached_property
    def paused_queues(self) -> str:
        return self._format("SELECT name FROM {s}.queues WHERE paused ORDER BY name")
