"""The messages of pgqueue's two notification channels, written and read in this one module.

Both channels are per schema (NOTIFY is already per database):

* ``<schema>_jobs`` wakes workers: ``queued:<queue>`` when work is ready to run in a queue,
  ``cancel:<id>`` when a running job must stop.
* ``<schema>_events`` tells watchers (``pgq.wait``, the dashboard) what happened, as JSON:
  ``{"kind": "status", "jobs": [[id, status], ...]}``, ``{"kind": "progress", "id", "progress",
  "message"}`` and ``{"kind": "log", "id", "message"}``.

Some messages are sent by SQL statements (in the transaction that made the change, or from an
insert's ``RETURNING``), others from Python; the ``sql_*`` functions give the SQL expressions, so
each format is written once here, next to the parser that reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]
"""What watchers get: ``{"kind": "status", "id", "status"}``, ``{"kind": "progress", "id",
"progress", "message"}``, ``{"kind": "log", "id", "message"}``, or ``{"kind": "resync"}`` after a
reconnect, when events may have been missed and a watcher should re-read what it shows."""

RESYNC: Event = {"kind": "resync"}

_STATUS_CHANGES_PER_MESSAGE = 250  # keeps each payload well under NOTIFY's 8000 bytes


def channel_names(schema: str) -> tuple[str, str]:
    """The (jobs, events) notification channels of a schema."""
    return f"{schema}_jobs", f"{schema}_events"


# -- the jobs channel ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wake:
    """Jobs are ready to run in ``queue``."""

    queue: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Running job ``job_id`` was cancelled: its worker should stop it."""

    job_id: int


def read_jobs_message(payload: str) -> Wake | Cancel | None:
    """The message on the jobs channel, or None for one this version does not know."""
    kind, _, value = payload.partition(":")
    if kind == "queued":
        return Wake(value)
    if kind == "cancel" and value.isdigit():
        return Cancel(int(value))
    return None


def sql_wake(channel: str, queue: str) -> str:
    """SQL that wakes the workers of the queue named by the SQL expression ``queue``."""
    return f"pg_notify('{channel}', 'queued:' || {queue})"


def sql_cancel(channel: str, job_id: str) -> str:
    """SQL that tells the worker running the job ``job_id`` (an SQL expression) to stop it."""
    return f"pg_notify('{channel}', 'cancel:' || {job_id})"


# -- the events channel --------------------------------------------------------------------------


def status_messages(changes: Sequence[tuple[int, str]]) -> list[str]:
    """Payloads announcing status changes ``(job id, status)``, in order."""
    return [
        json.dumps({"kind": "status", "jobs": changes[i : i + _STATUS_CHANGES_PER_MESSAGE]})
        for i in range(0, len(changes), _STATUS_CHANGES_PER_MESSAGE)
    ]


def sql_status(channel: str, pairs: str) -> str:
    """SQL that announces status changes; ``pairs`` is an SQL expression giving a JSON array of
    ``[id, status]`` arrays (``json_agg(json_build_array(id, status))``)."""
    return f"pg_notify('{channel}', json_build_object('kind', 'status', 'jobs', {pairs})::text)"


def sql_progress(channel: str, job_id: str, progress: str, message: str) -> str:
    return (
        f"pg_notify('{channel}', json_build_object('kind', 'progress', 'id', {job_id}, "
        f"'progress', {progress}, 'message', {message})::text)"
    )


def sql_log(channel: str, job_id: str, message: str) -> str:
    return (
        f"pg_notify('{channel}', json_build_object('kind', 'log', 'id', {job_id}, "
        f"'message', {message})::text)"
    )


def read_events(payload: str) -> list[Event]:
    """The events one payload carries (a status message names many jobs: one event each)."""
    message = json.loads(payload)
    kind = message.get("kind")
    if kind == "status":
        return [{"kind": "status", "id": job_id, "status": status}
                for job_id, status in message["jobs"]]
    if kind in ("progress", "log"):
        return [message]
    return []
