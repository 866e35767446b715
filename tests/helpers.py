"""Shared test helpers: worker subprocesses and waiting on database state without sleeping blind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_worker(dsn: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m pgqueue.worker tests.worker_tasks:pgq`` as a subprocess on ``dsn``."""
    return subprocess.Popen(
        [sys.executable, "-m", "pgqueue.worker", "tests.worker_tasks:pgq", *args],
        cwd=ROOT,
        env={**os.environ, "PGQUEUE_DSN": dsn, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_worker(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60) -> str:
    """Send ``sig``, wait for the exit, and return everything the worker printed."""
    if proc.poll() is None:
        proc.send_signal(sig)
    output, _ = proc.communicate(timeout=timeout)
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
