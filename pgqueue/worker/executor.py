"""Run one claimed job and decide what becomes of it."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..context import JobContext
from ..job import Job, JobStatus
from ..task import InvalidArguments, Task

logger = logging.getLogger("pgqueue.worker")


@dataclass(slots=True)
class Outcome:
    """What one run of a job produced, ready for ``Completer``."""

    job: Job
    status: JobStatus
    result_json: str | None = None
    error: str | None = None
    delay: float = 0.0
    recorded: bool = False
    """Set by the completer: the row took this outcome (False: cancelled or rescued meanwhile)."""

    @property
    def row(self) -> tuple[int, int, str, str | None, str | None, float]:
        return (self.job.id, self.job.attempts, self.status, self.result_json, self.error, self.delay)


def _failure(task: Task | None, job: Job, error: str, retryable: bool) -> Outcome:
    if retryable and job.attempts < job.max_attempts:
        delay = task.delay_before_retry(job.attempts) if task is not None else 0.0
        status = JobStatus.SCHEDULED if delay > 0 else JobStatus.QUEUED
        return Outcome(job, status, error=error, delay=delay)
    return Outcome(job, JobStatus.FAILED, error=error)


def unknown_task(job: Job, known: list[str]) -> Outcome:
    error = (
        f"UnknownTaskError: task {job.task!r} is not defined in this worker's PgQueue "
        f"(it defines: {', '.join(sorted(known)) or 'nothing'}). Deploy the code that defines it, "
        "or start the worker with the right import path."
    )
    logger.error("job %s %s: %s", job.id, job.task, error)
    return _failure(None, job, error, retryable=True)


async def execute(task: Task, job: Job, ctx: JobContext, threads: Executor) -> Outcome:
    """Run the task for ``job``. Cancellation (of the job, or of the worker) propagates."""
    started = time.monotonic()
    logger.debug("job %s %s: started, attempt %s of %s", job.id, job.task, job.attempts,
                 job.max_attempts)
    try:
        args, kwargs = task.prepare_call(job.args, job.kwargs, ctx)
        result = await _call(task, args, kwargs, threads, ctx)
    except InvalidArguments as exc:
        logger.error("job %s %s: %s", job.id, job.task, exc)
        return _failure(task, job, f"InvalidArguments: {exc}", retryable=False)
    except _TimedOut:
        ctx._cancel()
        error = f"TimeoutError: task {job.task} did not finish within its timeout of {task.timeout} s"
        logger.warning("job %s %s: timed out after %s s (attempt %s of %s)", job.id, job.task,
                       task.timeout, job.attempts, job.max_attempts)
        return _failure(task, job, error, retryable=True)
    except Exception as exc:
        error = "".join(traceback.format_exception(exc))
        outcome = _failure(task, job, error, retryable=True)
        if outcome.status is JobStatus.FAILED:
            logger.error("job %s %s: failed on attempt %s of %s: %r", job.id, job.task,
                         job.attempts, job.max_attempts, exc)
        else:
            logger.warning("job %s %s: raised %r on attempt %s of %s; retrying in %.1f s", job.id,
                           job.task, exc, job.attempts, job.max_attempts, outcome.delay)
        return outcome
    try:
        if result is None:
            result_json = None
        elif type(result) in (int, str, bool):
            result_json = json.dumps(result)
        else:
            result_json = json.dumps(to_jsonable_python(result), allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        error = (f"ResultNotSerializable: task {job.task} returned a {type(result).__name__}, "
                 f"which is not JSON-serializable: {exc}")
        logger.error("job %s %s: %s", job.id, job.task, error)
        return Outcome(job, JobStatus.FAILED, error=error)
    if logger.isEnabledFor(logging.INFO):
        logger.info("job %s %s: succeeded in %.3f s", job.id, job.task, time.monotonic() - started)
    return Outcome(job, JobStatus.SUCCEEDED, result_json=result_json)


class _TimedOut(Exception):
    """The task's own timeout expired (as opposed to a TimeoutError raised by the task)."""


async def _call(
    task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], threads: Executor, ctx: JobContext
) -> Any:
    assert task.fn is not None
    if task.is_async:
        work: Any = task.fn(*args, **kwargs)
    else:
        call = functools.partial(contextvars.copy_context().run, task.fn, *args, **kwargs)
        work = asyncio.get_running_loop().run_in_executor(threads, call)
    if task.timeout is None:
        return await work
    try:
        async with asyncio.timeout(task.timeout) as scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise _TimedOut from None
        raise
