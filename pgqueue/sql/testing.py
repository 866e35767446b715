"""Statements of ``pgqueue.testing``: run a given job in the test's own process, list what waits."""

from __future__ import annotations

from functools import cached_property

from .base import StatementsBase


class TestingStatements(StatementsBase):
    __test__ = False  # not a pytest test class

    @cached_property
    def take_inline(self) -> str:
        """Start job $1 here and now, if it is queued or scheduled (``inline`` runs delayed jobs
        at once): running, one more attempt, no worker; its ready row, if any, goes."""
        return self._format(
            """
            WITH taken AS (
                UPDATE {s}.jobs j
                SET status = 'running', attempts = j.attempts + 1, started_at = now(),
                    worker_id = NULL
                WHERE j.id = $1 AND j.status IN ('queued', 'scheduled')
                RETURNING {claim_columns}
            ), unready AS (
                DELETE FROM {s}.ready r USING taken t
                WHERE r.queue = t.queue AND r.priority = t.priority AND r.run_at = t.run_at
                  AND r.id = t.id
            )
            SELECT * FROM taken
            """
        )

    @cached_property
    def unfinished_jobs(self) -> str:
        """Unfinished jobs, oldest first, at most $1 (what ``assert_enqueued`` looks at)."""
        return self._format(
            "SELECT {columns} FROM {s}.jobs WHERE status IN {unfinished} ORDER BY id LIMIT $1"
        )
