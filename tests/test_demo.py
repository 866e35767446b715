"""``python -m pgqueue demo``, the README's first command, run as a user runs it: a subprocess
serving the example app with its worker, driven over HTTP, then stopped with Ctrl-C (SIGINT).

It runs pgqueue as pip installs it (package files and package data only), in a folder of its own
outside the repository: the demo must not depend on a checkout's layout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from .helpers import copy_sources, eventually

pytestmark = pytest.mark.slow


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that imports pgqueue from a copy pip installed into a folder
    of its own (built from a copy of the sources, so the checkout gets no build files)."""
    source, site = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    copy_sources(source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        check=True, capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    imported = subprocess.run(
        [sys.executable, "-c", "import pgqueue; print(pgqueue.__file__)"],
        cwd=tmp_path, env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert Path(imported).is_relative_to(site), imported  # not the checkout's editable install
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_demo_registers_a_user_and_its_worker_sends_the_welcome_email(
    database_url: str, installed: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "pgqueue", "demo", "--port", str(port)],
            cwd=tmp_path,
            env={**installed, "PGQUEUE_DSN": database_url},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:

                async def serving() -> bool:
                    if demo.poll() is not None:
                        raise AssertionError(f"the demo exited with {demo.returncode}")
                    try:
                        page = await client.get("/")
                    except httpx.TransportError:
                        return False
                    assert page.status_code < 500, page.text  # waiting would not mend it
                    return page.status_code == 200

                await eventually(serving, timeout=120, what="the demo to serve its page")
                registered = await client.post(
                    "/register", json={"email": "ada@example.com", "name": "Ada"}
                )
                assert registered.status_code == 201, registered.text
                job_id = registered.json()["job_id"]

                async def job_succeeded() -> bool:
                    job = (await client.get(f"/pgqueue/jobs/{job_id}")).json()
                    assert job["status"] in ("queued", "running", "succeeded"), job
                    return job["status"] == "succeeded"

                await eventually(job_succeeded, timeout=120, what="the welcome email job")
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=60)
            log.seek(0)
            output = log.read()
    assert demo.returncode == 0, output
    assert "Traceback" not in output
    assert f"job {job_id} " in output  # the worker's log lines name the job
