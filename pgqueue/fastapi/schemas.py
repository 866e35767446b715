"""The HTTP API's response models: they fix the JSON shapes and document them in ``/docs``.

Times are serialized as ISO 8601; a job is every field of ``pgqueue.Job``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..bulk import DEFAULT_LIMIT
from ..job import Job, JobStatus
from ..limits import MAX_COUNT, PERIOD_RANGE, QueueInfo
from ..queue import LogLine, WorkerInfo

BIGINT_MAX = 2**63 - 1
NAME_RULES: dict[str, Any] = {"min_length": 1, "max_length": 200, "pattern": r"^[^\x00]+$"}
"""Names are bounded text without NUL, which PostgreSQL text cannot hold (``params`` and the
bulk filter body both check them)."""
DEPENDENTS_SHOWN = 1000
"""A job's dependents listed in its detail (a fan-out may have many more)."""


class JobOut(BaseModel):
    """A job as it is at the moment of the request."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    task: str
    queue: str
    status: JobStatus
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    attempts: int = Field(description="Runs started so far, including the current one.")
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any = Field(description="The task's return value (JSON), once it succeeded.")
    error: str | None = Field(description="The last error, with its traceback.")
    progress: float | None = Field(description="Percent done, 0 to 100, as last reported.")
    progress_message: str | None
    unique_key: str | None
    worker_id: int | None
    group: str | None = Field(description="The job's group, which `group_concurrency` limits.")

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls.model_validate(job)


class LogLineOut(BaseModel):
    """One line a task kept with its job (``ctx.log``)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    message: str

    @classmethod
    def of(cls, line: LogLine) -> LogLineOut:
        return cls.model_validate(line)


class JobDetail(JobOut):
    """A job with its log lines, oldest first, and its place in a workflow."""

    logs: list[LogLineOut]
    dependencies: list[int] = Field(
        default_factory=list, description="The jobs it was enqueued `after` (it runs once all of "
        "them succeeded), by id.")
    dependents: list[int] = Field(
        default_factory=list, description=f"The first {DEPENDENTS_SHOWN} jobs enqueued `after` it, "
        "by id.")


class JobConflict(JobOut):
    """The job as it now is, unchanged, and why the request could not change it."""

    detail: str


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    jobs: list[JobOut]
    next_cursor: int | None = Field(
        description="Pass as `before` to get the next (older) page; null on the last page."
    )


class BulkFilter(BaseModel):
    """Which jobs a bulk cancel or retry changes: every one matching all the fields given."""

    model_config = ConfigDict(extra="forbid")  # a misspelt filter must not widen the change

    status: JobStatus | None = Field(
        None, description="Cancel: queued, scheduled or running (default: all three). "
        "Retry: failed or cancelled (default: failed).")
    queue: str | None = Field(None, description="Only jobs of this queue.", **NAME_RULES)
    task: str | None = Field(None, description="Only jobs of this task.", **NAME_RULES)
    limit: int | None = Field(
        None, ge=1, le=BIGINT_MAX,
        description=f"Change at most this many jobs (default {DEFAULT_LIMIT:,}); a count equal "
        "to it means call again for the rest.")


class BulkCount(BaseModel):
    count: int = Field(description="How many jobs this request changed.")


class QueueLimitsOut(BaseModel):
    """A queue's limits, for all workers together; null: no limit."""

    concurrency: int | None = Field(description="Jobs running at once.")
    rate: int | None = Field(description="Job starts per `period` seconds.")
    period: float | None = Field(description="The rate's window in seconds (null without a rate).")
    group_concurrency: int | None = Field(description="Jobs running at once per job group.")


class QueueLimitsIn(BaseModel):
    """Limits to change: only the keys given change; null removes that limit."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1, le=MAX_COUNT, description="Jobs running at once.")
    rate: int | None = Field(None, ge=1, le=MAX_COUNT,
                             description="Job starts per `period` seconds.")
    period: float | None = Field(None, ge=PERIOD_RANGE[0], le=PERIOD_RANGE[1],
                                 description="The rate's window in seconds (default 1).")
    group_concurrency: int | None = Field(None, ge=1, le=MAX_COUNT,
                                          description="Running at once per group.")


class QueueOut(BaseModel):
    name: str
    paused: bool
    counts: dict[JobStatus, int] = Field(description="Jobs in this queue per status.")
    limits: QueueLimitsOut
    held_back: int = Field(description="Queued jobs waiting because the concurrency limit is reached.")

    @classmethod
    def of(cls, queue: QueueInfo) -> QueueOut:
        return cls(name=queue.name, paused=queue.paused, counts=queue.counts,
                   limits=QueueLimitsOut(**queue.limits), held_back=queue.held_back)


class WorkerOut(BaseModel):
    """A worker process that is running (or died less than ``rescue_after`` ago)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    hostname: str
    pid: int
    queues: list[str] | None = Field(description="The queues it serves; null for all of them.")
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    running: int = Field(description="Jobs it is running now.")

    @classmethod
    def of(cls, worker: WorkerInfo) -> WorkerOut:
        return cls.model_validate(worker)


class ProgressEvent(BaseModel):
    """Data of an SSE ``progress`` event."""

    id: int = Field(description="The job's id.")
    progress: float
    message: str | None = None


class StatusChange(BaseModel):
    """Data of a ``status`` event on the dashboard-wide stream."""

    id: int
    status: JobStatus


class LogEvent(LogLineOut):
    """Data of an SSE ``log`` event: a log line and the job it belongs to."""

    job_id: int
