"""A worker's own Prometheus metrics: what its runs did, served at ``http://host:port/metrics``.

Counted here, as jobs finish, rather than read from the database at scrape time (the FastAPI
router's ``/metrics`` does that, for queue depths). Each worker has its own registry, so two
workers in one process (a test) never share or clash over a metric.

prometheus-client is an optional dependency (``pgqueue[metrics]``): an application that only
enqueues does not need it, and a worker needs it only when asked to serve metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..errors import ConfigurationError
from ..job import Job, JobStatus
from .executor import Outcome
from .observers import Told

logger = logging.getLogger("pgqueue.worker")

# Seconds: from a few milliseconds up to an hour, for jobs and for waits in a backlog alike.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
           900.0, 3600.0)

_STATUS = {JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed"}
"""The ``status`` label: succeeded, failed, or retried (it raised and will run again)."""


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "worker metrics (metrics_port / PGQUEUE_METRICS_PORT / --metrics-port) need "
            "prometheus-client: pip install 'pgqueue[metrics]'"
        ) from None
    return prometheus_client


class WorkerMetrics:
    """The metrics of one worker, and the HTTP endpoint that serves them."""

    def __init__(self, port: int, host: str) -> None:
        prometheus = _prometheus()
        self.host = host
        self.port = port
        self.registry = prometheus.CollectorRegistry()
        self._finished = prometheus.Counter(
            "pgqueue_jobs_finished", "Runs finished by this worker, by outcome "
            "(succeeded, failed, retried)", ["queue", "task", "status"], registry=self.registry)
        self._duration = prometheus.Histogram(
            "pgqueue_job_duration_seconds", "How long runs took, start to outcome",
            ["queue", "task"], buckets=BUCKETS, registry=self.registry)
        self._wait = prometheus.Histogram(
            "pgqueue_job_wait_seconds", "From a job's due time (run_at) to the start of its run",
            ["queue"], buckets=BUCKETS, registry=self.registry)
        self._running = prometheus.Gauge(
            "pgqueue_worker_running_jobs", "Jobs this worker is running now",
            registry=self.registry)
        self._server: Any = None

    def start(self) -> None:
        """Serve ``/metrics`` from a daemon thread; with port 0, ``port`` becomes the one bound."""
        prometheus = _prometheus()
        try:
            self._server, _thread = prometheus.start_http_server(
                self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve worker metrics on {self.host}:{self.port}: {exc.strerror or exc}; "
                "choose another metrics_port (PGQUEUE_METRICS_PORT / --metrics-port)"
            ) from None
        self.port = self._server.server_port
        logger.info("worker metrics at http://%s:%s/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()

    @asynccontextmanager
    async def run(self, job: Job) -> AsyncIterator[Told]:
        if job.started_at is not None:
            self._wait.labels(job.queue).observe(
                max(0.0, (job.started_at - job.run_at).total_seconds()))
        started = time.monotonic()
        self._running.inc()

        def tell(outcome: Outcome) -> None:
            self._duration.labels(job.queue, job.task).observe(time.monotonic() - started)
            status = _STATUS.get(outcome.status, "retried")
            self._finished.labels(job.queue, job.task, status).inc()

        try:
            yield tell
        finally:
            self._running.dec()
