"""OpenTelemetry traces of jobs (the optional extra ``pgqueue[otel]``).

An enqueue opens a PRODUCER span and stores its context with the jobs it writes (the W3C
``traceparent``/``tracestate`` headers, as JSON in ``jobs.trace_context``, through the configured
propagator); each run opens a CONSUMER span named after the task, linked to that context, current
while the task runs (so the task's own spans are its children), with the error recorded on
failure. Attributes follow OpenTelemetry's messaging conventions where they fit.

Without opentelemetry-api installed the one import below fails once and every call here is a
constant: nothing is measured, stored or looked up. With the API but no tracer provider set, the
same (one check per enqueue). Set the provider before building a worker: a worker traces its
runs if one was set by then.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from .job import Job, JobStatus

try:
    from opentelemetry import propagate, trace
except ImportError:  # the extra is not installed: tracing is off
    trace = None

SYSTEM = "pgqueue"

_OFF: AbstractContextManager[None] = nullcontext()


def configured() -> bool:
    """True when OpenTelemetry is installed and the application set a tracer provider."""
    return trace is not None and not isinstance(trace.get_tracer_provider(),
                                                trace.ProxyTracerProvider)


def _tracer() -> Any:
    return trace.get_tracer("pgqueue")


def producing(task: str, queue: str, count: int) -> AbstractContextManager[str | None]:
    """Around an enqueue of ``count`` jobs: yields the context to store with them (JSON text), or
    None when tracing is off."""
    if not configured():
        return _OFF
    return _producer_span(task, queue, count)


@contextmanager
def _producer_span(task: str, queue: str, count: int) -> Iterator[str | None]:
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": queue,
        "pgqueue.task": task,
    }
    if count > 1:
        attributes["messaging.batch.message_count"] = count
    with _tracer().start_as_current_span(
        f"enqueue {task}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        if span.get_span_context().is_valid:
            propagate.inject(carrier)
        yield json.dumps(carrier) if carrier else None


def written(job_ids: list[int]) -> None:
    """Name the job written by the enqueue whose producer span is current."""
    if trace is not None and len(job_ids) == 1:
        trace.get_current_span().set_attribute("messaging.message.id", str(job_ids[0]))


@contextmanager
def consuming(job: Job, stored: str | None) -> Iterator[Callable[[JobStatus, str | None], None]]:
    """A CONSUMER span around one run of ``job``, linked to the enqueue's ``stored`` context;
    yields a callable that records the run's status and error."""
    assert trace is not None
    links = []
    if stored:
        linked = trace.get_current_span(propagate.extract(json.loads(stored))).get_span_context()
        if linked.is_valid:
            links.append(trace.Link(linked))
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "pgqueue.task": job.task,
        "pgqueue.job.attempt": job.attempts,
        "pgqueue.job.max_attempts": job.max_attempts,
    }
    with _tracer().start_as_current_span(
        job.task, kind=trace.SpanKind.CONSUMER, links=links, attributes=attributes
    ) as span:

        def record(status: JobStatus, error: str | None) -> None:
            span.set_attribute("pgqueue.job.status", str(status))
            if status is not JobStatus.SUCCEEDED and error:
                kind, _, message = error.rstrip().rpartition("\n")[2].partition(": ")
                span.add_event("exception", {
                    "exception.type": kind,
                    "exception.message": message,
                    "exception.stacktrace": error,
                })
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"{kind}: {message}"))

        yield record
