"""The example service again, as a plain sync Flask app: no event loop, no asyncpg pool.

``POST /register`` inserts the user and enqueues ``send_welcome_email`` in the app's own psycopg
transaction (``enqueue_sync`` through the connection): the job exists if and only if the user
does. ``GET /jobs/<id>`` and ``POST /jobs/<id>/cancel`` use a ``SyncQueue``. A Django view does
the same with ``send_welcome_email.using(connection.connection).enqueue_sync(...)`` inside
``transaction.atomic()``.

Needs ``pip install flask 'pgqueue[sync]'``. Run it, and a worker for the same tasks::

    PGQUEUE_DSN=postgresql://... python -m pgqueue migrate
    PGQUEUE_DSN=postgresql://... flask --app pgqueue.examples.flask_app run
    PGQUEUE_DSN=postgresql://... python -m pgqueue.worker pgqueue.examples.tasks:pgq
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Flask, abort, request

from pgqueue import Job, SyncQueue
from pgqueue.dsn import check_dsn

from .tasks import pgq, send_welcome_email

_USERS = """
CREATE TABLE IF NOT EXISTS flask_users (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


def _job(job: Job) -> dict[str, Any]:
    return {"id": job.id, "task": job.task, "status": job.status, "attempts": job.attempts,
            "progress": job.progress, "result": job.result, "error": job.error}


def create_app(dsn: str | None = None) -> Flask:
    dsn = check_dsn(dsn or pgq.settings.dsn)
    jobs = SyncQueue(dsn=dsn, schema=pgq.settings.schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_USERS)

    app = Flask(__name__)

    @app.post("/register")
    def register() -> tuple[dict[str, Any], int]:
        """Create the user and enqueue their welcome email, in one transaction."""
        email = (request.get_json(silent=True) or {}).get("email")
        if not isinstance(email, str) or "@" not in email or "\x00" in email:
            abort(422, "give a JSON body with an email")
        with psycopg.connect(dsn) as conn:  # not autocommit: one transaction, committed at exit
            try:
                user_id = conn.execute(
                    "INSERT INTO flask_users (email) VALUES (%s) RETURNING id", [email.lower()]
                ).fetchone()[0]
            except psycopg.errors.UniqueViolation:
                return {"error": f"{email} is already registered"}, 409
            job = send_welcome_email.using(conn).enqueue_sync(user_id, email.lower())
        return {"user_id": user_id, "job_id": job.id}, 201

    @app.get("/jobs/<int:job_id>")
    def show_job(job_id: int) -> dict[str, Any]:
        job = jobs.get_job(job_id)
        if job is None:
            abort(404, f"no job with id {job_id}")
        return _job(job)

    @app.post("/jobs/<int:job_id>/cancel")
    def cancel_job(job_id: int) -> tuple[dict[str, Any], int]:
        cancelled = jobs.cancel(job_id)
        job = jobs.get_job(job_id)
        if job is None:
            abort(404, f"no job with id {job_id}")
        return _job(job), 200 if cancelled else 409

    return app
