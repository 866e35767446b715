"""The benchmark harness (benchmarks/) still runs end to end, at a tiny size.

No timing is asserted: these only prove that ``python -m benchmarks.run`` drives the pgqueue
contestant (through the public API) and the raw baseline through every scenario and reports
numbers, and that ``benchmarks.scale``, ``benchmarks.memory`` and ``benchmarks.flow`` (pgqueue
only) complete. They need a server where databases may be created:
``PGQUEUE_TEST_DSN`` (its database is used for CREATE/DROP DATABASE).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DSN = os.environ.get("PGQUEUE_TEST_DSN")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DSN, reason="PGQUEUE_TEST_DSN is not set: the benchmark harness needs "
                                       "a PostgreSQL server where it may CREATE DATABASE"),
]

LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def _run(module: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.<module> args`` from the repository root, as the README runs it."""
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _prefix() -> str:
    return f"bench_smoke_{uuid.uuid4().hex[:8]}_"


def test_peer_harness_runs_pgqueue_and_raw(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    proc = _run("run", ["--contestants", "pgqueue,raw", "--n", "200", "--reps", "1",
                 "--latency-n", "20", "--interval-ms", "5", "--bulk-size", "100",
                 "--timeout", "120", "--loop", LOOP, "--dsn-base", DSN, "--db-prefix", _prefix(),
                 "--out", str(out)], timeout=600)
    doc = json.loads(out.read_text())
    failed = [(r["contestant"], r["scenario"], r.get("error_tail")) for r in doc["runs"] if not r.get("ok")]
    assert not failed, failed
    scenarios = {(r["contestant"], r["scenario"]) for r in doc["runs"]}
    for name in ("enqueue_single", "enqueue_bulk", "drain:c1", "drain:c32", "drain:c100",
                 "drain:c200", "latency"):
        assert ("pgqueue", name) in scenarios, name
    assert ("raw", "drain:batch100") in scenarios
    for r in doc["runs"]:
        if r["scenario"] == "latency":
            assert r["jobs"] == 20 and r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
        else:
            assert r["jobs_per_s"] > 0
    assert doc["ratios"]["drain:c32:jobs_per_s"]["pgqueue"]["raw"] > 0
    assert "Throughput, jobs/s" in proc.stdout and "Ratios pgqueue / peer" in proc.stdout
    assert "Targets for pgqueue" in proc.stdout
    assert out.with_suffix(".md").exists()


def test_scale_and_memory_scripts_run(tmp_path: Path) -> None:
    scale = _run("scale", ["--finished", "2000", "--queued", "300", "--n", "200",
                  "--variants", "c32", "--loop", LOOP, "--dsn-base", DSN, "--db-prefix", _prefix(),
                  "--out", str(tmp_path / "scale.json")], timeout=300)
    assert "Index Scan using ready_" in scale.stdout  # the claim's plan is printed: the ready ring
    result = json.loads((tmp_path / "scale.json").read_text())
    assert all(r["ok"] for r in result["runs"]) and result["summary"]["c32"]["ratio"] > 0

    memory = _run("memory", ["--n", "500", "--samples", "5", "--bulk-size", "100",
                   "--backlog", "300", "--concurrency", "32", "--loop", LOOP, "--dsn-base", DSN,
                   "--db-prefix", _prefix(), "--out", str(tmp_path / "memory.json")], timeout=300)
    assert "RSS start" in memory.stdout
    result = json.loads((tmp_path / "memory.json").read_text())
    assert result["handler_calls"] == 500 and result["samples"][-1]["rss_mb"] > 0


def test_flow_benchmark_runs_for_pgqueue(tmp_path: Path) -> None:
    out = tmp_path / "flow.json"
    proc = _run("flow", ["--contestants", "pgqueue", "--n-limit", "60", "--n-rate", "60",
                 "--n-fair", "200", "--fair-warmup", "20", "--n-drain", "200", "--reps", "1",
                 "--explain-backlog", "100", "--timeout", "120", "--loop", LOOP,
                 "--dsn-base", DSN, "--db-prefix", _prefix(), "--out", str(out)], timeout=600)
    doc = json.loads(out.read_text())
    scenarios = doc["scenarios"]
    for name in ("limit", "rate", "fair"):
        failed = [(r["label"], r.get("error_tail")) for r in scenarios[name] if r["ok"] is False]
        assert not failed, failed
    limit = scenarios["limit"][0]
    assert limit["label"] == "pgqueue" and limit["distinct_jobs"] == 60
    assert 1 <= limit["most_at_once"] and limit["jobs_per_s"] > 0
    assert scenarios["rate"][0]["most_starts_in_1s"] >= 1
    assert all(r["b_wait_s"] is not None for r in scenarios["fair"] if r["ok"])
    assert scenarios["drain"]["ratio"] > 0
    cases = scenarios["explain"]["cases"]
    assert all(c["statements"] > 0 for c in cases)
    assert any("leases" in q for c in cases for q in c["queries"])  # the limited claim's plan
    # A lease's job is looked up by its key, never by scanning every running job per lease.
    assert not [c["case"] for c in cases if any("jobs_running" in p for p in c["plans"])]
    assert "Concurrency limit" in proc.stdout and out.with_suffix(".md").exists()
