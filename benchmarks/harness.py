"""What every benchmark script shares, so that each script holds only its own measurement.

Server and throw-away databases, the settle step before a timed phase, the machine/server
description recorded with results, the command-line options every script takes, the event loop,
child processes (always ``python -m benchmarks.<module>`` from the repository root, so imports
work the same in a child as in the parent) and where results are written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

DEFAULT_DSN_BASE = os.environ.get("PGQUEUE_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432")
"""A server where we may CREATE/DROP databases: ``postgresql://user@host:port`` or any DSN of that
server (its database, if it names one, is used for the CREATE/DROP DATABASE statements)."""

# Python packages each peer adapter needs; a contestant whose packages are missing is skipped
# with a warning (see requirements.txt).
REQUIRES = {
    "pgqueuer": ["pgqueuer"],
    "procrastinate": ["procrastinate", "psycopg_pool"],
    "awa": ["awa"],
}


def now() -> float:
    """CLOCK_MONOTONIC: system-wide on Linux, so timestamps compare across processes."""
    return time.monotonic()


def fmt(x: float | None, nd: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def missing_packages(contestant: str) -> list[str]:
    return [m for m in REQUIRES.get(contestant, []) if importlib.util.find_spec(m) is None]


# --------------------------------------------------------------------------- databases

def db_dsn(base: str, database: str) -> str:
    """The DSN of ``database`` on the server of ``base`` (query string and credentials kept)."""
    return urlunsplit(urlsplit(base)._replace(path=f"/{database}"))


def admin_dsn(base: str) -> str:
    """Where CREATE/DROP DATABASE is sent: the database named in ``base``, else ``postgres``."""
    return base if urlsplit(base).path.strip("/") else db_dsn(base, "postgres")


async def recreate_database(base: str, name: str, drop_only: bool = False) -> None:
    """Drop ``name`` on the server of ``base`` (disconnecting its users) and, unless
    ``drop_only``, create it afresh."""
    conn = await asyncpg.connect(admin_dsn(base))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def fetch_scalar(dsn: str, sql: str, *params: Any) -> Any:
    """One value from a short-lived connection: verification queries, outside any timed phase."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *params)
    finally:
        await conn.close()


SCHEMA_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'
"""
"""Heap, indexes and TOAST of every table in schema $1 (partitions are tables too), so a
library's footprint is measured without knowing how it lays out its tables."""


async def schema_bytes(conn: asyncpg.Connection, schema: str) -> int:
    return await conn.fetchval(SCHEMA_BYTES, schema)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def settle(dsn: str) -> None:
    """Same starting conditions for every timed phase: fresh statistics, no dirty buffers."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def prefill(contestant: Any, dsn: str, n: int, bulk_size: int) -> None:
    """Queue jobs 0..n-1 through the contestant's producer (bulk API when it has one)."""
    await contestant.open_producer(dsn)
    try:
        if contestant.supports_bulk:
            for start in range(0, n, bulk_size):
                await contestant.enqueue_many(list(range(start, min(n, start + bulk_size))))
        else:
            for i in range(n):
                await contestant.enqueue_one(i)
    finally:
        await contestant.close_producer()


# --------------------------------------------------------------------------- environment

async def server_info(base: str) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_dsn(base))
    try:
        settings = {}
        for k in ("shared_buffers", "synchronous_commit", "fsync", "max_connections", "wal_level"):
            settings[k] = await conn.fetchval(f"SHOW {k}")
        return {
            "version": await conn.fetchval("SELECT version()"),
            "server_version": await conn.fetchval("SHOW server_version"),
            "settings": settings,
        }
    finally:
        await conn.close()


def _first_line_value(path: str, prefix: str = "") -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "nproc_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": _first_line_value("/proc/cpuinfo", "model name"),
        "mem_total": _first_line_value("/proc/meminfo"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_at_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------- command line

def add_server_options(p: argparse.ArgumentParser) -> None:
    """The options every benchmark takes: which server, database names, event loop."""
    p.add_argument("--dsn-base", default=DEFAULT_DSN_BASE,
                   help="server where databases may be created (env PGQUEUE_BENCH_DSN); a DSN naming "
                        "a database works too: that database is used to CREATE/DROP the bench ones")
    p.add_argument("--db-prefix", default="bench_", help="prefix of the throw-away databases")
    p.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])


def run_async(coro: Coroutine[Any, Any, Any], loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def module_command(module: str, *args: str) -> list[str]:
    """The command that runs ``benchmarks.<module>``; start it with ``cwd=REPO_ROOT``."""
    return [sys.executable, "-m", f"{__package__}.{module}", *args]


def run_bounded(cmd: list[str], timeout: float, echo: bool = False) -> tuple[int | str, str]:
    """Run ``cmd`` in its own process group from the repository root; on timeout kill the group.
    Returns (exit code or "timeout", combined output); ``echo`` prints the output as it comes."""
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def pump() -> None:  # ends at EOF: the child exited or was killed
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc: int | str = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group we started
        proc.wait()
        rc = "timeout"
    reader.join(10)
    return rc, "".join(lines)


def measure_in_subprocess(module: str, args: list[str], *, dsn_base: str, db: str, label: str,
                          timeout: float, echo: bool = False) -> dict[str, Any]:
    """One measurement in a child process against a fresh database ``db`` (dropped afterwards).

    The child gets ``--dsn`` and ``--out`` appended and writes its result JSON to ``--out``;
    returns that result plus rc and wall time, or ``ok: False`` with the tail of its output."""
    out = scratch_path(f"{label}.json")
    out.unlink(missing_ok=True)
    asyncio.run(recreate_database(dsn_base, db))
    t0 = now()
    rc, output = run_bounded(module_command(module, *args, "--dsn", db_dsn(dsn_base, db),
                                            "--out", str(out)), timeout, echo)
    res: dict[str, Any] = {"rc": rc, "wall_s": now() - t0}
    try:
        asyncio.run(recreate_database(dsn_base, db, drop_only=True))
    except Exception as e:  # noqa: BLE001 - the measurement stands; the leftover is reported
        print(f"  warning: drop {db} failed: {e}", flush=True)
    if rc == 0 and out.exists():
        res.update(json.loads(out.read_text()))
        out.unlink()
    else:
        res["ok"] = False
        res["error_tail"] = output[-3000:]
    return res


# --------------------------------------------------------------------------- results

def scratch_path(name: str) -> Path:
    """A file for this process's intermediate output (git-ignored results/scratch/<pid>/)."""
    folder = RESULTS_DIR / "scratch" / str(os.getpid())
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def remove_scratch() -> None:
    """Remove this process's scratch folder (the runs it held are in the results by then)."""
    folder = RESULTS_DIR / "scratch" / str(os.getpid())
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def results_path(given: str | None, kind: str, started: dt.datetime) -> Path:
    """``given``, else results/<kind>-<start time>.json; its folder is created."""
    path = Path(given) if given else RESULTS_DIR / f"{kind}-{started.strftime('%Y-%m-%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path | str, doc: Any) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)


def write_markdown_with_reproduce(path: Path | str, lines: list[str], reproduce: str) -> None:
    """A report's lines, closed by the commands that reproduce its run."""
    lines = [*lines, "## Reproduce\n", "```sh", reproduce, "```\n"]
    with open(path, "w") as f:
        f.write("\n".join(lines))
