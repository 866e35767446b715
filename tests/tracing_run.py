"""Run by tests/test_tracing.py in a process of its own (OpenTelemetry's tracer provider is global
and set once): ``python -m tests.tracing_run DSN MODE`` enqueues two jobs, runs them with a burst
worker, and prints what was traced and stored as JSON.

MODE: ``traced`` (an SDK with an in-memory exporter), ``untraced`` (the API, no provider) or
``absent`` (opentelemetry not importable).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def main(dsn: str, mode: str) -> dict[str, Any]:
    exporter = None
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed
    elif mode == "traced":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

    from pgqueue import PgQueue
    from pgqueue.testing import drain

    pgq = PgQueue(dsn=dsn)

    @pgq.task(name="app.send", queue="emails", max_attempts=1)
    async def send(user_id: int) -> int:
        if exporter is not None:
            from opentelemetry import trace

            with trace.get_tracer("app").start_as_current_span("inside send"):
                pass
        return user_id

    @pgq.task(name="app.boom", max_attempts=2, retry_delay=0)
    async def boom() -> None:
        raise ValueError("boom")

    async with pgq:
        if exporter is not None:
            from opentelemetry import trace

            with trace.get_tracer("app").start_as_current_span("request"):
                sent = await send.enqueue(42)
        else:
            sent = await send.enqueue(42)
        failed = await boom.enqueue()
        while not (await pgq.get_job(failed.id)).status.is_final:  # its retry comes back queued
            await drain(pgq)
        async with pgq.acquire() as conn:
            stored = await conn.fetch(
                "SELECT id, trace_context FROM pgqueue.jobs ORDER BY id")
    return {
        "jobs": {"send": sent.id, "boom": failed.id},
        "stored": {row["id"]: row["trace_context"] for row in stored},
        "spans": [_span(span) for span in exporter.get_finished_spans()] if exporter else [],
        "otel_modules": sorted(m for m in sys.modules if m.startswith("opentelemetry.")),
    }


def _span(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": span.context.trace_id,
        "span_id": span.context.span_id,
        "parent": span.parent.span_id if span.parent else None,
        "links": [link.context.span_id for link in span.links],
        "attributes": dict(span.attributes),
        "status": span.status.status_code.name,
        "description": span.status.description,
        "events": [{"name": e.name, **dict(e.attributes)} for e in span.events],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
