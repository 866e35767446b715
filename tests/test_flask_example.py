"""The Flask example (``pgqueue.examples.flask_app``) against a real database: the user and the
welcome email's job are committed together, through the app's own psycopg transaction."""

from __future__ import annotations

import asyncio
import importlib
import sys
from types import ModuleType

import pytest

from pgqueue.testing import drain

from .example_helpers import MODULES

pytest.importorskip("flask", reason="the Flask example needs flask (pip install flask)")


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, database_url: str) -> ModuleType:
    monkeypatch.setenv("PGQUEUE_DSN", database_url)
    for name in (*MODULES, "pgqueue.examples.flask_app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("pgqueue.examples.flask_app")
    monkeypatch.setattr(sys.modules["pgqueue.examples.tasks"], "STEP_SECONDS", 0.0)
    return module


async def test_register_enqueues_the_email_with_the_user_and_the_job_runs(example, db) -> None:
    client = example.create_app().test_client()

    response = await asyncio.to_thread(client.post, "/register", json={"email": "Ada@Example.com"})
    assert response.status_code == 201, response.text
    user_id, job_id = response.json["user_id"], response.json["job_id"]
    assert await db.fetchval("SELECT email FROM flask_users WHERE id = $1", user_id) == "ada@example.com"
    shown = (await asyncio.to_thread(client.get, f"/jobs/{job_id}")).json
    assert (shown["status"], shown["task"]) == ("queued", example.send_welcome_email.name)

    async with example.pgq:
        [ran] = await drain(example.pgq)
    assert ran.id == job_id
    shown = (await asyncio.to_thread(client.get, f"/jobs/{job_id}")).json
    assert (shown["status"], shown["result"]) == ("succeeded", {"sent_to": "ada@example.com"})


async def test_a_failed_registration_leaves_no_job(example, db) -> None:
    client = example.create_app().test_client()
    first = await asyncio.to_thread(client.post, "/register", json={"email": "bob@example.com"})
    again = await asyncio.to_thread(client.post, "/register", json={"email": "BOB@example.com"})
    assert (first.status_code, again.status_code) == (201, 409)
    assert await db.fetchval("SELECT count(*) FROM pgqueue.jobs") == 1
    assert (await asyncio.to_thread(client.get, "/jobs/999")).status_code == 404


async def test_cancel_a_job_from_the_flask_app(example) -> None:
    client = example.create_app().test_client()
    job_id = (await asyncio.to_thread(client.post, "/register", json={"email": "c@example.com"})
              ).json["job_id"]
    cancelled = await asyncio.to_thread(client.post, f"/jobs/{job_id}/cancel")
    assert (cancelled.status_code, cancelled.json["status"]) == (200, "cancelled")
    again = await asyncio.to_thread(client.post, f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
