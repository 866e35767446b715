"""Tasks: plain typed functions that pgqueue can run later, and the ways to enqueue them.

A ``Task`` wraps the user's function. Calling it runs the function in-process; ``enqueue`` writes a
job row instead. Arguments are checked against the signature and encoded to JSON before anything is
written, so a bad call fails at the caller, naming the task and the argument; the worker re-validates
them from the type hints (a pydantic model comes back as a model, an ISO string as a ``datetime``).
"""

from __future__ import annotations

import inspect
import json
import math
import random
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from . import connections
from .context import JobContext
from .errors import PayloadTooLarge
from .job import Job, JobStatus

if TYPE_CHECKING:
    from .queue import PgQueue

RetryDelay = float | Callable[[int], float]
OnFailure = Callable[[Job], Any]

_MAX_UNIQUE_ROUNDS = 5


def exponential_backoff(attempt: int) -> float:
    """The default retry delay: 2, 4, 8 … seconds after attempts 1, 2, 3 …, capped at one hour,
    each scaled by a random factor in [0.5, 1] so that a burst of failures does not retry in step."""
    return min(3600.0, 2.0**attempt) * random.uniform(0.5, 1.0)


# Values that are their own JSON: no conversion needed at enqueue.
_JSON_SCALARS = frozenset({int, str, float, bool, type(None)})


class InvalidArguments(ValueError):
    """The stored arguments no longer fit the task's signature: retrying cannot help."""


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-enqueue overrides of a task's defaults; ``None`` means "the task's own"."""

    delay: float | timedelta | None = None
    run_at: datetime | None = None
    priority: int | None = None
    queue: str | None = None
    max_attempts: int | None = None
    unique_key: str | None = None

    def __post_init__(self) -> None:
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

    def scheduled_for(self) -> datetime | None:
        if self.run_at is not None:
            return self.run_at
        if self.delay:
            delay = self.delay if isinstance(self.delay, timedelta) else timedelta(seconds=self.delay)
            return datetime.now(UTC) + delay
        return None


# Frozen, so every enqueue without options shares it instead of building and checking its own.
_NO_OPTIONS = EnqueueOptions()


