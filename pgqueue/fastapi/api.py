"""The JSON API: list and inspect jobs, cancel and retry them, see workers (queues: ``queues``).

Every input is validated before it reaches the database (see ``params``), so a malformed request
gets a 422 that says what is wrong, never a 500.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from ..queue import PgQueue
from .params import Cursor, JobId, QueueFilter, StatusFilter, TaskFilter
from .schemas import (
    DEPENDENTS_SHOWN,
    BulkCount,
    BulkFilter,
    JobConflict,
    JobDetail,
    JobOut,
    JobPage,
    LogLineOut,
    WorkerOut,
)
from .sse import dashboard_events
from .sse import job_events as job_event_stream

_NOT_FOUND = {404: {"description": "No job with this id."}}
_CONFLICT = {
    409: {
        "model": JobConflict,
        "description": "The job is in a status this action does not apply to; it is unchanged "
        "and returned as it is, with `detail` saying why.",
    }
}
_BAD_FILTER = {
    422: {"description": "A malformed filter, or a status this action does not apply to."}
}
_STREAM = {200: {"content": {"text/event-stream": {}}, "description": "A stream of events."}}


def add_api_routes(router: APIRouter, pgq: PgQueue) -> None:
    async def _job_or_404(job_id: int) -> JobOut:
        job = await pgq.get_job(job_id)
        if job is None:
            raise HTTPException(404, f"no job with id {job_id}")
        return JobOut.of(job)

    @router.get("/jobs", response_model=JobPage, summary="List jobs, newest first")
    async def list_jobs(
        status: StatusFilter = None,
        queue: QueueFilter = None,
        task: TaskFilter = None,
        before: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Jobs per page.")] = 50,
    ) -> JobPage:
        # One more than asked tells whether an older page exists, without a count.
        jobs = await pgq.list_jobs(
            status=status, queue=queue, task=task, before_id=before, limit=limit + 1
        )
        page = jobs[:limit]
        return JobPage(
            jobs=[JobOut.of(job) for job in page],
            next_cursor=page[-1].id if len(jobs) > limit else None,
        )

    @router.get("/jobs/{job_id}", response_model=JobDetail, responses=_NOT_FOUND,
                summary="One job, with its log lines")
    async def get_job(job_id: JobId) -> JobDetail:
        job = await _job_or_404(job_id)
        logs = await pgq.job_logs(job_id)
        return JobDetail(
            **job.model_dump(), logs=[LogLineOut.of(line) for line in logs],
            dependencies=[dependency.id for dependency in await pgq.dependencies(job_id)],
            dependents=[dependent.id for dependent in await pgq.dependents(job_id, DEPENDENTS_SHOWN)],
        )

    @router.post("/jobs/{job_id}/cancel", response_model=JobOut,
                 responses={**_NOT_FOUND, **_CONFLICT}, summary="Cancel a job")
    async def cancel_job(job_id: JobId) -> JobOut | JSONResponse:
        """Cancel a queued, scheduled or running job (a running one is stopped on its worker
        within a second). A job that already finished answers 409, unchanged."""
        cancelled = await pgq.cancel(job_id)
        job = await _job_or_404(job_id)
        if cancelled:
            return job
        return _conflict(
            job, f"job {job_id} is {job.status}: only unfinished jobs can be cancelled"
        )

    @router.post("/jobs/{job_id}/retry", response_model=JobOut,
                 responses={**_NOT_FOUND, **_CONFLICT}, summary="Retry a job")
    async def retry_job(job_id: JobId) -> JobOut | JSONResponse:
        """Put a failed or cancelled job back in its queue, to run now with at least one more
        attempt. A job in any other status answers 409, unchanged."""
        retried = await pgq.retry(job_id)
        job = await _job_or_404(job_id)
        if retried:
            return job
        return _conflict(
            job, f"job {job_id} is {job.status}: only failed or cancelled jobs can be retried"
        )

    @router.post("/jobs/cancel", response_model=BulkCount, responses=_BAD_FILTER,
                 summary="Cancel every job matching a filter")
    async def cancel_jobs(body: BulkFilter) -> BulkCount:
        """Cancel unfinished jobs matching every field given, in one statement, as the single
        cancel does (running ones are stopped on their workers); at most `limit` of them."""
        try:
            count = await pgq.cancel_jobs(body.status, body.queue, body.task, limit=body.limit)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return BulkCount(count=count)

    @router.post("/jobs/retry", response_model=BulkCount, responses=_BAD_FILTER,
                 summary="Retry every failed job matching a filter")
    async def retry_jobs(body: BulkFilter) -> BulkCount:
        """Put failed (or, with `"status": "cancelled"`, cancelled) jobs matching every field
        given back in their queue, to run now with at least one more attempt, in one statement;
        at most `limit` of them."""
        status = body.status or "failed"
        try:
            count = await pgq.retry_jobs(status, body.queue, body.task, limit=body.limit)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return BulkCount(count=count)

    @router.get("/jobs/{job_id}/events", response_class=EventSourceResponse,
                responses={**_STREAM, **_NOT_FOUND}, summary="Live events of one job (SSE)")
    async def job_events(job_id: JobId) -> EventSourceResponse:
        """Server-Sent Events: `log` (a log line), `progress` (`{id, progress, message}`) and
        `status` (the whole job, first on connect and again on every status change). The stream
        ends after the job's final status, which is always its last event."""
        await _job_or_404(job_id)
        return EventSourceResponse(job_event_stream(pgq, job_id))

    @router.get("/events", response_class=EventSourceResponse, responses=_STREAM,
                summary="Live events of all jobs (SSE)")
    async def all_events() -> EventSourceResponse:
        """Server-Sent Events for a dashboard: `stats` (as `GET /stats`, first on connect and
        whenever the counts change, at most once a second), `status` (`{id, status}`) and
        `progress` (`{id, progress, message}`) of every job."""
        await pgq.stats()  # fail here, with a proper status code, if the database is away
        return EventSourceResponse(dashboard_events(pgq))

    @router.get("/stats", response_model=dict[str, dict[str, int]],
                summary="Job counts per queue and status")
    async def stats() -> dict[str, dict[str, int]]:
        """For example `{"default": {"queued": 3, "running": 1, "succeeded": 120}}`; finished jobs
        count until the pruner removes them after their retention."""
        return await pgq.stats()

    @router.get("/workers", response_model=list[WorkerOut], summary="Running workers")
    async def list_workers() -> list[WorkerOut]:
        return [WorkerOut.of(worker) for worker in await pgq.workers()]


def _conflict(job: JobOut, detail: str) -> JSONResponse:
    return JSONResponse(JobConflict(**job.model_dump(), detail=detail).model_dump(mode="json"), 409)
