"""The enqueue write path: a task's encoded calls become job rows, on the caller's connection.

The unique-key rounds (insert; if the key is taken, look up the job that holds it; if that one
finished meanwhile, insert again) are written once, as a generator that yields statements and
receives their rows; an async and a sync driver run it, so asyncpg, async SQLAlchemy, sync
SQLAlchemy and psycopg 3 connections share every decision (``connections`` picks the driver).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .connections import Rows, fetch, fetch_sync
from .arguments import EncodedCall, dumps
from .backend import Backend
from .job import Job, JobStatus
from .tracing import producing, written

_MAX_UNIQUE_ROUNDS = 5

Statement = tuple[str, list[Any]]
_Rounds = Generator[Statement, Rows, list[Job]]


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-enqueue overrides of a task's defaults; ``None`` means "the task's own"."""

    delay: float | timedelta | None = None
    run_at: datetime | None = None
    priority: int | None = None
    queue: str | None = None
    max_attempts: int | None = None
    unique_key: str | None = None
    group: str | None = None
    after: Sequence[Job | int] = ()
    """Jobs (or their ids) this one waits for: it runs once all of them have succeeded."""

    def __post_init__(self) -> None:
        if self.after:
            object.__setattr__(self, "after", _dependency_ids(self.after))
            if self.unique_key is not None:
                raise ValueError(
                    "unique_key and after do not combine: a job that waits holds no unique key; "
                    "enqueue the waiting job without unique_key"
                )
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give either delay or run_at, not both")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise ValueError("run_at must be a timezone-aware datetime (e.g. datetime.now(UTC))")
        if self.delay is not None:
            seconds = self.delay.total_seconds() if isinstance(self.delay, timedelta) else self.delay
            if not isinstance(seconds, (int, float)) or seconds < 0 or math.isnan(seconds):
                raise ValueError(f"delay must be a non-negative number of seconds, got {self.delay!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        if self.queue is not None and not self.queue:
            raise ValueError("queue must be a non-empty string")
        if self.group is not None and not (isinstance(self.group, str) and self.group):
            raise ValueError(f"group must be a non-empty string or None, got {self.group!r}")

    def scheduled_for(self) -> datetime | None:
        if self.run_at is not None:
            return self.run_at
        if self.delay:
            delay = self.delay if isinstance(self.delay, timedelta) else timedelta(seconds=self.delay)
            return datetime.now(UTC) + delay
        return None


def _dependency_ids(after: Any) -> tuple[int, ...]:
    """The distinct ids of ``after`` (jobs or ids), ascending."""
    if isinstance(after, (str, bytes, Job, int)) or not isinstance(after, Iterable):
        raise TypeError(f"after must be a list of jobs or job ids, got {after!r}")
    ids = set()
    for item in after:
        job_id = item.id if isinstance(item, Job) else item
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"after must hold jobs or job ids (int), got {item!r}")
        ids.add(job_id)
    return tuple(sorted(ids))


NO_OPTIONS = EnqueueOptions()
"""Frozen, so every enqueue without options shares it instead of building and checking its own."""


class Enqueueable(Protocol):
    """What the write path needs of a task: its defaults, its encoder and its backend."""

    name: str
    queue: str
    priority: int
    max_attempts: int
    backend: Backend

    def encode(self, args: Sequence[Any], kwargs: dict[str, Any]) -> EncodedCall: ...


class EnqueueHook(Protocol):
    """Told of the jobs every enqueue of one ``PgQueue`` wrote, and on which connection (None: a
    transaction of their own, committed). ``pgqueue.testing.inline`` installs one as its
    backend's ``enqueue_hook``."""

    async def written(self, jobs: list[Job], conn: Any) -> None: ...

    def written_sync(self, jobs: list[Job], conn: Any) -> None: ...


