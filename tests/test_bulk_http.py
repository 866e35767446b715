"""``POST /jobs/cancel`` and ``POST /jobs/retry``: bulk control over HTTP, answering the count."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from pgqueue import JobStatus, PgQueue
from pgqueue.testing import drain

from .test_fastapi import asgi_client, make_app


@pytest.fixture
async def client(pgq: PgQueue) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app(pgq)) as client:
        yield client


async def test_post_jobs_cancel_cancels_what_the_filter_matches(
    pgq: PgQueue, client: httpx.AsyncClient
) -> None:
    @pgq.task(queue="a")
    async def noop() -> None: ...

    jobs = [await noop.enqueue(), await noop.using(delay=600).enqueue()]
    other = await noop.using(queue="b").enqueue()
    response = await client.post("/pgqueue/jobs/cancel", json={"queue": "a"})
    assert (response.status_code, response.json()) == (200, {"count": 2})
    assert [(await pgq.get_job(j.id)).status for j in jobs] == [JobStatus.CANCELLED] * 2
    assert (await pgq.get_job(other.id)).status == JobStatus.QUEUED
    response = await client.post("/pgqueue/jobs/cancel", json={"queue": "b", "limit": 5})
    assert response.json() == {"count": 1}


async def test_post_jobs_retry_retries_failed_jobs_by_default(
    pgq: PgQueue, client: httpx.AsyncClient
) -> None:
    @pgq.task(max_attempts=1)
    async def fails() -> None:
        raise RuntimeError("no")

    failed = await fails.enqueue()
    await drain(pgq)
    cancelled = await fails.using(delay=600).enqueue()
    await pgq.cancel(cancelled.id)
    response = await client.post("/pgqueue/jobs/retry", json={"task": fails.name})
    assert (response.status_code, response.json()) == (200, {"count": 1})
    assert (await pgq.get_job(failed.id)).status == JobStatus.QUEUED
    response = await client.post("/pgqueue/jobs/retry", json={"status": "cancelled"})
    assert response.json() == {"count": 1}


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("cancel", {"status": "succeeded"}, "cannot cancel succeeded jobs"),
        ("retry", {"status": "running"}, "cannot retry running jobs"),
        ("cancel", {"queeu": "typo"}, "extra"),
        ("retry", {"queue": "a\x00b"}, "pattern"),
        ("cancel", {"limit": 0}, "greater than or equal to 1"),
        ("cancel", [1, 2], "valid dictionary"),
        ("retry", None, "required"),
    ],
)
async def test_a_malformed_filter_is_a_422_that_says_why(
    pgq: PgQueue, client: httpx.AsyncClient, path: str, body: object, says: str
) -> None:
    @pgq.task
    async def noop() -> None: ...

    job = await noop.enqueue()
    response = await client.post(f"/pgqueue/jobs/{path}", json=body)
    assert response.status_code == 422
    assert says in response.text
    assert (await pgq.get_job(job.id)).status == JobStatus.QUEUED
