"""Run one claimed job and decide what becomes of it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..arguments import InvalidArguments, holds_nul
from ..context import JobContext
from ..decisions import Fail, Snooze
from ..job import Job, JobStatus
from ..task import Task
from .threads import SyncRunner

logger = logging.getLogger("pgqueue.worker")


@dataclass(slots=True)
class Outcome:
    """What one run of a job produced, ready for the ``OutcomeWriter``."""

    job: Job
    status: JobStatus
    result_json: str | None = None
    error: str | None = None
    delay: float = 0.0
    snoozed: bool = False
    """``Snooze``: scheduled ``delay`` seconds on, the run not counted (status is SCHEDULED)."""
    recorded: bool = False
    """Set once written: the row took this outcome (False: cancelled or rescued meanwhile)."""
    completed_in: bool = False
    """The task called ``ctx.complete_in``: if its transaction committed, the row is final and
    the write of this outcome, guarded like any other, leaves it alone."""

    @property
    def row(self) -> tuple[int, int, str, str | None, str | None, float]:
        status = "snoozed" if self.snoozed else self.status
        return (self.job.id, self.job.attempts, status, self.result_json, self.error, self.delay)


def _failure(task: Task | None, job: Job, error: str, retryable: bool) -> Outcome:
    error = error.replace("\x00", "\\x00")  # PostgreSQL text cannot hold U+0000
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


async def execute(task: Task, job: Job, ctx: JobContext, threads: SyncRunner) -> Outcome:
    """Run the task for ``job``. Cancellation (of the job, or of the worker) propagates."""
    started = time.monotonic()
    logger.debug("job %s %s: started, attempt %s of %s", job.id, job.task, job.attempts,
                 job.max_attempts)
    try:
        args, kwargs = task.arguments.decode(job.args, job.kwargs, ctx)
        result = await _call(task, args, kwargs, threads, job.id)
    except InvalidArguments as exc:
        logger.error("job %s %s: %s", job.id, job.task, exc)
        return _failure(task, job, f"InvalidArguments: {exc}", retryable=False)
    except Snooze as snooze:
        logger.info("job %s %s: snoozed for %s s (attempt %s not counted)", job.id, job.task,
                    snooze.seconds, job.attempts)
        return Outcome(job, JobStatus.SCHEDULED, delay=snooze.seconds, snoozed=True)
    except Fail as fail:
        logger.error("job %s %s: failed by the task on attempt %s of %s, no more attempts: %s",
                     job.id, job.task, job.attempts, job.max_attempts, fail.message)
        return _failure(task, job, f"Fail: {fail.message}", retryable=False)
    except _TimedOut:
        ctx.signal_cancelled()
        error = f"TimeoutError: task {job.task} did not finish within its timeout of {task.timeout} s"
        logger.warning("job %s %s: timed out after %s s (attempt %s of %s)", job.id, job.task,
                       task.timeout, job.attempts, job.max_attempts)
        return _failure(task, job, error, retryable=True)
    except Exception as exc:
        error = "".join(traceback.format_exception(exc))
        outcome = _failure(task, job, error, retryable=True)
        outcome.completed_in = ctx.completed_in
        if outcome.status is JobStatus.FAILED:
            logger.error("job %s %s: failed on attempt %s of %s: %r", job.id, job.task,
                         job.attempts, job.max_attempts, exc)
        else:
            logger.warning("job %s %s: raised %r on attempt %s of %s; retrying in %.1f s", job.id,
                           job.task, exc, job.attempts, job.max_attempts, outcome.delay)
        return outcome
    try:
        result_json = encode_result(result)
    except ValueError as exc:
        error = f"ResultNotSerializable: task {job.task} returned {exc}"
        logger.error("job %s %s: %s", job.id, job.task, error)
        return Outcome(job, JobStatus.FAILED, error=error, completed_in=ctx.completed_in)
    if logger.isEnabledFor(logging.INFO):
        logger.info("job %s %s: succeeded in %.3f s", job.id, job.task, time.monotonic() - started)
    return Outcome(job, JobStatus.SUCCEEDED, result_json=result_json,
                   completed_in=ctx.completed_in)


def encode_result(result: Any) -> str | None:
    """A task's result as JSON text; ``ValueError`` saying why when it cannot be stored."""
    try:
        if result is None:
            return None
        if type(result) in (int, str, bool):
            return json.dumps(result)
        result_json = json.dumps(to_jsonable_python(result), allow_nan=False)
        if "\\u0000" in result_json and holds_nul(json.loads(result_json)):
            raise ValueError("it holds the character U+0000, which PostgreSQL cannot store")
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise ValueError(
            f"a {type(result).__name__}, which is not JSON-serializable: {exc}"
        ) from None
    return result_json


class _TimedOut(Exception):
    """The task's own timeout expired (as opposed to a TimeoutError raised by the task)."""


async def _call(
    task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], threads: SyncRunner, key: int
) -> Any:
    assert task.fn is not None
    work: Any = (task.fn(*args, **kwargs) if task.is_async
                 else threads.run(task.fn, args, kwargs, key=key))
    if task.timeout is None:
        return await work
    try:
        async with asyncio.timeout(task.timeout) as scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise _TimedOut from None
        raise
