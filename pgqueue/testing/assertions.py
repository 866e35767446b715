"""``assert_enqueued`` and ``refute_enqueued``: what a test expects to be waiting to run.

They look at unfinished jobs (queued, scheduled, running): what the code under test left for a
worker. A failure says what was expected and lists the unfinished jobs there were instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import to_jsonable_python

from ..job import Job
from ..queue import PgQueue
from ..task import Task

_SCANNED = 1000  # unfinished jobs looked at: a test's database holds a handful
_LISTED = 20  # of those, how many a failure message lists


async def assert_enqueued(
    pgq: PgQueue,
    task: Task | str,
    *,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    count: int | None = None,
) -> list[Job]:
    """Fail unless unfinished jobs of ``task`` (a task or its name) match; return them.

    ``args`` and ``kwargs``, when given, must equal the job's as stored (JSON: tuples become
    lists, pydantic models dicts); ``count``: exactly that many match (default: at least one).
    """
    matching, unfinished = await _find(pgq, task, args, kwargs, queue)
    if (len(matching) == count) if count is not None else matching:
        return matching
    wanted = "at least 1" if count is None else f"exactly {count}"
    raise AssertionError(
        f"expected {wanted} unfinished job(s) {_describe(task, args, kwargs, queue)}; "
        f"found {len(matching)}.\n{_listing(unfinished)}"
    )


async def refute_enqueued(
    pgq: PgQueue,
    task: Task | str,
    *,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
) -> None:
    """Fail if any unfinished job of ``task`` matches (the same filters as ``assert_enqueued``)."""
    matching, unfinished = await _find(pgq, task, args, kwargs, queue)
    if matching:
        raise AssertionError(
            f"expected no unfinished job {_describe(task, args, kwargs, queue)}; "
            f"found {len(matching)}.\n{_listing(unfinished)}"
        )


async def _find(
    pgq: PgQueue, task: Task | str, args: Sequence[Any] | None, kwargs: dict[str, Any] | None,
    queue: str | None,
) -> tuple[list[Job], list[Job]]:
    name = _name(task)
    want_args = None if args is None else to_jsonable_python(list(args))
    want_kwargs = None if kwargs is None else to_jsonable_python(kwargs)
    async with pgq.acquire() as conn:
        rows = await conn.fetch(pgq.statements.unfinished_jobs, _SCANNED)
    unfinished = [Job.from_row(row) for row in rows]
    matching = [
        job for job in unfinished
        if job.task == name
        and (want_args is None or job.args == want_args)
        and (want_kwargs is None or job.kwargs == want_kwargs)
        and (queue is None or job.queue == queue)
    ]
    return matching, unfinished


def _name(task: Task | str) -> str:
    if isinstance(task, Task):
        return task.name
    if isinstance(task, str):
        return task
    raise TypeError(f"task must be a Task or a task's name, not {type(task).__name__}")


def _describe(
    task: Task | str, args: Sequence[Any] | None, kwargs: dict[str, Any] | None, queue: str | None
) -> str:
    parts = [f"of task {_name(task)!r}"]
    if args is not None:
        parts.append(f"with args {list(args)!r}")
    if kwargs is not None:
        parts.append(f"with kwargs {kwargs!r}")
    if queue is not None:
        parts.append(f"in queue {queue!r}")
    return " ".join(parts)


def _listing(jobs: list[Job]) -> str:
    if not jobs:
        return "There are no unfinished jobs at all."
    lines = [f"Unfinished jobs ({len(jobs)}{'+' if len(jobs) == _SCANNED else ''}):"]
    for job in jobs[:_LISTED]:
        lines.append(
            f"  #{job.id} {job.task} args={job.args!r} kwargs={job.kwargs!r} "
            f"queue={job.queue!r} status={job.status}"
        )
    if len(jobs) > _LISTED:
        lines.append(f"  … and {len(jobs) - _LISTED} more")
    return "\n".join(lines)
