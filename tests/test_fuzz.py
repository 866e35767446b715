"""Schemathesis fuzzes the HTTP APIs from their OpenAPI schemas: whatever a client sends, no
answer is a 5xx (its ``not_a_server_error`` check), on any operation.

One test per operation, of pgqueue's router mounted alone (with a few jobs in the database, so
ids can hit real rows) and of the example app's own routes (the router it mounts is the first
one's subject). The requests go through Schemathesis' ASGI transport to the real app, its lifespan
included, on the test's own database. Each operation gets a bounded number of generated requests,
valid and invalid, besides Schemathesis' boundary cases, so the file runs in well under a minute.

The schemas are read at collection, from apps that never open their queue: an app's schema is
code, not data. (Schemathesis' fixture-based loader would spare that, but it does not run on
pytest 9.)

The two event streams last until their job is final (``/jobs/{id}/events``) or for ever
(``/events``). Both send an event on connect (the job's status, the counts), so each stream is
read up to that first event and then cut (``max-stream-events``): by then its status code, all
the check looks at, is known.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from pgqueue import JobContext, PgQueue
from pgqueue.fastapi import create_router, lifespan
from pgqueue.testing import drain

from .example_helpers import import_example

pytestmark = pytest.mark.slow

EXAMPLES = 50  # generated requests per operation, besides the boundary cases
UNUSED_DSN = "postgresql://schema-only@127.0.0.1/none"  # never connected to

# Text that PostgreSQL cannot store as given, mixed into the generated strings, since Hypothesis
# alone rarely draws it within a few dozen examples: NUL (U+0000), which JSON and URLs carry but
# PostgreSQL text cannot, and an email that outgrows a varchar(320) once lowercased (İ lowers to
# two characters).
HOSTILE_TEXT = ["\x00", "a\x00@b.co", "İ" * 160 + "@b.co"]
HOSTILE = {"dictionary": "hostile-text", "probability": 0.2}

# One app and database per operation, shared by its generated requests as a server's would be.
SHARED_APP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def config() -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "generation": {
            "max-examples": EXAMPLES,
            "database": "none",  # no saved examples: every run explores afresh
        },
        "dictionaries": {"hostile-text": {"values": HOSTILE_TEXT}},
        # Every text that reaches the database: the router's queue and task names (path and
        # query), the example's body.
        "parameters": {
            name: HOSTILE for name in ("name", "queue", "task", "body.email", "body.name")
        },
        "max-stream-events": 1,
        "request-timeout": 60,  # only a hang reaches it
    })


def router_app(pgq: PgQueue) -> FastAPI:
    app = FastAPI(lifespan=lifespan(pgq))
    app.include_router(create_router(pgq), prefix="/pgqueue")
    return app


def example_app(monkeypatch: pytest.MonkeyPatch, database_url: str) -> FastAPI:
    app: FastAPI = import_example(monkeypatch, database_url).create_app()
    return app


def schema_of(app: FastAPI) -> Any:
    return schemathesis.openapi.from_dict(app.openapi(), config=config())


def _example_schema() -> Any:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return schema_of(example_app(monkeypatch, UNUSED_DSN))


router_schema = schema_of(router_app(PgQueue(dsn=UNUSED_DSN)))
example_schema = _example_schema().exclude(path_regex="^/pgqueue/")


async def add_jobs(pgq: PgQueue) -> None:
    """A succeeded job with log lines, a failed one and a queued one."""

    @pgq.task(name="fuzz.echo", max_attempts=1)
    async def echo(value: Any, ctx: JobContext) -> Any:
        await ctx.log(f"echo {value!r}")
        if value == "fail":
            raise ValueError("asked to fail")
        return value

    await echo.enqueue({"nested": [1, "ü", None]})
    await echo.enqueue("fail")
    await drain(pgq)
    await echo.enqueue("waiting")


@pytest.fixture
async def router(pgq: PgQueue, database_url: str) -> FastAPI:
    """The router on this test's database, with jobs; its own ``PgQueue``, which its lifespan
    opens in the transport's event loop (the ``pgq`` fixture's lives in the test's)."""
    await add_jobs(pgq)
    return router_app(PgQueue(dsn=database_url))


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, database_url: str) -> FastAPI:
    return example_app(monkeypatch, database_url)


@router_schema.parametrize()
@SHARED_APP
def test_router_never_answers_a_server_error(case: schemathesis.Case, router: FastAPI) -> None:
    case.call_and_validate(app=router, checks=[not_a_server_error])


@example_schema.parametrize()
@SHARED_APP
def test_example_app_never_answers_a_server_error(
    case: schemathesis.Case, example: FastAPI
) -> None:
    case.call_and_validate(app=example, checks=[not_a_server_error])
