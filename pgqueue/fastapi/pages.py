"""The dashboard: server-rendered pages, kept live by a little JavaScript (``static/``).

Pages link to each other and to the API through the router's base path, taken from the request's
own path (root path, mounts and prefix included), so the dashboard works wherever it is mounted.
Static files are served by a plain route, not a mounted app, so the router's dependencies guard
them like everything else.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import __version__
from ..job import FINAL_STATUSES, Job, JobStatus
from ..limits import QueueInfo
from ..queue import PgQueue
from .params import Cursor, JobId, QueueFilter, QueueName, StatusFilter, TaskFilter

_HERE = Path(__file__).parent
_STATIC = {path.name: path for path in (_HERE / "static").iterdir() if path.is_file()}
_STATUSES = list(JobStatus)
_RECENT = 15
_PAGE = 50
_DEPENDENTS_SHOWN = 100  # on a job's page; the API lists more


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(),
        auto_reload=False,
    )
    env.filters.update(pretty=_pretty, path=lambda value: quote(str(value), safe=""))
    env.globals.update(
        statuses=_STATUSES, final=FINAL_STATUSES, duration=_duration, version=__version__,
        limits_text=_limits_text,
    )
    return env


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _limits_text(queue: QueueInfo) -> str:
    """A queue's limits in a few words, e.g. ``"3 / 5 running · 100 per 60 s · 1 per group"``."""
    limits = queue.limits
    parts = []
    if limits["concurrency"] is not None:
        parts.append(f"{queue.running} / {limits['concurrency']} running")
    if limits["rate"] is not None:
        parts.append(f"{limits['rate']} per {limits['period']:g} s")
    if limits["group_concurrency"] is not None:
        parts.append(f"{limits['group_concurrency']} per group")
    return " · ".join(parts) or "none"


def _duration(job: Job) -> str | None:
    """How long the job ran (or has been running), e.g. ``"1.2 s"`` or ``"3 min 4 s"``."""
    if job.started_at is None:
        return None
    end = job.finished_at or datetime.now(UTC)
    seconds = max(0.0, (end - job.started_at).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _base(request: Request, depth: int) -> str:
    """The dashboard's root URL path, e.g. ``/admin/pgqueue/``: the request's full path (root
    path and prefixes included) less the ``depth`` segments of the page's own route."""
    segments = request.url.path.split("/")
    base = "/".join(segments[: len(segments) - depth])
    return base if base.endswith("/") else base + "/"


def add_pages(router: APIRouter, pgq: PgQueue) -> None:
    templates = _templates()

    def render(request: Request, name: str, depth: int, **context: Any) -> str:
        # A string, not a Response: FastAPI then adds the headers that dependencies set (a
        # login cookie, say), which it drops from a Response returned as is.
        return templates.get_template(name).render(base=_base(request, depth), **context)

    @router.get("/", response_class=HTMLResponse, summary="The dashboard")
    async def overview(request: Request) -> str:
        """Counts per queue and status, recent and failed jobs, workers; live."""
        queues = await pgq.queues()
        totals = {status: sum(q.counts.get(status, 0) for q in queues) for status in _STATUSES}
        return render(
            request, "overview.html", 0, page="overview", totals=totals, queues=queues,
            recent=await pgq.list_jobs(limit=_RECENT),
            failed=await pgq.list_jobs(status=JobStatus.FAILED, limit=_RECENT),
            workers=await pgq.workers(),
        )

    @router.get("/ui/jobs", response_class=HTMLResponse, include_in_schema=False)
    async def jobs(
        request: Request,
        status: StatusFilter = None,
        queue: QueueFilter = None,
        task: TaskFilter = None,
        before: Cursor = None,
    ) -> str:
        found = await pgq.list_jobs(
            status=status, queue=queue, task=task, before_id=before, limit=_PAGE + 1
        )
        page = found[:_PAGE]
        filters = {"status": status, "queue": queue, "task": task}
        return render(
            request, "jobs.html", 2, page="failed" if status == "failed" else "jobs",
            jobs=page, filters=filters, before=before,
            next_cursor=page[-1].id if len(found) > _PAGE else None,
            known_queues=sorted(await pgq.stats()),
        )

    @router.get("/ui/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    async def job(request: Request, job_id: JobId) -> str:
        found = await pgq.get_job(job_id)
        if found is None:
            raise HTTPException(404, f"no job with id {job_id}")
        dependencies = await pgq.dependencies(job_id)
        return render(
            request, "job.html", 3, page="jobs", job=found,
            logs=await pgq.job_logs(job_id),
            dependencies=dependencies,
            waiting_for=[job for job in dependencies if not job.status.is_final],
            dependents=await pgq.dependents(job_id, _DEPENDENTS_SHOWN),
        )

    @router.get("/ui/queues/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def queue(request: Request, name: QueueName) -> str:
        found = [q for q in await pgq.queues() if q.name == name]
        if not found:
            raise HTTPException(404, f"no queue {name!r}: it has no jobs, limits or pause")
        return render(request, "queue.html", 3, page="overview", queue=found[0])

    @router.get("/static/{filename}", include_in_schema=False)
    async def static(filename: str) -> FileResponse:
        path = _STATIC.get(filename)
        if path is None:
            raise HTTPException(404, f"no static file {filename!r}")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
