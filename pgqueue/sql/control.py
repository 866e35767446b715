"""Statements of bulk control: cancel or retry every job matching a filter, in one statement.

They mirror the single-job ``cancel`` and ``retry`` (same row changes, same ready-ring cleanup,
same kept counts, same notifications) for up to ``$1`` jobs at once.

Candidates are found the cheap way per status, never by walking finished history where an index
or the ready ring knows them: queued jobs from the ready ring, scheduled, running and failed ones
through their partial indexes. Cancelled jobs have no index of their own, so retrying them scans
the jobs table (an operator's occasional call, bounded by its limit).

Target rows are locked ``SKIP LOCKED``: a job that a worker is claiming or finishing at that very
moment is left out (and not counted) rather than waited for. Waiting could deadlock against a
claim, which locks its jobs in another order; a second call picks such a job up.

Every locked target row is then updated (the lock holds its status; the update re-reads a row
changed since the statement's snapshot), so what the target says of each row, its queue and
previous status, is what the kept counts and the running jobs' workers are told. Joining the
update's rows back to the target instead costs a nested loop, quadratic in the limit.
"""

from __future__ import annotations

from functools import cached_property

from ..job import JobStatus
from ..messages import sql_cancel
from .base import StatementsBase

_EVENTS_PER_NOTIFY = 250
"""Status changes per notification: keeps each payload well under NOTIFY's 8000 bytes."""

BulkKey = tuple[frozenset[JobStatus], bool, bool]
"""What a bulk statement is built for: the statuses it touches, whether queue and task filter."""


class ControlStatements(StatementsBase):
    def cancel_jobs(self, statuses: frozenset[JobStatus], *, queue: bool, task: bool) -> str:
        """Cancel up to $1 unfinished jobs in ``statuses``; $2, $3: the queue and task filters
        that are present, in that order. Returns one row: ``n``, the jobs cancelled."""
        key = (statuses, queue, task)
        if key not in self._cancels:
            self._cancels[key] = self._format(
                _CANCEL.replace("{target}", self._target(statuses, queue=queue, task=task))
                .replace("{told}", self._told("cancelled", "'cancelled'"))
                .replace("{stop}", sql_cancel(self.jobs_channel, "id"))
            )
        return self._cancels[key]

    def retry_jobs(self, statuses: frozenset[JobStatus], *, queue: bool, task: bool) -> str:
        """Put up to $1 failed or cancelled jobs in ``statuses`` back to queued, to run now with
        at least one more attempt (or to waiting, as the single ``retry``, where a dependency is
        unfinished); $2, $3 as ``cancel_jobs``. Returns ``n``, the jobs retried."""
        key = (statuses, queue, task)
        if key not in self._retries:
            self._retries[key] = self._format(
                _RETRY.replace("{target}", self._target(statuses, queue=queue, task=task))
                .replace("{told}", self._told("retried", "status"))
                .replace("{wake}", self._wake("queue"))
            )
        return self._retries[key]

    @cached_property
    def _cancels(self) -> dict[BulkKey, str]:
        return {}

    @cached_property
    def _retries(self) -> dict[BulkKey, str]:
        return {}

    def _target(self, statuses: frozenset[JobStatus], *, queue: bool, task: bool) -> str:
        """The jobs to change, locked, at most $1 of them, oldest first."""
        filters = []
        if queue:
            filters.append("queue = $2")
        if task:
            filters.append(f"task = ${3 if queue else 2}")
        where = "".join(f" AND j.{f}" for f in filters)
        branches = []
        for status in sorted(statuses, key=list(JobStatus).index):
            if status is JobStatus.QUEUED:
                # The ready ring holds every claimable job; its index leads with the queue.
                ready_where = " AND r.queue = $2" if queue else ""
                branches.append(
                    f"(SELECT r.id FROM {{s}}.ready r JOIN {{s}}.jobs j ON j.id = r.id "
                    f"WHERE true{ready_where}{where} LIMIT $1)"
                )
            elif status is JobStatus.WAITING:
                # Found through the partial index of jobs with dependencies pending.
                branches.append(
                    f"(SELECT j.id FROM {{s}}.jobs j WHERE j.pending_dependencies > 0 "
                    f"AND j.status = 'waiting'{where} LIMIT $1)"
                )
            else:
                branches.append(
                    f"(SELECT j.id FROM {{s}}.jobs j WHERE j.status = '{status}'{where} LIMIT $1)"
                )
        wanted = "(" + ", ".join(f"'{s}'" for s in sorted(statuses)) + ")"
        return (
            "SELECT j.id, j.queue, j.status AS previous FROM {s}.jobs j "
            f"WHERE j.id = ANY(ARRAY({' UNION ALL '.join(branches)})) "
            f"AND j.status IN {wanted}{where} ORDER BY j.id LIMIT $1 FOR UPDATE SKIP LOCKED"
        )

    def _told(self, changed: str, status: str) -> str:
        """Announce the changed jobs' new status (an SQL expression over ``changed``), a bounded
        number of jobs per message."""
        pairs = f"json_agg(json_build_array(id, {status}))"
        return (
            f"SELECT {self._status(pairs)} FROM (SELECT id, {status} AS status, "
            "(row_number() OVER (ORDER BY id) - 1) "
            f"/ {_EVENTS_PER_NOTIFY} AS chunk FROM {changed}) c GROUP BY chunk"
        )


