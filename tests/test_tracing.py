"""OpenTelemetry traces: a producer span at enqueue, a consumer span per run linked to it.

Each case runs in a process of its own (``tests/tracing_run.py``): the tracer provider is global.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .helpers import ROOT


def _run(database_url: str, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.tracing_run", database_url, mode], cwd=ROOT,
        capture_output=True, text=True, timeout=120, env={**os.environ, "PGQUEUE_DSN": ""},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_runs_are_consumer_spans_linked_to_their_enqueue(database_url: str) -> None:
    traced = _run(database_url, "traced")
    spans = traced["spans"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    send_id, boom_id = traced["jobs"]["send"], traced["jobs"]["boom"]

    [request] = by_name["request"]
    [produced] = by_name["enqueue app.send"]
    assert produced["kind"] == "PRODUCER" and produced["parent"] == request["span_id"]
    assert produced["attributes"] == {
        "messaging.system": "pgqueue", "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue", "messaging.destination.name": "emails",
        "pgqueue.task": "app.send",
        "messaging.message.id": str(send_id),
    }
    context = json.loads(traced["stored"][str(send_id)])
    assert context["traceparent"].startswith(  # W3C: version, trace id, parent id, flags
        f"00-{produced['trace_id']:032x}-{produced['span_id']:016x}-")

    [consumed] = by_name["app.send"]
    assert consumed["kind"] == "CONSUMER" and consumed["links"] == [produced["span_id"]]
    assert consumed["status"] == "UNSET" and consumed["events"] == []
    assert consumed["attributes"] == {
        "messaging.system": "pgqueue", "messaging.operation.type": "process",
        "messaging.operation.name": "run", "messaging.destination.name": "emails",
        "messaging.message.id": str(send_id), "pgqueue.task": consumed["name"],
        "pgqueue.job.attempt": 1, "pgqueue.job.max_attempts": 1,
        "pgqueue.job.status": "succeeded",
    }
    [inside] = by_name["inside send"]  # the task's own spans are children of its run
    assert inside["parent"] == consumed["span_id"]

    runs = by_name["app.boom"]
    [produced_boom] = by_name["enqueue app.boom"]
    assert [run["attributes"]["pgqueue.job.attempt"] for run in runs] == [1, 2]
    assert [run["attributes"]["pgqueue.job.status"] for run in runs] == ["queued", "failed"]
    for run in runs:
        assert run["links"] == [produced_boom["span_id"]]
        assert run["attributes"]["messaging.message.id"] == str(boom_id)
        assert (run["status"], run["description"]) == ("ERROR", "ValueError: boom")
        [event] = run["events"]
        assert (event["name"], event["exception.type"], event["exception.message"]) == (
            "exception", "ValueError", "boom")
        assert "Traceback" in event["exception.stacktrace"]


def test_without_a_tracer_provider_nothing_is_stored(database_url: str) -> None:
    untraced = _run(database_url, "untraced")
    assert untraced["stored"] == {str(i): None for i in untraced["jobs"].values()}


def test_without_opentelemetry_jobs_run_and_nothing_is_imported(database_url: str) -> None:
    absent = _run(database_url, "absent")
    assert absent["stored"] == {str(i): None for i in absent["jobs"].values()}
    assert absent["otel_modules"] == []
