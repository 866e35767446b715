"""What a bulk cancel or retry may touch, checked before anything reaches the database.

Shared by the async calls (``pgq.cancel_jobs``/``retry_jobs``) and the sync ones (``SyncQueue``),
so both refuse the same bad filters with the same message and run the same statement.

The bound: one call changes at most ``limit`` jobs (``DEFAULT_LIMIT`` unless given), in one
statement, oldest first, and returns how many it changed. Fewer than ``limit`` means none is left
(but for jobs a worker was changing at that very moment: see ``sql.control``); exactly ``limit``
means call again for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .job import RETRYABLE_STATUSES, UNFINISHED_STATUSES, JobStatus
from .sql import Statements

DEFAULT_LIMIT = 10_000
"""Jobs changed per bulk call at most: large enough for an operator's batch, small enough that
one statement's locks and notifications stay short."""

Statement = tuple[str, list[Any]]


@dataclass(frozen=True, slots=True)
class BulkFilter:
    statuses: frozenset[JobStatus]
    queue: str | None
    task: str | None
    limit: int

    @classmethod
    def for_cancel(cls, status: str | None, queue: str | None, task: str | None,
                   limit: int | None) -> BulkFilter:
        """Unfinished jobs (queued, scheduled, running), or those of one of these statuses."""
        return cls._checked("cancel", UNFINISHED_STATUSES, status, queue, task, limit)

    @classmethod
    def for_retry(cls, status: str | None, queue: str | None, task: str | None,
                  limit: int | None) -> BulkFilter:
        """Failed or cancelled jobs, or those of one of these statuses."""
        return cls._checked("retry", RETRYABLE_STATUSES, status, queue, task, limit)

    @classmethod
    def _checked(cls, action: str, allowed: frozenset[JobStatus], status: str | None,
                 queue: str | None, task: str | None, limit: int | None) -> BulkFilter:
        names = ", ".join(sorted(allowed))
        if status is None:
            statuses = allowed
        else:
            try:
                chosen = JobStatus(status)
            except ValueError:
                raise ValueError(f"unknown status {status!r}: {action} takes one of {names}") from None
            if chosen not in allowed:
                raise ValueError(f"cannot {action} {chosen} jobs: {action} takes one of {names}")
            statuses = frozenset({chosen})
        for name, value in (("queue", queue), ("task", task)):
            if value is not None and (not isinstance(value, str) or not value or "\x00" in value):
                raise ValueError(f"{name} must be a non-empty string without NUL, got {value!r}")
        limit = DEFAULT_LIMIT if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        return cls(statuses, queue, task, limit)

    def _params(self) -> list[Any]:
        return [self.limit] + [v for v in (self.queue, self.task) if v is not None]

    def cancel(self, statements: Statements) -> Statement:
        sql = statements.cancel_jobs(
            self.statuses, queue=self.queue is not None, task=self.task is not None
        )
        return sql, self._params()

    def retry(self, statements: Statements) -> Statement:
        sql = statements.retry_jobs(
            self.statuses, queue=self.queue is not None, task=self.task is not None
        )
        return sql, self._params()
