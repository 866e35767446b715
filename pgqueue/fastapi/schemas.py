"""The HTTP API's response models: they fix the JSON shapes and document them in ``/docs``.

Times are serialized as ISO 8601; a job is every field of ``pgqueue.Job``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..job import Job, JobStatus
from ..queue import LogLine, WorkerInfo

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


class QueueOut(BaseModel):
    name: str
    paused: bool
    counts: dict[JobStatus, int] = Field(description="Jobs in this queue per status.")


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
