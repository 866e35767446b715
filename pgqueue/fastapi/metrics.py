"""``GET /metrics``: the queue's state in Prometheus' text format.

Gauges are read from the database at scrape time (``stats()``, ``workers()``, paused queues), so
every replica of the app reports the same numbers and nothing has to be kept in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..job import JobStatus
from ..queue import PgQueue


class _Snapshot(Collector):
    """Metric families already read, handed to a one-off registry for rendering."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families)


async def _families(pgq: PgQueue) -> list[GaugeMetricFamily]:
    stats = await pgq.stats(max_age=1.0)  # scrapes at once share one read
    paused = set(await pgq.paused_queues())
    workers = await pgq.workers()

    jobs = GaugeMetricFamily(
        "pgqueue_jobs", "Jobs per queue and status (finished jobs until pruned).",
        labels=["queue", "status"],
    )
    for queue, counts in sorted(stats.items()):
        for status in JobStatus:  # every status, so a series drops to 0 instead of vanishing
            jobs.add_metric([queue, status.value], counts.get(status.value, 0))

    queue_paused = GaugeMetricFamily(
        "pgqueue_queue_paused", "1 if the queue is paused.", labels=["queue"]
    )
    for queue in sorted(set(stats) | paused):
        queue_paused.add_metric([queue], 1 if queue in paused else 0)

    worker_count = GaugeMetricFamily("pgqueue_workers", "Workers with a recent heartbeat.")
    worker_count.add_metric([], len(workers))
    slots = GaugeMetricFamily("pgqueue_worker_slots", "Jobs the workers may run at once.")
    slots.add_metric([], sum(worker.concurrency for worker in workers))
    return [jobs, queue_paused, worker_count, slots]


def add_metrics_route(router: APIRouter, pgq: PgQueue) -> None:
    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
        summary="Prometheus metrics",
    )
    async def metrics() -> Response:
        """`pgqueue_jobs{queue,status}`, `pgqueue_queue_paused{queue}`, `pgqueue_workers` and
        `pgqueue_worker_slots`, in Prometheus' text exposition format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(await _families(pgq)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