_CANCEL = """
WITH target AS (
    {target}
), cancelled AS (
    UPDATE {s}.jobs j SET status = 'cancelled', finished_at = now(),
        pending_dependencies = least(j.pending_dependencies, 0)
    WHERE j.id = ANY(ARRAY(SELECT id FROM target)) AND j.status IN {unfinished}
    RETURNING j.id, j.queue, j.priority, j.run_at
), counted AS (
    INSERT INTO {s}.job_count_changes (queue, status, n)
    SELECT queue, 'cancelled', count(*) FROM cancelled GROUP BY queue
), unready AS (
    -- As the single cancel: found by the claim index's key; a claim holding the row deletes it.
    DELETE FROM {s}.ready WHERE (slot, queue, priority, run_at, id) IN (
        SELECT r.slot, r.queue, r.priority, r.run_at, r.id
        FROM {s}.ready r JOIN cancelled c ON r.queue = c.queue
             AND r.priority = c.priority AND r.run_at = c.run_at AND r.id = c.id
        FOR UPDATE OF r SKIP LOCKED)
), stopped AS (
    SELECT {stop} FROM target WHERE previous = 'running'
), told AS (
    {told}
)
SELECT (SELECT count(*) FROM cancelled) AS n, (SELECT count(*) FROM stopped) AS stopped,
       (SELECT count(*) FROM told) AS told
"""

_RETRY = """
WITH target AS (
    {target}
), dependencies AS (
    -- As the single retry: a job enqueued after others waits again for the unfinished ones,
    -- locked so that none finishes unseen meanwhile.
    SELECT d.job_id, dep.status FROM {s}.job_dependencies d
    JOIN {s}.jobs dep ON dep.id = d.depends_on
    WHERE d.job_id = ANY(ARRAY(SELECT id FROM target))
    FOR SHARE OF dep
), pending AS (
    SELECT job_id, count(*) FILTER (WHERE status IN {unfinished}) AS n
    FROM dependencies GROUP BY job_id
), retried AS (
    UPDATE {s}.jobs j
    SET status = CASE WHEN p.n > 0 THEN 'waiting'::{s}.job_status ELSE 'queued' END,
        pending_dependencies = CASE WHEN j.pending_dependencies IS NOT NULL
                                    THEN coalesce(p.n, 0) END,
        run_at = now(), finished_at = NULL, worker_id = NULL,
        max_attempts = greatest(j.max_attempts, j.attempts + 1), progress = NULL,
        progress_message = NULL
    FROM target t LEFT JOIN pending p ON p.job_id = t.id
    WHERE j.id = ANY(ARRAY(SELECT id FROM target)) AND j.id = t.id AND j.status IN {retryable}
    RETURNING j.id, j.queue, j.status::text AS status
), counted AS (
    INSERT INTO {s}.job_count_changes (queue, status, n)
    SELECT queue, previous, -count(*) FROM target GROUP BY queue, previous
), woke AS (
    SELECT {wake} FROM (SELECT DISTINCT queue FROM retried WHERE status = 'queued') q
), told AS (
    {told}
)
SELECT (SELECT count(*) FROM retried) AS n, (SELECT count(*) FROM woke) AS woken,
       (SELECT count(*) FROM told) AS told
"""
