"""Server-Sent Events: one job's progress, log lines and status, and the dashboard's live feed.

Both streams subscribe to ``pgq.events`` *before* reading the current state, so nothing that
happens in between is lost, and both send that state first: a client that connects late (or
reconnects) sees where things stand without waiting for the next change. Notifications are only a
wake-up: log lines and job snapshots are re-read from the database, so a lost or coalesced
notification costs a little latency, never a wrong picture.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from sse_starlette import ServerSentEvent

from ..events import Event
from ..job import Job
from ..queue import PgQueue
from .schemas import JobOut, LogEvent, ProgressEvent, StatusChange

RECHECK_INTERVAL = 30.0
"""Longest a job stream waits without news before re-reading the job (a lost notification)."""

STATS_INTERVAL = 1.0
"""The dashboard feed sends changed counts at most this often…"""

STATS_REFRESH = 5.0
"""…and re-reads them this often when no event arrived (new and promoted jobs send none)."""

_LOG_PAGE = 1000


def _sse(event: str, data: BaseModel | dict[str, Any]) -> ServerSentEvent:
    if isinstance(data, BaseModel):
        return ServerSentEvent(data=data.model_dump_json(), event=event)
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=event)


async def _next_batch(queue: asyncio.Queue[Event], timeout: float) -> list[Event]:
    """The next event and every other one already waiting; empty after ``timeout`` seconds."""
    try:
        events = [await asyncio.wait_for(queue.get(), timeout)]
    except TimeoutError:
        return []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def _latest_progress(events: list[Event]) -> dict[int, ProgressEvent]:
    latest = {}
    for event in events:
        if event["kind"] == "progress":
            latest[event["id"]] = ProgressEvent(
                id=event["id"], progress=event["progress"], message=event.get("message")
            )
    return latest


async def job_events(pgq: PgQueue, job_id: int) -> AsyncIterator[ServerSentEvent]:
    """``status`` (the whole job), ``progress`` and ``log`` events of one job, ending once it is
    final. In each round log lines come before the status they led to, so the last event of the
    stream is the final status."""
    async with pgq.events.watch(job_id) as queue:
        last_log = 0

        async def new_logs() -> AsyncIterator[ServerSentEvent]:
            nonlocal last_log
            while True:
                lines = await pgq.job_logs(job_id, after_id=last_log, limit=_LOG_PAGE)
                for line in lines:
                    last_log = line.id
                    yield _sse("log", LogEvent(job_id=job_id, id=line.id, at=line.at,
                                               message=line.message))
                if len(lines) < _LOG_PAGE:
                    return

        job = await pgq.get_job(job_id)
        if job is None:
            return
        async for event in new_logs():
            yield event
        yield _sse("status", JobOut.of(job))
        shown = _snapshot_key(job)
        while not job.status.is_final:
            events = await _next_batch(queue, RECHECK_INTERVAL)
            kinds = {event["kind"] for event in events} or {"resync"}
            for progress in _latest_progress(events).values():
                yield _sse("progress", progress)
            if kinds & {"log", "status", "resync"}:
                async for event in new_logs():
                    yield event
            if kinds & {"status", "resync"}:
                latest = await pgq.get_job(job_id)
                if latest is None:
                    return  # pruned or deleted meanwhile
                job = latest
                if "status" in kinds or _snapshot_key(job) != shown:
                    yield _sse("status", JobOut.of(job))
                    shown = _snapshot_key(job)


def _snapshot_key(job: Job) -> tuple[object, ...]:
    return (job.status, job.attempts, job.finished_at)


async def dashboard_events(pgq: PgQueue) -> AsyncIterator[ServerSentEvent]:
    """Every job's ``status`` changes and ``progress``, and ``stats`` (counts per queue and status)
    whenever they changed, at most once a second. Runs until the client goes away."""
    async with pgq.events.watch(None) as queue:
        stats = await pgq.stats(max_age=STATS_INTERVAL)
        yield _sse("stats", stats)
        checked = time.monotonic()
        stale = False
        while True:
            due = checked + (STATS_INTERVAL if stale else STATS_REFRESH)
            events = await _next_batch(queue, max(0.0, due - time.monotonic()))
            for event in events:
                if event["kind"] == "status":
                    yield _sse("status", StatusChange(id=event["id"], status=event["status"]))
                stale = stale or event["kind"] in ("status", "resync")
            for progress in _latest_progress(events).values():
                yield _sse("progress", progress)
            if time.monotonic() >= due:
                latest = await pgq.stats(max_age=STATS_INTERVAL)
                if latest != stats:
                    stats = latest
                    yield _sse("stats", stats)
                checked = time.monotonic()
                stale = False
