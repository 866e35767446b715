"""A job is one row of ``<schema>.jobs``; this module names its states, the moves between them,
and is the one place that turns a row into a ``Job``.

The state machine (``sql.py`` takes its status sets from here)::

    waiting ──its last dependency succeeded──▶ queued, or scheduled if its run_at is later
    waiting ──a dependency failed or was cancelled──▶ cancelled (and so on down the graph)
    scheduled ──run_at reached (scheduler)──▶ queued
    queued ──claimed by a worker──▶ running
    running ──returned──▶ succeeded
    running ──raised, attempts left──▶ scheduled (backoff) or queued (no delay)
    running ──raised, no attempts left, a non-retryable error, or ``Fail``──▶ failed
    running ──raised ``Snooze``──▶ scheduled, the run not counted
    running ──its worker died (rescuer)──▶ queued, or failed when no attempts are left
    running ──graceful shutdown ran out of time──▶ queued, the attempt not counted
    running ──complete_in (in the task's own transaction)──▶ succeeded
    waiting | queued | scheduled | running ──cancel──▶ cancelled
    failed | cancelled ──retry──▶ queued, with at least one more attempt (waiting, if a
        dependency is unfinished; one that ended failed or cancelled no longer holds it back)

``succeeded``, ``failed`` and ``cancelled`` are final; the pruner deletes them after retention.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    WAITING = "waiting"
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
UNFINISHED_STATUSES = frozenset(
    {JobStatus.WAITING, JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING}
)
UNIQUE_KEY_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING})
"""The statuses in which a job holds its ``unique_key`` (the unique index's predicate); a job
with a unique key never waits (``after`` and ``unique_key`` do not combine)."""
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
"""What ``retry`` may move back to queued."""


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
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    unique_key: str | None = None
    worker_id: int | None = None
    group: str | None = None
    """The job's group (a tenant, a user): a queue's ``group_concurrency`` limits each group."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """A Job from a row of ``sql.JOB_COLUMNS`` (JSON columns arrive as text)."""
        result = row["result"]
        return cls(
            row["id"], row["task"], row["queue"], JobStatus(row["status"]),
            json.loads(row["args"]), json.loads(row["kwargs"]), row["priority"],
            row["attempts"], row["max_attempts"], row["run_at"], row["created_at"],
            row["started_at"], row["finished_at"], None if result is None else json.loads(result),
            row["error"], row["progress"], row["progress_message"], row["unique_key"],
            row["worker_id"], row["group_key"],
        )

    @classmethod
    def from_claim(cls, row: Sequence[Any], worker_id: int | None) -> Job:
        """A Job from a row of ``sql.CLAIM_COLUMNS``: just claimed by ``worker_id``, so running.

        Unpacked by position (a lookup per field costs more, paid per job), and the arguments
        arrive as one JSON array ``[args, kwargs]``: one parse for both.
        """
        (job_id, task, queue, call, priority, attempts, max_attempts, run_at, created_at,
         started_at, unique_key, group) = row
        args, kwargs = json.loads(call)
        return cls(job_id, task, queue, JobStatus.RUNNING, args, kwargs, priority, attempts,
                   max_attempts, run_at, created_at, started_at, None, None, None, None, None,
                   unique_key, worker_id, group)

    @classmethod
    def enqueued(
        cls, job_id: int, task: str, queue: str, status: JobStatus, args: list[Any],
        kwargs: dict[str, Any], priority: int, max_attempts: int, run_at: datetime,
        created_at: datetime, unique_key: str | None, group: str | None,
    ) -> Job:
        """A Job just inserted, built from what was sent rather than read back (positional: a
        batch of thousands pays for keywords)."""
        return cls(job_id, task, queue, status, args, kwargs, priority, 0, max_attempts, run_at,
                   created_at, None, None, None, None, None, None, unique_key, None, group)
