"""``benchmarks.cost`` and ``benchmarks.scale_out`` still run end to end, at a tiny size.

No figure is asserted beyond being there and plausible: these prove the scripts drive pgqueue (and
the raw baseline) and report. They need a server where databases may be created
(``PGQUEUE_TEST_DSN``).
"""

from __future__ import annotations

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
    pytest.mark.skipif(not DSN, reason="PGQUEUE_TEST_DSN is not set: the benchmarks need a "
                                       "PostgreSQL server where they may CREATE DATABASE"),
]


def _run(module: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def test_the_cost_benchmark_counts_a_job_s_statements_wal_and_rows(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    _run("cost", "--dsn-base", str(DSN), "--db-prefix", f"t{uuid.uuid4().hex[:6]}_",
         "--contestants", "raw,pgqueue", "--n", "100", "--loop", "asyncio", "--out", str(out))
    runs = {r["contestant"]: r for r in json.loads(out.read_text())["runs"]}
    assert all(r["ok"] for r in runs.values()), runs
    whole = runs["pgqueue"]["per_job"]["whole"]
    assert whole["wal_bytes"] > 0 and whole["inserted"] >= 1 and whole["statements"] >= 1
    assert "Cost per job" in out.with_suffix(".md").read_text()


def test_the_scale_out_benchmark_reports_a_point(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    _run("scale_out", "--dsn-base", str(DSN), "--db-prefix", f"t{uuid.uuid4().hex[:6]}_",
         "--workers", "1", "--producers", "1", "--seconds", "1", "--warmup", "2",
         "--backlog", "500", "--loop", "asyncio", "--out", str(out))
    [point] = json.loads(out.read_text())["points"]
    assert point["jobs_per_s"] > 0 and point["commits_per_s"] > 0, point
