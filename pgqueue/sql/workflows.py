"""Statements of workflows: enqueue after other jobs, read a job's dependencies and dependents,
and complete a job in the task's own transaction.

Releasing and cancelling dependents is not here: it is the ``settle_dependents`` trigger
(migration 0003), so every path that finishes a job does it in its own transaction.
"""

from __future__ import annotations

from functools import cached_property

from .base import StatementsBase


class WorkflowStatements(StatementsBase):
    @cached_property
    def insert_after(self) -> str:
        """Insert jobs that depend on jobs $9 (distinct ids), in one statement.

        Parameters as ``insert(many=True, ...)`` ($1..$8, no unique key), $9, then the group $10
        and the trace context $11. The dependencies
        are locked (until the enqueueing transaction ends) so that none finishes between reading
        its status here and this job's link becoming visible to the trigger that releases its
        dependents. Unfinished ones make the jobs ``waiting``; an already failed or cancelled one
        makes them ``cancelled`` at once, the error naming it; all succeeded: queued or scheduled.

        Returns one row: ``ids`` (NULL when some dependency does not exist, and then nothing is
        written), ``created_at``, ``status``, ``error`` and ``missing``, the ids that do not exist.
        """
        return self._format(
            """
            WITH parents AS (
                SELECT id, task, status FROM {s}.jobs
                WHERE id = ANY($9::bigint[])
                  AND (SELECT count(*) FROM {s}.jobs WHERE id = ANY($9::bigint[]))
                      = cardinality($9::bigint[])
                ORDER BY id FOR NO KEY UPDATE
            ), state AS (
                SELECT count(*) AS found,
                       count(*) FILTER (WHERE status IN {unfinished}) AS pending,
                       min(format('DependencyFailed: dependency %s (%s) ended %s', id, task, status))
                           FILTER (WHERE status IN ('failed', 'cancelled')) AS error
                FROM parents
            ), flagged AS (
                UPDATE {s}.jobs SET has_dependents = true
                WHERE id = ANY(ARRAY(SELECT id FROM parents)) AND has_dependents IS NOT TRUE
            ), inserted AS (
                INSERT INTO {s}.jobs (task, queue, priority, args, kwargs, max_attempts, run_at,
                                      status, pending_dependencies, error, finished_at, group_key,
                                      trace_context)
                SELECT $1, $2, $3, a, k, $6, coalesce($7::timestamptz, now()),
                       CASE WHEN st.error IS NOT NULL THEN 'cancelled'::{s}.job_status
                            WHEN st.pending > 0 THEN 'waiting'::{s}.job_status
                            WHEN $7::timestamptz > now() THEN 'scheduled'::{s}.job_status
                            ELSE 'queued'::{s}.job_status END,
                       CASE WHEN st.error IS NOT NULL THEN -1 ELSE st.pending END,
                       st.error,
                       CASE WHEN st.error IS NOT NULL THEN now() END, $10::text, $11::jsonb
                FROM state st, ROWS FROM (jsonb_array_elements($4::jsonb),
                                          jsonb_array_elements($5::jsonb)) AS x(a, k)
                WHERE st.found = cardinality($9::bigint[]) AND $8::text IS NULL
                RETURNING id, created_at, status, error
            ), linked AS (
                INSERT INTO {s}.job_dependencies (job_id, depends_on)
                SELECT i.id, p.id FROM inserted i CROSS JOIN parents p
            ), counted AS (
                INSERT INTO {s}.job_count_changes (queue, status, n)
                SELECT $2, 'cancelled', count(*) FROM inserted WHERE status = 'cancelled'
                HAVING count(*) > 0
            ), woken AS (
                SELECT {wake} FROM (SELECT 1 FROM inserted WHERE status = 'queued' LIMIT 1) q
            )
            SELECT array_agg(id ORDER BY id) AS ids, min(created_at) AS created_at,
                   min(status::text) AS status, min(error) AS error,
                   ARRAY(SELECT unnest($9::bigint[]) EXCEPT
                         SELECT id FROM {s}.jobs WHERE id = ANY($9::bigint[])) AS missing
            FROM inserted WHERE (SELECT count(*) FROM woken) >= 0
            """.replace("{wake}", self._wake("$2::text"))
        )

    @cached_property
    def dependencies_of(self) -> str:
        """The jobs that job $1 was enqueued after, by id (a pruned one is simply absent)."""
        return self._format(
            "SELECT {columns} FROM {s}.jobs WHERE id = ANY(ARRAY("
            "SELECT depends_on FROM {s}.job_dependencies WHERE job_id = $1)) ORDER BY id"
        )

    @cached_property
    def dependents_of(self) -> str:
        """Up to $2 of the jobs enqueued after job $1, by id."""
        return self._format(
            "SELECT {columns} FROM {s}.jobs WHERE id = ANY(ARRAY("
            "SELECT job_id FROM {s}.job_dependencies WHERE depends_on = $1 "
            "ORDER BY job_id LIMIT $2)) ORDER BY id"
        )

    @cached_property
    def complete_in(self) -> str:
        """Mark job $1 succeeded with result $4 (JSON text), if run $2 (its attempt) of worker $3
        still holds it. Runs in the task's own transaction, so its status event goes out on that
        transaction's commit, or not at all. No row: the job no longer belongs to that run."""
        return self._format(
            """
            WITH completed AS (
                UPDATE {s}.jobs
                SET status = 'succeeded', result = $4::jsonb, error = NULL, finished_at = now(),
                    worker_id = NULL
                WHERE id = $1 AND attempts = $2 AND worker_id = $3 AND status = 'running'
                RETURNING id, queue
            ), counted AS (
                INSERT INTO {s}.job_count_changes (queue, status, n)
                SELECT queue, 'succeeded', 1 FROM completed
            )
            SELECT id, {told} AS told FROM completed
            """.replace(
                "{told}", self._status("json_build_array(json_build_array(id, 'succeeded'))")
            )
        )
