"""The example app's second flow (README): the welcome email waits for the avatar's thumbnail,
and an order's payment completes its job in its own transaction."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from .example_helpers import import_example
from .test_fastapi import PREFIX, TIMEOUT, asgi_client


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, database_url: str) -> ModuleType:
    monkeypatch.setenv("PGQUEUE_POLL_INTERVAL", "0.2")
    module = import_example(monkeypatch, database_url)
    monkeypatch.setattr(sys.modules["pgqueue.examples.tasks"], "STEP_SECONDS", 0)
    return module


async def test_the_email_waits_for_the_thumbnail_and_the_order_is_paid_once(
    example: ModuleType, db
) -> None:
    app = example.create_app()
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        registered = (await client.post("/register", json={
            "email": "ada@example.com", "name": "Ada",
            "avatar_url": "https://example.com/ada.png"})).json()
        detail = (await client.get(f"{PREFIX}/jobs/{registered['job_id']}")).json()
        assert detail["status"] == "waiting"
        assert detail["dependencies"] == [registered["thumbnail_job_id"]]
        ordered = await client.post("/orders", json={"user_id": registered["user_id"],
                                                     "amount_cents": 1200})
        assert ordered.status_code == 201, ordered.text
        assert (await client.post("/orders", json={"user_id": 999, "amount_cents": 1})
                ).status_code == 404

        async with example.pgq.worker(concurrency=4):
            email = await example.pgq.wait(registered["job_id"], timeout=TIMEOUT)
            payment = await example.pgq.wait(ordered.json()["job_id"], timeout=TIMEOUT)

    assert email.status == "succeeded"
    assert email.result == {"sent_to": "ada@example.com",
                            "avatar": f"avatars/{registered['user_id']}-128.png"}
    assert email.started_at > await db.fetchval(
        "SELECT finished_at FROM pgqueue.jobs WHERE id = $1", registered["thumbnail_job_id"])
    assert payment.status == "succeeded"
    assert payment.result == {"order_id": ordered.json()["order_id"], "charged": True}
    assert await db.fetchval("SELECT count(*) FROM orders WHERE paid_at IS NOT NULL") == 1
