"""Statements about queues: their limits, and what the dashboard shows of them."""

from __future__ import annotations

from functools import cached_property

from .base import StatementsBase

_LIMIT_COLUMNS = "name, concurrency, rate, period, group_concurrency"


class QueueStatements(StatementsBase):
    @cached_property
    def configure_queue(self) -> str:
        """Change the limits of queue $1 whose flag is set: $2/$3 concurrency, $4/$5 rate,
        $6/$7 period (NULL: 1 second), $8/$9 group_concurrency; a limit not flagged stays.

        Jobs already running in the queue get leases, so a limit set while they run counts them;
        a queue left without limits loses its leases. Woken: a raised limit may start jobs now.
        """
        return self._format(
            """
            WITH configured AS (
                INSERT INTO {s}.queues AS q (name, concurrency, rate, period, group_concurrency)
                VALUES ($1, $3, $5, coalesce($7::float8, 1), $9)
                ON CONFLICT (name) DO UPDATE SET
                    concurrency = CASE WHEN $2 THEN $3 ELSE q.concurrency END,
                    rate = CASE WHEN $4 THEN $5 ELSE q.rate END,
                    period = CASE WHEN $6 THEN coalesce($7::float8, 1) ELSE q.period END,
                    group_concurrency = CASE WHEN $8 THEN $9 ELSE q.group_concurrency END
                RETURNING q.*
            ), leased AS (
                INSERT INTO {s}.leases (queue, group_key, job_id, attempt, started_at)
                SELECT j.queue, j.group_key, j.id, j.attempts, j.started_at FROM {s}.jobs j
                WHERE j.status = 'running' AND j.queue = $1
                  AND EXISTS (SELECT 1 FROM configured c
                              WHERE c.concurrency IS NOT NULL OR c.rate IS NOT NULL
                                 OR c.group_concurrency IS NOT NULL)
                ON CONFLICT DO NOTHING
            ), forgotten AS (
                DELETE FROM {s}.leases l WHERE l.queue = $1
                  AND EXISTS (SELECT 1 FROM configured c
                              WHERE c.concurrency IS NULL AND c.rate IS NULL
                                AND c.group_concurrency IS NULL)
            )
            SELECT c.*, {wake} AS woken FROM configured c
            """.replace("{wake}", self._wake("c.name"))
        )

    @cached_property
    def queue_limits(self) -> str:
        return self._format(f"SELECT {_LIMIT_COLUMNS} FROM {{s}}.queues WHERE name = $1")

    @cached_property
    def limited_queues(self) -> str:
        return self._format(
            f"SELECT {_LIMIT_COLUMNS} FROM {{s}}.queues WHERE concurrency IS NOT NULL "
            "OR rate IS NOT NULL OR group_concurrency IS NOT NULL"
        )
