"""The Grafana dashboard, the Prometheus alert rules and the compose file ask only for metrics
that pgqueue serves, from where it serves them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from pgqueue.worker.metrics import WorkerMetrics

from .helpers import ROOT

DOCKER = ROOT / "docker"
_NAME = re.compile(r"\bpgqueue_[a-z_]+")
_SUFFIXES = ("_bucket", "_count", "_sum")


def _served() -> set[str]:
    families = list(WorkerMetrics(0, "127.0.0.1").registry.collect())
    worker = {family.name + ("_total" if family.type == "counter" else "")
              for family in families}
    router = set(re.findall(r'GaugeMetricFamily\(\s*"(pgqueue_\w+)"',
                            (ROOT / "pgqueue/fastapi/metrics.py").read_text()))
    assert router, "the router's metric names moved"
    return worker | router


def _asked(text: str) -> set[str]:
    names = set()
    for name in _NAME.findall(text):
        for suffix in _SUFFIXES:
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_the_dashboard_and_alerts_use_served_metrics() -> None:
    dashboard = json.loads((DOCKER / "grafana/pgqueue.json").read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    alerts = yaml.safe_load((DOCKER / "prometheus/alerts.yml").read_text())
    rules = " ".join(r["expr"] for g in alerts["groups"] for r in g["rules"])
    served = _served()
    for text in (queries, rules):
        asked = {name for name in _asked(text) if name not in served}
        assert not asked, f"not served by pgqueue: {sorted(asked)}"
    assert "pgqueue_job_wait_seconds" in _asked(queries)


def test_prometheus_scrapes_the_port_the_workers_serve() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    command = compose["services"]["worker"]["command"]
    port = int(command[command.index("--metrics-port") + 1])
    prometheus = yaml.safe_load((DOCKER / "prometheus/prometheus.yml").read_text())
    [workers] = [job for job in prometheus["scrape_configs"] if job["job_name"] == "pgqueue-workers"]
    assert workers["dns_sd_configs"][0]["port"] == port
    assert set(compose["services"]) >= {"prometheus", "grafana", "worker", "api"}
    assert Path(DOCKER / "grafana/pgqueue.json").exists()
