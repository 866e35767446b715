"""A job is one row of ``<schema>.jobs``; this module names its states and the moves between them.

The state machine, written down once (every statement in ``sql.py`` keeps to it)::

    scheduled ──run_at reached (scheduler)──▶ queued
    queued ──claimed by a worker──▶ running
    running ──returned──▶ succeeded
    running ──raised, attempts left──▶ scheduled (backoff) or queued (no delay)
    running ──raised, no attempts left, or a non-retryable error──▶ failed
    running ──its worker died (rescuer)──▶ queued, or failed when no attempts are left
    running ──graceful shutdown ran out of time──▶ queued, the attempt not counted
    queued | scheduled | running ──cancel──▶ cancelled
    failed | cancelled ──retry──▶ queued, with at least one more attempt

``succeeded``, ``failed`` and ``cancelled`` are final; the pruner deletes them after retention.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
UNFINISHED_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING})


@dataclass(slots=True)
class Job:
    """A snapshot of one job row, as read at one moment."""

    id: int
    task: str
    queue: str
    status: JobStatus
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: str | None
    progress: float | None
    progress_message: str | None
    unique_key: str | None
    worker_id: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build a Job from a row of ``sql.JOB_COLUMNS`` (JSON columns arrive as text)."""
        result = row["result"]
        return cls(
            id=row["id"],
            task=row["task"],
            queue=row["queue"],
            status=JobStatus(row["status"]),
            args=json.loads(row["args"]),
            kwargs=json.loads(row["kwargs"]),
            priority=row["priority"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            run_at=row["run_at"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            result=None if result is None else json.loads(result),
            error=row["error"],
            progress=row["progress"],
            progress_message=row["progress_message"],
            unique_key=row["unique_key"],
            worker_id=row["worker_id"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-ready values (times in ISO 8601), as the HTTP API shows it."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["status"] = str(self.status)
        return out
