"""A worker's own Prometheus metrics (``--metrics-port``), scraped over HTTP."""

from __future__ import annotations

import socket
import sys

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgqueue import ConfigurationError, JobStatus, PgQueue

from . import worker_tasks
from .conftest import FAST
from .helpers import eventually, start_worker, stop_worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_worker_process_serves_its_metrics(
    pgq: PgQueue, database_url: str, db: asyncpg.Connection
) -> None:
    await db.execute(worker_tasks.CREATE_RUNS)  # where the noop task records its runs
    port = _free_port()
    proc = start_worker(database_url, "--metrics-port", str(port),
                        env={"PGQUEUE_METRICS_HOST": "127.0.0.1"})
    try:
        ok = [await pgq.enqueue("tests.worker_tasks.noop", i) for i in range(3)]
        # Two attempts: one run retried, then one failed.
        bad = await pgq.using("tests.worker_tasks.fail", max_attempts=2).enqueue()
        for job in ok:
            assert (await pgq.wait(job.id, timeout=60)).status == JobStatus.SUCCEEDED
        assert (await pgq.wait(bad.id, timeout=60)).status == JobStatus.FAILED

        async with httpx.AsyncClient() as client:
            async def scrape() -> httpx.Response | None:
                try:
                    return await client.get(f"http://127.0.0.1:{port}/metrics")
                except httpx.TransportError:
                    return None

            response = await eventually(scrape, what="the metrics endpoint")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = _samples(response.text)
    finally:
        stop_worker(proc)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    noop, fail = "tests.worker_tasks.noop", "tests.worker_tasks.fail"
    finished = "pgqueue_jobs_finished_total"
    assert value(finished, queue="default", task=noop, status="succeeded") == 3
    assert value(finished, queue="default", task=fail, status="retried") == 1
    assert value(finished, queue="default", task=fail, status="failed") == 1
    assert value(finished, queue="default", task=noop, status="failed") == 0
    assert value("pgqueue_job_duration_seconds_count", queue="default", task=noop) == 3
    assert value("pgqueue_job_duration_seconds_count", queue="default", task=fail) == 2
    assert value("pgqueue_job_duration_seconds_bucket", queue="default", task=noop,
                 le="+Inf") == 3
    assert value("pgqueue_job_wait_seconds_count", queue="default") == 5  # every run
    assert value("pgqueue_worker_running_jobs") == 0


async def test_two_workers_in_one_process_keep_their_own_metrics(pgq: PgQueue) -> None:
    @pgq.task
    async def hello() -> str:
        return "hi"

    job = await hello.enqueue()
    async with pgq.worker(metrics_port=0) as first, pgq.worker(metrics_port=0) as second:
        assert first.metrics and second.metrics and first.metrics.port != second.metrics.port
        await pgq.wait(job.id, timeout=60)
        async with httpx.AsyncClient() as client:
            texts = [(await client.get(f"http://127.0.0.1:{w.metrics.port}/metrics")).text
                     for w in (first, second)]
    counted = [
        _samples(text).get(("pgqueue_jobs_finished_total", (
            ("queue", "default"), ("status", "succeeded"), ("task", hello.name))), 0.0)
        for text in texts
    ]
    assert sorted(counted) == [0.0, 1.0]  # one worker ran it, and only its registry says so
    with pytest.raises(httpx.TransportError):  # the endpoints end with their workers
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{first.metrics.port}/metrics")


async def test_no_metrics_no_endpoint_and_nothing_measured(pgq: PgQueue) -> None:
    worker = pgq.worker()
    assert worker.metrics is None
    assert PgQueue(dsn="postgresql://x@h/d", metrics_port=9100).worker().metrics.port == 9100


def test_metrics_without_prometheus_client_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    pgq = PgQueue(dsn=database_url, **FAST)
    pgq.worker()  # no metrics asked for: no need of it
    with pytest.raises(ConfigurationError, match=r"pip install 'pgqueue\[metrics\]'"):
        pgq.worker(metrics_port=9100)


async def test_a_taken_metrics_port_stops_the_worker_with_a_clear_error(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pgq = PgQueue(dsn=database_url, metrics_host="127.0.0.1", **FAST)
        with pytest.raises(ConfigurationError, match=f"cannot serve worker metrics on "
                                                     f"127.0.0.1:{port}: .*choose another"):
            await pgq.worker(metrics_port=port).run()
        assert not pgq.is_open