class Enqueuer:
    """A task bound to a connection and options, as returned by ``Task.using``."""

    def __init__(self, task: Enqueueable, conn: Any, options: EnqueueOptions) -> None:
        self.task = task
        self.conn = conn
        self.options = options

    async def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Write one job; with a connection, inside its current transaction."""
        return (await self._write([self.task.encode(args, kwargs)]))[0]

    async def enqueue_many(self, calls: Iterable[Any]) -> list[Job]:
        """Write one job per call in a single statement.

        Each call is a tuple of positional arguments, a dict of keyword arguments, or a single
        value taken as the only positional argument.
        """
        return await self._write(self._encode_many(calls))

    def enqueue_sync(self, *args: Any, **kwargs: Any) -> Job:
        """As ``enqueue``, through a synchronous SQLAlchemy ``Session`` or ``Connection``, or a
        psycopg 3 ``Connection`` (in a Django app: ``connection.connection``), in its current
        transaction."""
        return self._write_sync([self.task.encode(args, kwargs)])[0]

    def enqueue_many_sync(self, calls: Iterable[Any]) -> list[Job]:
        return self._write_sync(self._encode_many(calls))

    def _encode_many(self, calls: Iterable[Any]) -> list[EncodedCall]:
        encoded = []
        for call in calls:
            if isinstance(call, tuple):
                encoded.append(self.task.encode(call, {}))
            elif isinstance(call, dict):
                encoded.append(self.task.encode((), call))
            else:
                encoded.append(self.task.encode((call,), {}))
        return encoded

    async def _write(self, encoded: list[EncodedCall]) -> list[Job]:
        if not encoded:
            return []
        batch = _Batch(self.task, self.options, encoded)
        with producing(self.task.name, batch.queue, len(encoded)) as batch.trace_context:
            if self.conn is None:
                async with self.task.backend.acquire() as conn:
                    jobs = await _run_async(batch.rounds(), conn)
            else:
                jobs = await _run_async(batch.rounds(), self.conn)
            if batch.trace_context is not None:
                written([job.id for job in jobs])
        if (hook := self.task.backend.enqueue_hook) is not None:
            await hook.written(jobs, self.conn)
        return jobs

    def _write_sync(self, encoded: list[EncodedCall]) -> list[Job]:
        if self.conn is None:
            raise TypeError(
                f"task {self.task.name}: enqueue_sync writes through your SQLAlchemy Session or "
                "Connection, or psycopg 3 Connection: use task.using(conn).enqueue_sync(...)"
            )
        if not encoded:
            return []
        batch = _Batch(self.task, self.options, encoded)
        with producing(self.task.name, batch.queue, len(encoded)) as batch.trace_context:
            jobs = _run_sync(batch.rounds(), self.conn)
            if batch.trace_context is not None:
                written([job.id for job in jobs])
        if (hook := self.task.backend.enqueue_hook) is not None:
            hook.written_sync(jobs, self.conn)
        return jobs


async def _run_async(rounds: _Rounds, conn: Any) -> list[Job]:
    try:
        statement = next(rounds)
        while True:
            statement = rounds.send(await fetch(conn, *statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _run_sync(rounds: _Rounds, conn: Any) -> list[Job]:
    try:
        statement = next(rounds)
        while True:
            statement = rounds.send(fetch_sync(conn, *statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class _Batch:
    """The jobs of one enqueue call.

    With a ``unique_key`` every call of the batch shares the key, so only the first can be
    written: all of them get that job, or the unfinished one that already had the key.
    """

    def __init__(self, task: Enqueueable, options: EnqueueOptions, encoded: list[EncodedCall]) -> None:
        self.task = task
        self.queue = options.queue or task.queue
        self.priority = task.priority if options.priority is None else options.priority
        self.max_attempts = options.max_attempts or task.max_attempts
        self.unique_key = options.unique_key
        self.group = options.group
        self.run_at = options.scheduled_for()
        self.after = options.after
        self.encoded = encoded
        self.trace_context: str | None = None
        """The enqueue's OpenTelemetry context (JSON), stored with the jobs; None: not traced."""

    def rounds(self) -> _Rounds:
        """Insert; for a unique key that an unfinished job holds, return that job (and insert
        again if it finished in between)."""
        statements = self.task.backend.statements
        if self.after:
            rows = yield self._insert_after()
            return self._inserted_after(rows[0])
        for _round in range(_MAX_UNIQUE_ROUNDS):
            rows = yield self._insert()
            if rows and rows[0]["ids"]:
                return self._inserted(rows[0]["ids"], rows[0]["created_at"])
            rows = yield statements.unfinished_by_unique_key, [[self.unique_key]]
            if rows:  # none: it finished meanwhile, and the next round inserts again
                return [Job.from_row(rows[0])] * len(self.encoded)
        raise RuntimeError(
            f"task {self.task.name}: unique_key {self.unique_key!r} kept changing hands while "
            "enqueueing; try again"
        )

    def _insert(self) -> Statement:
        calls = self.encoded if self.unique_key is None else self.encoded[:1]
        many = len(calls) > 1
        try:
            args_json = dumps([c.args for c in calls]) if many else calls[0].args_json
            kwargs_json = dumps([c.kwargs for c in calls]) if many else calls[0].kwargs_json
        except ValueError as exc:
            raise ValueError(f"task {self.task.name}: {exc}") from None
        params = [
            self.task.name,
            self.queue,
            self.priority,
            args_json,
            kwargs_json,
            self.max_attempts,
            self.run_at,
            self.unique_key,
            self.group,
            self.trace_context,
        ]
        statement = self.task.backend.statements.insert(many=many, unique=self.unique_key is not None)
        return statement, params

    def _insert_after(self) -> Statement:
        try:
            args_json = dumps([c.args for c in self.encoded])
            kwargs_json = dumps([c.kwargs for c in self.encoded])
        except ValueError as exc:
            raise ValueError(f"task {self.task.name}: {exc}") from None
        params = [self.task.name, self.queue, self.priority, args_json, kwargs_json,
                  self.max_attempts, self.run_at, None, list(self.after), self.group,
                  self.trace_context]
        return self.task.backend.statements.insert_after, params

    def _inserted_after(self, row: Any) -> list[Job]:
        if row["ids"] is None:
            raise ValueError(
                f"task {self.task.name}: after names job(s) that do not exist: "
                f"{', '.join(map(str, sorted(row['missing'])))}; nothing was enqueued"
            )
        created_at, status = row["created_at"], JobStatus(row["status"])
        jobs = []
        for job_id, call in zip(row["ids"], self.encoded, strict=True):
            job = Job.enqueued(job_id, self.task.name, self.queue, status, call.args, call.kwargs,
                               self.priority, self.max_attempts, self.run_at or created_at,
                               created_at, None, self.group)
            job.error = row["error"]
            job.finished_at = created_at if status is JobStatus.CANCELLED else None
            jobs.append(job)
        return jobs

    def _inserted(self, ids: list[int], created_at: datetime) -> list[Job]:
        status = (
            JobStatus.SCHEDULED
            if self.run_at is not None and self.run_at > created_at
            else JobStatus.QUEUED
        )
        task, queue, priority = self.task.name, self.queue, self.priority
        max_attempts, run_at, key = self.max_attempts, self.run_at or created_at, self.unique_key
        group = self.group
        jobs = [
            Job.enqueued(job_id, task, queue, status, call.args, call.kwargs, priority,
                         max_attempts, run_at, created_at, key, group)
            for job_id, call in zip(ids, self.encoded[: len(ids)], strict=True)
        ]
        return jobs if self.unique_key is None else jobs * len(self.encoded)
