"""Shared test helpers: worker subprocesses and waiting on database state without sleeping blind."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent

PACKAGING_INPUTS = ("pyproject.toml", "README.md", "pgqueue", "alembic")
"""What building pgqueue reads: a copy of these builds as the checkout would, leaving it clean."""


def copy_sources(into: Path) -> Path:
    """A copy of what pip needs to build pgqueue, in ``into``; returns ``into``."""
    for name in PACKAGING_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, into / name)
    return into


def start_worker(
    dsn: str, *args: str, env: dict[str, str] | None = None, app: str = "tests.worker_tasks:pgq"
) -> subprocess.Popen[str]:
    """``python -m pgqueue.worker tests.worker_tasks:pgq`` (or ``app``) as a subprocess on ``dsn``.

    Its output goes to a file, not a pipe: a pipe nobody reads fills up, and then the worker's
    next log line blocks its whole event loop (heartbeat included).
    """
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgqueue.worker", app, *args],
        cwd=ROOT,
        env={**os.environ, "PGQUEUE_DSN": dsn, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _logs[proc.pid] = log
    return proc


_logs: dict[int, IO[str]] = {}


def stop_worker(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60) -> str:
    """Send ``sig``, wait for the exit, and return everything the worker printed."""
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=timeout)
    log = _logs.pop(proc.pid)
    log.seek(0)
    output = log.read()
    log.close()
    return output


async def eventually(
    check: Callable[[], Awaitable[object]], timeout: float = 60.0, what: str = "condition"
) -> object:
    """Poll ``check`` until it returns something truthy. For state in *another process* (a worker
    subprocess) there is no event to wait on; the timeout only catches hangs."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
