"""Statements of the worker's maintenance duties: registration, rescue, schedule, prune, vacuum,
periodic slots, and the schema's version."""

from __future__ import annotations

from functools import cached_property

from .base import StatementsBase


class MaintenanceStatements(StatementsBase):
    # -- schema version -------------------------------------------------------------------------

    @cached_property
    def schema_version(self) -> str:
        return self._format("SELECT version_num FROM {s}.alembic_version LIMIT 1")

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
        then forget those workers. $1: seconds of silence after which a worker is dead; $2: the
        rescuing worker, alive by definition (a starved process whose heartbeat ran late must
        not rescue its own jobs while they run).

        Runs under ``try_maintenance_lock`` so one worker at a time does it.
        """
        return self._format(
            """
            WITH orphans AS (
                SELECT j.id FROM {s}.jobs j
                WHERE j.status = 'running' AND j.worker_id IS DISTINCT FROM $2 AND NOT EXISTS (
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
                RETURNING {columns}
            ), counted AS (
                INSERT INTO {s}.job_count_changes (queue, status, n)
                SELECT queue, status, count(*) FROM rescued WHERE status = 'failed' GROUP BY queue, status
            ), forgotten AS (
                DELETE FROM {s}.workers
                WHERE heartbeat_at <= now() - make_interval(secs => $1) AND id <> $2
                RETURNING id
            ), woke_workers AS (
                SELECT {wake} FROM (SELECT DISTINCT queue FROM rescued WHERE status = 'queued') q
            ), told_watchers AS (
                SELECT {told} FROM rescued HAVING count(*) > 0
            )
            SELECT * FROM rescued
            WHERE (SELECT count(*) FROM forgotten) >= 0 AND (SELECT count(*) FROM woke_workers) >= 0
              AND (SELECT count(*) FROM told_watchers) >= 0
            """.replace("{wake}", self._wake("queue"))
            .replace("{told}", self._status("json_agg(json_build_array(id, status))"))
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
                SELECT {wake} FROM (SELECT DISTINCT queue FROM promoted) q
            ), told_watchers AS (
                SELECT {told} FROM promoted HAVING count(*) > 0
            )
            SELECT (SELECT count(*) FROM promoted) AS promoted,
                   (SELECT count(*) FROM woke_workers) AS woken,
                   (SELECT count(*) FROM told_watchers) AS told,
                   (SELECT min(run_at) FROM {s}.jobs WHERE status = 'scheduled'
                        AND id <> ALL(ARRAY(SELECT id FROM due))) AS next_due
            """.replace("{wake}", self._wake("queue"))
            .replace("{told}", self._status("json_agg(json_build_array(id, 'queued'))"))
        )

    @cached_property
    def prune(self) -> str:
        """Delete up to $3 final jobs with ids above $4 that finished before their retention ($1
        seconds; $2 for failed), and take them off the kept counts.

        Returns ``deleted`` and ``last_id``, the highest id looked at: the next batch starts
        after it, so no batch walks the rows (dead until a vacuum) that the ones before deleted.
        The delete checks the retention again, for a job retried meanwhile.
        """
        expired = """
            ((status IN ('succeeded', 'cancelled') AND finished_at < now() - make_interval(secs => $1))
             OR (status = 'failed' AND finished_at < now() - make_interval(secs => $2)))
        """
        return self._format(
            """
            WITH old AS (
                SELECT id FROM {s}.jobs WHERE id > $4 AND {expired} ORDER BY id LIMIT $3
            ), pruned AS (
                DELETE FROM {s}.jobs WHERE id = ANY(ARRAY(SELECT id FROM old)) AND {expired}
                RETURNING id, queue, status, pending_dependencies
            ), counted AS (
                INSERT INTO {s}.job_count_changes (queue, status, n)
                SELECT queue, status, -count(*) FROM pruned GROUP BY queue, status
            ), unlinked AS (
                -- The links of jobs that had dependencies go with them (no foreign key: its
                -- check would cost every delete of a job).
                DELETE FROM {s}.job_dependencies WHERE job_id = ANY(ARRAY(
                    SELECT id FROM pruned WHERE pending_dependencies IS NOT NULL))
            )
            SELECT (SELECT count(*) FROM pruned) AS deleted, (SELECT max(id) FROM old) AS last_id
            """.replace("{expired}", expired)
        )

    @cached_property
    def fold_counts(self) -> str:
        """Fold the appended count changes into the kept counts (one row per queue and status),
        so that ``stats`` adds up a few rows, not one per batch of outcomes."""
        return self._format(
            """
            WITH folded AS (
                DELETE FROM {s}.job_count_changes RETURNING queue, status, n
            )
            INSERT INTO {s}.job_counts (queue, status, n)
            SELECT queue, status, sum(n) FROM folded GROUP BY queue, status
            ON CONFLICT (queue, status) DO UPDATE SET n = {s}.job_counts.n + EXCLUDED.n
            """
        )

    # -- the ready ring --------------------------------------------------------------------------

    @cached_property
    def ring_turn(self) -> str:
        """The start of a turn of the ring duty, in one round trip: ``restored``, how many queued
        jobs were put back into the ring because a crash or a failover emptied it (the ring is
        unlogged, migration 0006; 0 when it was whole), and ``current``, the slot that rows written
        now go to."""
        return self._format("SELECT {s}.restore_ready() AS restored, {s}.ready_slot() AS current")

    def ready_slot_has_rows(self, slot: int) -> str:
        """Whether slot ``slot`` was written to since it was last truncated (``written``), and
        whether any row in it is still visible (``live``)."""
        return self._format(
            f"SELECT pg_relation_size('{{s}}.ready_{slot:d}') > 0 AS written, "
            f"EXISTS (SELECT 1 FROM {{s}}.ready_{slot:d}) AS live"
        )

    def lock_ready_slot(self, slot: int) -> str:
        return self._format(f"LOCK TABLE {{s}}.ready_{slot:d} IN ACCESS EXCLUSIVE MODE")

    def truncate_ready_slot(self, slot: int) -> str:
        return self._format(f"TRUNCATE {{s}}.ready_{slot:d}")

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
