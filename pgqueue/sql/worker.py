"""Statements of the worker's hot paths: claim, write outcomes, announce, hand back, report."""

from __future__ import annotations

from functools import cached_property

from ..messages import sql_log, sql_progress
from .base import StatementsBase


class WorkerStatements(StatementsBase):
    # -- worker: claim and write outcomes --------------------------------------------------------

    @cached_property
    def claim(self) -> str:
        """Claim up to $2 jobs for worker $3 from the queues in $1 (NULL: every queue), best
        first, within the queues' limits: the claim function of migration 0004.

        The claim's own commit does not wait for its WAL to reach the disk
        (``synchronous_commit`` off for this transaction only, so it works through a pooler
        too). A claim is a lease: if the server crashes before its WAL is flushed (a fraction of
        a second), the claim is forgotten, and the job is queued again and runs again, which
        at-least-once delivery allows. Whatever is written durably afterwards (an outcome, a
        ``complete_in`` transaction) flushes the claim with it, as WAL is flushed in order.
        Waiting for the flush was about an eighth of the time from enqueue to start.
        """
        return self._format(
            "SELECT {claim_columns} FROM {s}.claim($1::text[], $2::integer, $3::bigint) j "
            "CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS lease"
        )

    @cached_property
    def write_outcomes(self) -> str:
        """Record the outcome of many runs at once.

        Arrays, in order: id, attempt, new status, result JSON, error, retry delay in seconds.
        A row is written only if that very run still holds the job (status running, same attempt):
        a job rescued, cancelled or re-claimed meanwhile is left alone. The status ``snoozed``
        (``Snooze``) schedules the job ``delay`` seconds on without counting the run: its attempts
        go back down by one and its last error stays.

        Returns one row (decoding one row is far cheaper than a row per job): ``ids`` and
        ``statuses``, the jobs written and their new status, in the same order (NULL if none);
        ``queues``, the queues to wake: those that got a job back to run now, and the limited
        ones that got a slot back (their held-back jobs may start now, on any worker).

        ``id = ANY($1)`` bounds the scan of the primary key by the batch whatever the plan, so
        the worker keeps one generic plan even if it was made on an empty table (see
        ``OutcomeWriter``).
        """
        return self._format(
            """
            WITH outcome AS (
                SELECT o.id, o.attempt, o.result, o.error, o.delay, o.status = 'snoozed' AS snoozed,
                       (CASE WHEN o.status = 'snoozed' THEN 'scheduled' ELSE o.status END)
                           ::{s}.job_status AS status
                FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[],
                            $5::text[], $6::float8[])
                    AS o(id, attempt, status, result, error, delay)
            ), written AS (
                UPDATE {s}.jobs j
                SET status = o.status,
                    result = o.result::jsonb,
                    error = CASE WHEN o.snoozed THEN j.error ELSE o.error END,
                    attempts = CASE WHEN o.snoozed THEN j.attempts - 1 ELSE j.attempts END,
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
            ), counted AS (
                INSERT INTO {s}.job_count_changes (queue, status, n)
                SELECT queue, status, count(*) FROM written
                WHERE status IN {final} GROUP BY queue, status
            )
            SELECT array_agg(id) AS ids, array_agg(status) AS statuses,
                   array_agg(DISTINCT queue) FILTER (
                       WHERE status = 'queued' OR queue IN (
                           SELECT name FROM {s}.queues
                           WHERE concurrency IS NOT NULL OR group_concurrency IS NOT NULL)
                   ) AS queues
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
            SELECT pg_notify('{events}', e) FROM unnest($1::text[]) AS e
            UNION ALL
            SELECT {wake} FROM unnest($2::text[]) AS q
            """.replace("{events}", self.events_channel).replace("{wake}", self._wake("q"))
        )

    @cached_property
    def hand_back(self) -> str:
        """Hand back jobs $1 that stopping worker $2 could not finish; the aborted attempt is not
        counted."""
        return self._hand_back("id = ANY($1::bigint[])")

    @cached_property
    def hand_back_lost_claims(self) -> str:
        """Hand back the jobs worker $2 holds in the database but not in memory (ids $1 are what
        it holds): a claim committed but its answer was lost with the connection. Only the
        worker's claim loop runs it, between claims, so no claim is under way. The attempt never
        started, so it is not counted."""
        return self._hand_back("id <> ALL($1::bigint[])")

    @cached_property
    def hand_back_later(self) -> str:
        """Hand back jobs $1 of stopping worker $2 whose code still runs in it (a sync task that
        ignored cancellation): scheduled $3 seconds from now, when the worker's process has
        ended, instead of queued at once. The aborted attempt is not counted."""
        return self._format(
            """
            WITH handed_back AS (
                UPDATE {s}.jobs
                SET status = 'scheduled', attempts = attempts - 1, worker_id = NULL,
                    started_at = NULL, run_at = now() + make_interval(secs => $3)
                WHERE status = 'running' AND worker_id = $2 AND id = ANY($1::bigint[])
                RETURNING id, task
            )
            SELECT id, task, {told} FROM handed_back
            """.replace("{told}", self._status("json_build_array(json_build_array(id, 'scheduled'))"))
        )

    def _hand_back(self, which: str) -> str:
        return self._format(
            _HAND_BACK.replace("{which}", which)
            .replace("{wake}", self._wake("queue"))
            .replace("{told}", self._status("json_build_array(json_build_array(id, 'queued'))"))
        )

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
            SELECT {told} FROM written
            """.replace("{told}", sql_progress(
                self.events_channel, "id", "progress", "progress_message"))
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
            SELECT {told} FROM (SELECT * FROM written ORDER BY id) w
            """.replace("{told}", sql_log(self.events_channel, "job_id", "message"))
        )


_HAND_BACK = """
WITH handed_back AS (
    UPDATE {s}.jobs
    SET status = 'queued', attempts = attempts - 1, worker_id = NULL, started_at = NULL
    WHERE status = 'running' AND worker_id = $2 AND {which}
    RETURNING id, task, queue
)
SELECT id, task, {wake}, {told} FROM handed_back
"""