class Task:
    """A function registered with a ``PgQueue``; see ``PgQueue.task``."""

    def __init__(
        self,
        pgq: PgQueue,
        fn: Callable[..., Any] | None,
        *,
        name: str,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        timeout: float | None = None,
        retry_delay: RetryDelay | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"task {name}: max_attempts must be at least 1")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"task {name}: timeout must be a positive number of seconds")
        self.pgq = pgq
        self.fn = fn
        self.name = name
        self.queue = queue
        self.priority = priority
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.retry_delay = exponential_backoff if retry_delay is None else retry_delay
        self.on_failure = on_failure
        self.is_async = fn is not None and inspect.iscoroutinefunction(fn)
        if fn is not None:
            self.__doc__ = fn.__doc__
            self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, as a plain call."""
        if self.fn is None:
            raise TypeError(f"task {self.name} is not defined in this process; enqueue it instead")
        return self.fn(*args, **kwargs)

    # -- enqueue ---------------------------------------------------------------------------------

    def using(self, conn: Any = None, **options: Any) -> Enqueuer:
        """Enqueue through ``conn`` (in its transaction) and/or with per-job options:
        ``delay``, ``run_at``, ``priority``, ``queue``, ``max_attempts``, ``unique_key``."""
        try:
            opts = EnqueueOptions(**options) if options else _NO_OPTIONS
        except TypeError:
            unknown = sorted(set(options) - set(EnqueueOptions.__dataclass_fields__))
            raise TypeError(
                f"task {self.name}: unknown enqueue option(s) {', '.join(unknown)}; "
                f"known: {', '.join(EnqueueOptions.__dataclass_fields__)}"
            ) from None
        return Enqueuer(self, conn, opts)

    async def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Write one job in its own short transaction."""
        return await Enqueuer(self, None, _NO_OPTIONS).enqueue(*args, **kwargs)

    async def enqueue_many(self, calls: Iterable[Any]) -> list[Job]:
        """Write many jobs in one statement; see ``Enqueuer.enqueue_many``."""
        return await Enqueuer(self, None, _NO_OPTIONS).enqueue_many(calls)

    # -- arguments -------------------------------------------------------------------------------

    @cached_property
    def _context_parameter(self) -> str | None:
        for name, annotation in self._hints.items():
            if annotation is JobContext:
                return name
        return None

    @cached_property
    def _hints(self) -> dict[str, Any]:
        if self.fn is None:
            return {}
        try:
            return typing.get_type_hints(self.fn)
        except Exception:  # unresolvable forward references: run without validation
            return {
                name: p.annotation
                for name, p in inspect.signature(self.fn).parameters.items()
                if p.annotation is not inspect.Parameter.empty and not isinstance(p.annotation, str)
            }

    @cached_property
    def _signature(self) -> inspect.Signature:
        """The signature a caller sees: the function's, without the injected context."""
        assert self.fn is not None
        signature = inspect.signature(self.fn)
        return signature.replace(
            parameters=[p for n, p in signature.parameters.items() if n != self._context_parameter]
        )

    @cached_property
    def _adapters(self) -> dict[str, TypeAdapter[Any]]:
        adapters = {}
        for name, parameter in self._signature.parameters.items():
            annotation = self._hints.get(name, Any)
            if annotation is Any or parameter.kind in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                continue
            adapters[name] = TypeAdapter(annotation)
        return adapters

    @cached_property
    def _plain_arity(self) -> int | None:
        """How many arguments a plain positional call passes, when the signature (without the
        context) is only ordinary parameters and the context, if any, comes last: then such a call
        needs no binding on either side. None otherwise."""
        if self.fn is None:
            return None
        full = list(inspect.signature(self.fn).parameters.values())
        if self._context_parameter is not None and full[-1].name != self._context_parameter:
            return None
        ordinary = [p for p in full if p.name != self._context_parameter]
        if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in ordinary):
            return None
        return len(ordinary)

    @cached_property
    def _positional_adapters(self) -> list[tuple[Any, TypeAdapter[Any] | None]]:
        """(annotation, adapter) per ordinary parameter, in order, for the plain-call path."""
        return [(self._hints.get(name, Any), self._adapters.get(name))
                for name in self._signature.parameters]

    def encode_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> EncodedCall:
        """Check a call against the signature and encode its arguments as JSON."""
        if self.fn is not None and (kwargs or len(args) != self._plain_arity):
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"task {self.name}: {exc}") from None
        if not kwargs and self._plainly_json(args):
            return EncodedCall(list(args), {})
        encoded = []
        for where, value in [*enumerate(args), *kwargs.items()]:
            try:
                encoded.append(to_jsonable_python(value))
            except (PydanticSerializationError, TypeError, ValueError) as exc:
                label = f"argument {where + 1}" if isinstance(where, int) else f"argument {where!r}"
                raise TypeError(
                    f"task {self.name}: {label} is not JSON-serializable "
                    f"({type(value).__name__}): {exc}"
                ) from None
        call = EncodedCall(encoded[: len(args)], dict(zip(kwargs, encoded[len(args) :], strict=True)))
        limit = self.pgq.settings.max_payload_bytes
        try:
            size = len(call.args_json) + len(call.kwargs_json)
        except ValueError as exc:
            raise ValueError(f"task {self.name}: {exc}") from None
        if size > limit:
            raise PayloadTooLarge(
                f"task {self.name}: arguments encode to {size} bytes, over the limit of {limit} "
                "(PGQUEUE_MAX_PAYLOAD_BYTES); store large data elsewhere and pass a reference"
            )
        return call

    def _plainly_json(self, args: Sequence[Any]) -> bool:
        """True if the values need no conversion and cannot come near the payload limit (even
        escaped six times over), so they are stored as they are without a size check."""
        text = 0
        for value in args:
            kind = type(value)
            if kind is str:
                text += len(value)
            elif kind is float:
                if not math.isfinite(value):
                    return False
            elif kind not in _JSON_SCALARS:
                return False
        return 6 * text + 32 * len(args) < self.pgq.settings.max_payload_bytes

    def prepare_call(
        self, args: list[Any], kwargs: dict[str, Any], ctx: JobContext
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn a job's stored arguments back into a call: validated values, context injected."""
        assert self.fn is not None
        if not kwargs and len(args) == self._plain_arity:
            return self._prepare_plain_call(args, ctx), {}
        try:
            bound = self._signature.bind(*args, **kwargs)
            for name, adapter in self._adapters.items():
                if name in bound.arguments:
                    bound.arguments[name] = adapter.validate_python(bound.arguments[name])
        except (TypeError, ValidationError) as exc:
            raise InvalidArguments(f"task {self.name}: stored arguments do not fit: {exc}") from None
        if self._context_parameter is None:
            return bound.args, bound.kwargs
        arguments = dict(bound.arguments)
        arguments[self._context_parameter] = ctx
        full = inspect.signature(self.fn)
        ordered = {name: arguments[name] for name in full.parameters if name in arguments}
        call = inspect.BoundArguments(full, ordered)  # type: ignore[arg-type]
        return call.args, call.kwargs

    def _prepare_plain_call(self, args: list[Any], ctx: JobContext) -> tuple[Any, ...]:
        values = []
        try:
            for value, (annotation, adapter) in zip(args, self._positional_adapters, strict=True):
                if adapter is not None and type(value) is not annotation:
                    value = adapter.validate_python(value)
                values.append(value)
        except ValidationError as exc:
            raise InvalidArguments(f"task {self.name}: stored arguments do not fit: {exc}") from None
        if self._context_parameter is not None:
            values.append(ctx)
        return tuple(values)

    def delay_before_retry(self, attempt: int) -> float:
        delay = self.retry_delay(attempt) if callable(self.retry_delay) else self.retry_delay
        return max(0.0, float(delay))


class EncodedCall:
    """A call's arguments as JSON-ready values; the JSON text is made when first needed (a batch
    of calls is dumped at once instead)."""

    __slots__ = ("args", "kwargs", "_args_json", "_kwargs_json")

    def __init__(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs
        self._args_json: str | None = None
        self._kwargs_json: str | None = None

    @property
    def args_json(self) -> str:
        if self._args_json is None:
            self._args_json = dumps(self.args)
        return self._args_json

    @property
    def kwargs_json(self) -> str:
        if self._kwargs_json is None:
            self._kwargs_json = dumps(self.kwargs)
        return self._kwargs_json


# Made once: ``json.dumps(..., allow_nan=False)`` would build a new encoder on every call.
_STRICT_JSON = json.JSONEncoder(allow_nan=False)


def dumps(value: Any) -> str:
    """JSON text, refusing NaN and infinities (PostgreSQL's jsonb has no place for them)."""
    try:
        return _STRICT_JSON.encode(value)
    except ValueError as exc:
        raise ValueError(f"arguments are not valid JSON: {exc}") from None


class Enqueuer:
    """A task bound to a connection and options, as returned by ``Task.using``."""

    def __init__(self, task: Task, conn: Any, options: EnqueueOptions) -> None:
        self.task = task
        self.conn = conn
        self.options = options

    async def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Write one job; with a connection, inside its current transaction."""
        return (await self._write([self.task.encode_arguments(args, kwargs)]))[0]

    async def enqueue_many(self, calls: Iterable[Any]) -> list[Job]:
        """Write one job per call in a single statement.

        Each call is a tuple of positional arguments, a dict of keyword arguments, or a single
        value taken as the only positional argument.
        """
        return await self._write(self._encode_many(calls))

    def enqueue_sync(self, *args: Any, **kwargs: Any) -> Job:
        """As ``enqueue``, through a synchronous SQLAlchemy ``Session`` or ``Connection``."""
        return self._write_sync([self.task.encode_arguments(args, kwargs)])[0]

    def enqueue_many_sync(self, calls: Iterable[Any]) -> list[Job]:
        return self._write_sync(self._encode_many(calls))

    def _encode_many(self, calls: Iterable[Any]) -> list[EncodedCall]:
        encoded = []
        for call in calls:
            if isinstance(call, tuple):
                encoded.append(self.task.encode_arguments(call, {}))
            elif isinstance(call, dict):
                encoded.append(self.task.encode_arguments((), call))
            else:
                encoded.append(self.task.encode_arguments((call,), {}))
        return encoded

    def _batch(self, encoded: list[EncodedCall]) -> _Batch:
        return _Batch(self.task.pgq.statements, self.task, self.options, encoded)

    async def _write(self, encoded: list[EncodedCall]) -> list[Job]:
        batch = self._batch(encoded)
        if not encoded:
            return []
        if self.conn is None:
            async with self.task.pgq.acquire() as conn:
                return await _drive(batch, conn)
        return await _drive(batch, self.conn)

    def _write_sync(self, encoded: list[EncodedCall]) -> list[Job]:
        if self.conn is None:
            raise TypeError(
                f"task {self.task.name}: enqueue_sync writes through your SQLAlchemy Session or "
                "Connection: use task.using(session).enqueue_sync(...)"
            )
        batch = self._batch(encoded)
        if not encoded:
            return []
        for _round in range(_MAX_UNIQUE_ROUNDS):
            batch.took_inserted(connections.fetch_sync(self.conn, *batch.insert()))
            if batch.done:
                return batch.jobs()
            batch.took_existing(connections.fetch_sync(self.conn, *batch.lookup()))
            if batch.done:
                return batch.jobs()
        raise batch.gave_up()


async def _drive(batch: _Batch, conn: Any) -> list[Job]:
    """Insert; for unique keys that already had a job, return that job (retrying the insert if it
    finished in between)."""
    for _round in range(_MAX_UNIQUE_ROUNDS):
        batch.took_inserted(await connections.fetch(conn, *batch.insert()))
        if batch.done:
            return batch.jobs()
        batch.took_existing(await connections.fetch(conn, *batch.lookup()))
        if batch.done:
            return batch.jobs()
    raise batch.gave_up()


class _Batch:
    """The jobs of one enqueue call, through the insert and, for a unique key, look-up rounds.

    With a ``unique_key`` every call of the batch shares the key, so only the first can be
    written: all of them get that job, or the unfinished one that already had the key.
    """

    def __init__(
        self,
        statements: Any,
        task: Task,
        options: EnqueueOptions,
        encoded: list[EncodedCall],
    ) -> None:
        self.statements = statements
        self.task = task
        self.queue = options.queue or task.queue
        self.priority = task.priority if options.priority is None else options.priority
        self.max_attempts = options.max_attempts or task.max_attempts
        self.unique_key = options.unique_key
        self.run_at = options.scheduled_for()
        self.encoded = encoded
        self.found: list[Job] | None = None

    @property
    def done(self) -> bool:
        return self.found is not None

    def jobs(self) -> list[Job]:
        assert self.found is not None
        return self.found

    def insert(self) -> tuple[str, list[Any]]:
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
        ]
        return self.statements.insert(many=many, unique=self.unique_key is not None), params

    def took_inserted(self, rows: Sequence[Any]) -> None:
        if not rows or not rows[0]["ids"]:
            return  # the unique key is taken
        ids, created_at = rows[0]["ids"], rows[0]["created_at"]
        jobs = self._new_jobs(ids, created_at)
        self.found = jobs if self.unique_key is None else jobs * len(self.encoded)

    def lookup(self) -> tuple[str, list[Any]]:
        return self.statements.unfinished_by_unique_key, [[self.unique_key]]

    def took_existing(self, rows: Sequence[Any]) -> None:
        if rows:  # none: it finished meanwhile, and the next round inserts again
            self.found = [Job.from_row(rows[0])] * len(self.encoded)

    def gave_up(self) -> RuntimeError:
        return RuntimeError(
            f"task {self.task.name}: unique_key {self.unique_key!r} kept changing hands while "
            "enqueueing; try again"
        )

    def _new_jobs(self, ids: list[int], created_at: datetime) -> list[Job]:
        status = (
            JobStatus.SCHEDULED
            if self.run_at is not None and self.run_at > created_at
            else JobStatus.QUEUED
        )
        task, queue, priority = self.task.name, self.queue, self.priority
        max_attempts, run_at, key = self.max_attempts, self.run_at or created_at, self.unique_key
        # Positional, in Job's field order: keywords cost twice as much on a batch of thousands.
        return [
            Job(job_id, task, queue, status, call.args, call.kwargs, priority, 0, max_attempts,
                run_at, created_at, None, None, None, None, None, None, key, None)
            for job_id, call in zip(ids, self.encoded[: len(ids)], strict=True)
        ]
