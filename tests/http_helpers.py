"""Serving an ASGI app on a real localhost port inside the test's event loop, and reading SSE.

httpx's ``ASGITransport`` buffers whole responses, so an event stream could only be read once it
ended; a real server shows that events arrive while the job runs. The server shares the test's
event loop, so it can use the test's open ``PgQueue`` and the test can drive tasks with events.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` (its lifespan included) on a free port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the server starts: early clients wait in the backlog instead of failing.
    sock.listen(128)
    host, port = sock.getsockname()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, lifespan="auto")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
        sock.close()


@dataclass
class Event:
    event: str
    data: Any


async def read_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a ``text/event-stream`` response, data parsed as JSON; comments skipped."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield Event(name, json.loads("\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
