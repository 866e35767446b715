"""The FastAPI router, its event streams and dashboard, the lifespan helper and the example app.

Everything runs against a real PostgreSQL (the ``pgq`` fixture's database). Plain requests go
through httpx's ASGI transport; event streams go through a real uvicorn server on a free port,
because the transport would buffer a stream until it ends.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from types import ModuleType
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException

from pgqueue import JobContext, PgQueue
from pgqueue.fastapi import create_router, lifespan

from .example_helpers import import_example
from .http_helpers import Event, read_events, serve

PREFIX = "/pgqueue"
TIMEOUT = 60  # generous: only a hang should ever reach it

JOB_FIELDS = {
    "id", "task", "queue", "status", "args", "kwargs", "priority", "attempts", "max_attempts",
    "run_at", "created_at", "started_at", "finished_at", "result", "error", "progress",
    "unique_key",
}


def make_app(pgq: PgQueue, prefix: str = PREFIX, **include: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(create_router(pgq), prefix=prefix, **include)
    return app


def asgi_client(app: Any, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, **options), base_url="http://test", timeout=TIMEOUT
    )


@pytest.fixture
async def client(pgq: PgQueue) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app(pgq)) as client:
        yield client


def add_echo(pgq: PgQueue) -> Any:
    @pgq.task(name="echo")
    def echo(value: int) -> int:
        return value

    return echo


async def run_job(pgq: PgQueue, job_id: int, logs: int = 0) -> None:
    """Run the job with a worker until it is final and its ``logs`` log lines are written.

    The lines are awaited as events because the worker may write a job's last lines after its
    final status (a core issue, reported).
    """
    async with pgq.events.watch(job_id) as events, pgq.worker():
        async with asyncio.timeout(TIMEOUT):
            while logs:
                logs -= (await events.get())["kind"] == "log"
        await pgq.wait(job_id, timeout=TIMEOUT)


def assert_job_json(body: dict[str, Any]) -> None:
    assert JOB_FIELDS <= set(body)
    for field in ("run_at", "created_at", "started_at", "finished_at"):
        if body[field] is not None:
            assert datetime.fromisoformat(body[field]).tzinfo is not None, body[field]


# -- GET /jobs ------------------------------------------------------------------------------------


async def test_list_jobs_is_keyset_paginated_newest_first(pgq: PgQueue, client: httpx.AsyncClient):
    echo = add_echo(pgq)
    ids = [(await echo.enqueue(n)).id for n in range(7)]

    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"before": cursor} if cursor else {})
        response = await client.get(f"{PREFIX}/jobs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [job["id"] for job in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == page["jobs"][-1]["id"]
    assert seen == sorted(ids, reverse=True)
    assert pages == 3

    exact = (await client.get(f"{PREFIX}/jobs", params={"limit": 7})).json()
    assert len(exact["jobs"]) == 7 and exact["next_cursor"] is None
    assert_job_json(exact["jobs"][0])


async def test_list_jobs_filters(pgq: PgQueue, client: httpx.AsyncClient):
    echo = add_echo(pgq)

    @pgq.task(name="other", queue="mail")
    def other() -> None: ...

    first = await echo.enqueue(1)
    await echo.enqueue(2)
    mail = await other.enqueue()
    await pgq.cancel(first.id)

    async def ids(**params: Any) -> list[int]:
        response = await client.get(f"{PREFIX}/jobs", params=params)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["jobs"]]

    assert await ids(queue="mail") == [mail.id]
    assert await ids(task="other") == [mail.id]
    assert await ids(status="cancelled") == [first.id]
    assert len(await ids(status="queued", queue="default")) == 1
    assert await ids(queue="nowhere") == []


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "limit=0", "limit=501", "limit=ten", "before=abc", "before=0", "before=-5",
     "before=99999999999999999999", "queue=", "task=%00x"],
)
async def test_list_jobs_rejects_malformed_filters(client: httpx.AsyncClient, query: str):
    response = await client.get(f"{PREFIX}/jobs?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"]


# -- one job --------------------------------------------------------------------------------------


async def test_get_job_with_logs_and_iso_times(pgq: PgQueue, client: httpx.AsyncClient):
    @pgq.task(name="chatty")
    async def chatty(ctx: JobContext) -> dict[str, int]:
        await ctx.log("first line")
        await ctx.log("second line")
        return {"answer": 42}

    job = await chatty.enqueue()
    await run_job(pgq, job.id, logs=2)

    response = await client.get(f"{PREFIX}/jobs/{job.id}")
    assert response.status_code == 200
    body = response.json()
    assert_job_json(body)
    assert body["status"] == "succeeded" and body["result"] == {"answer": 42}
    assert body["attempts"] == 1 and body["finished_at"] is not None
    # Sorted: lines written in one batch may get their ids out of order (a core issue, reported).
    assert sorted(line["message"] for line in body["logs"]) == ["first line", "second line"]


async def test_unknown_job_is_404(client: httpx.AsyncClient):
    for method, path in [("GET", "/jobs/424242"), ("POST", "/jobs/424242/cancel"),
                         ("POST", "/jobs/424242/retry"), ("GET", "/jobs/424242/events"),
                         ("GET", "/ui/jobs/424242")]:
        response = await client.request(method, PREFIX + path)
        assert response.status_code == 404, (path, response.text)
        assert "424242" in response.json()["detail"]


@pytest.mark.parametrize("job_id", ["abc", "-1", "0", "1.5", "99999999999999999999"])
async def test_malformed_job_id_is_422(client: httpx.AsyncClient, job_id: str):
    for method, path in [("GET", f"/jobs/{job_id}"), ("POST", f"/jobs/{job_id}/cancel"),
                         ("POST", f"/jobs/{job_id}/retry"), ("GET", f"/jobs/{job_id}/events"),
                         ("GET", f"/ui/jobs/{job_id}")]:
        response = await client.request(method, PREFIX + path)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["loc"] == ["path", "job_id"]


# -- cancel and retry -----------------------------------------------------------------------------


async def test_cancel_and_retry_answer_with_the_job(pgq: PgQueue, client: httpx.AsyncClient):
    job = await add_echo(pgq).enqueue(1)

    cancelled = await client.post(f"{PREFIX}/jobs/{job.id}/cancel")
    assert cancelled.status_code == 200
    assert_job_json(cancelled.json())
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["id"] == job.id

    again = await client.post(f"{PREFIX}/jobs/{job.id}/cancel")
    assert again.status_code == 409
    assert again.json()["status"] == "cancelled"
    assert "cancelled" in again.json()["detail"]

    retried = await client.post(f"{PREFIX}/jobs/{job.id}/retry")
    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"

    refused = await client.post(f"{PREFIX}/jobs/{job.id}/retry")
    assert refused.status_code == 409
    assert_job_json(refused.json())
    assert refused.json()["status"] == "queued" and "retried" in refused.json()["detail"]
    assert (await pgq.get_job(job.id)).status == "queued"


async def test_cancel_a_running_job(pgq: PgQueue, client: httpx.AsyncClient):
    started = asyncio.Event()

    @pgq.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    job = await forever.enqueue()
    async with pgq.worker():
        await asyncio.wait_for(started.wait(), TIMEOUT)
        response = await client.post(f"{PREFIX}/jobs/{job.id}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert (await pgq.wait(job.id, timeout=TIMEOUT)).status == "cancelled"


# -- stats, queues, workers, metrics --------------------------------------------------------------


async def test_stats(pgq: PgQueue, client: httpx.AsyncClient):
    echo = add_echo(pgq)
    await echo.enqueue(1)
    cancelled = await echo.enqueue(2)
    await pgq.cancel(cancelled.id)
    response = await client.get(f"{PREFIX}/stats")
    assert response.status_code == 200
    assert response.json() == {"default": {"queued": 1, "cancelled": 1}} == await pgq.stats()


async def test_queues_pause_and_resume(pgq: PgQueue, client: httpx.AsyncClient):
    await add_echo(pgq).enqueue(1)
    assert (await client.get(f"{PREFIX}/queues")).json() == [
        {"name": "default", "paused": False, "counts": {"queued": 1}, "limits": NO_LIMITS,
         "held_back": 0}
    ]

    paused = await client.post(f"{PREFIX}/queues/default/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert await pgq.paused_queues() == ["default"]

    empty = await client.post(f"{PREFIX}/queues/later/pause")
    assert empty.json() == {"name": "later", "paused": True, "counts": {}, "limits": NO_LIMITS,
                            "held_back": 0}
    queues = (await client.get(f"{PREFIX}/queues")).json()
    assert [(queue["name"], queue["paused"]) for queue in queues] == [
        ("default", True), ("later", True)
    ]

    resumed = await client.post(f"{PREFIX}/queues/default/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert await pgq.paused_queues() == ["later"]


NO_LIMITS = {"concurrency": None, "rate": None, "period": None, "group_concurrency": None}


async def test_queue_limits_are_shown_and_changed(pgq: PgQueue, client: httpx.AsyncClient):
    assert (await client.get(f"{PREFIX}/queues/emails/limits")).json() == NO_LIMITS
    changed = await client.put(f"{PREFIX}/queues/emails/limits", json={"concurrency": 1})
    assert changed.status_code == 200
    assert changed.json()["limits"] == {**NO_LIMITS, "concurrency": 1}
    await client.put(f"{PREFIX}/queues/emails/limits", json={"rate": 100, "period": 60})
    assert await pgq.queue_limits("emails") == {**NO_LIMITS, "concurrency": 1, "rate": 100,
                                                "period": 60.0}
    removed = await client.put(f"{PREFIX}/queues/emails/limits", json={"concurrency": None})
    assert removed.json()["limits"] == {**NO_LIMITS, "rate": 100, "period": 60.0}
    for bad in ({"concurrency": 0}, {"rate": "many"}, {"period": -1}, {"burst": 3}, [1]):
        response = await client.put(f"{PREFIX}/queues/emails/limits", json=bad)
        assert response.status_code == 422, (bad, response.text)
    assert (await client.get(f"{PREFIX}/queues/emails/limits")).json()["rate"] == 100


async def test_a_reached_limit_shows_what_it_holds_back(pgq: PgQueue, client: httpx.AsyncClient):
    started, release = asyncio.Event(), asyncio.Event()

    @pgq.task(queue="emails")
    async def send() -> None:
        started.set()
        await release.wait()

    await pgq.configure_queue("emails", concurrency=1)
    await send.using().enqueue_many([(), (), ()])
    async with pgq.worker(concurrency=4):
        await asyncio.wait_for(started.wait(), TIMEOUT)
        [queue] = (await client.get(f"{PREFIX}/queues")).json()
        assert (queue["counts"], queue["held_back"]) == ({"running": 1, "queued": 2}, 2)
        page = (await client.get(f"{PREFIX}/")).text
        assert "1 / 1 running" in page and "2 held back" in page
        release.set()


async def test_workers(pgq: PgQueue, client: httpx.AsyncClient):
    assert (await client.get(f"{PREFIX}/workers")).json() == []
    async with pgq.worker(queues=["default"], concurrency=3) as worker:
        response = await client.get(f"{PREFIX}/workers")
    assert response.status_code == 200
    [info] = response.json()
    assert info["id"] == worker.id and info["concurrency"] == 3 and info["queues"] == ["default"]
    assert info["running"] == 0 and datetime.fromisoformat(info["heartbeat_at"])


async def test_metrics(pgq: PgQueue, client: httpx.AsyncClient):
    echo = add_echo(pgq)
    await echo.enqueue(1)
    await echo.enqueue(2)
    await pgq.pause_queue("default")
    response = await client.get(f"{PREFIX}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'pgqueue_jobs{queue="default",status="queued"} 2.0' in text
    assert 'pgqueue_jobs{queue="default",status="failed"} 0.0' in text
    assert 'pgqueue_queue_paused{queue="default"} 1.0' in text
    assert "pgqueue_workers 0.0" in text


async def test_openapi_documents_the_routes(pgq: PgQueue):
    schema = make_app(pgq).openapi()
    paths = schema["paths"]
    for path in ["/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/retry",
                 "/jobs/{job_id}/events", "/events", "/stats", "/queues", "/workers", "/metrics",
                 "/"]:
        assert PREFIX + path in paths, path
    listed = paths[f"{PREFIX}/jobs"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["$ref"].endswith("/JobPage")
    assert "409" in paths[f"{PREFIX}/jobs/{{job_id}}/cancel"]["post"]["responses"]


# -- errors of the deployment ---------------------------------------------------------------------


async def test_a_closed_queue_answers_503_with_the_reason(database_url: str):
    async with asgi_client(make_app(PgQueue(dsn=database_url))) as client:
        response = await client.get(f"{PREFIX}/jobs")
    assert response.status_code == 503
    assert "not open" in response.json()["detail"]


# -- event streams --------------------------------------------------------------------------------


async def collect(stream: AsyncIterator[Event], until: Any = None) -> list[Event]:
    """Read events until the stream ends, or until ``until(events)`` is true (then the stream
    can be read on by another call)."""
    events: list[Event] = []
    async with asyncio.timeout(TIMEOUT):
        async for event in stream:
            events.append(event)
            if until is not None and until(events):
                break
    return events


async def test_job_events_stream_progress_logs_and_final_status_live(pgq: PgQueue):
    release = asyncio.Event()

    @pgq.task(name="steps")
    async def steps(ctx: JobContext) -> str:
        await ctx.progress(40, "halfway")
        await ctx.log("a log line")
        await release.wait()
        return "done"

    job = await steps.enqueue()
    async with (
        serve(make_app(pgq)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        http.stream("GET", f"{PREFIX}/jobs/{job.id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = read_events(response)
        async with pgq.worker():
            # Both arrive while the task is still running: the stream is live.
            live = await collect(stream, until=lambda events: {"progress", "log"} <= {
                event.event for event in events})
            release.set()
            rest = await collect(stream)  # returns because the server ends the stream

    # The current state comes first: the log lines so far, then the job.
    first = next(event for event in live if event.event == "status")
    assert all(event.event == "log" for event in live[: live.index(first)])
    assert first.data["id"] == job.id and first.data["status"] in ("queued", "running")
    assert_job_json(first.data)
    progress = next(event.data for event in live if event.event == "progress")
    assert progress == {"id": job.id, "progress": 40.0, "message": "halfway"}
    log = next(event.data for event in live if event.event == "log")
    assert log["job_id"] == job.id and log["message"] == "a log line"
    last = rest[-1]
    assert last.event == "status" and last.data["status"] == "succeeded"
    assert last.data["result"] == "done"
    assert all(event.data.get("status") != "succeeded" for event in rest[:-1])


async def test_job_events_of_a_finished_job_send_its_state_and_end(pgq: PgQueue):
    @pgq.task(name="logs_then_fails", max_attempts=1)
    async def logs_then_fails(ctx: JobContext) -> None:
        await ctx.log("about to fail")
        raise RuntimeError("boom")

    job = await logs_then_fails.enqueue()
    await run_job(pgq, job.id, logs=1)

    async with (
        serve(make_app(pgq)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        http.stream("GET", f"{PREFIX}/jobs/{job.id}/events") as response,
    ):
        events = await collect(read_events(response))
    assert [event.event for event in events] == ["log", "status"]
    assert events[0].data["message"] == "about to fail"
    assert events[1].data["status"] == "failed" and "RuntimeError: boom" in events[1].data["error"]


async def test_dashboard_events_stream_stats_status_and_progress(pgq: PgQueue):
    release = asyncio.Event()

    @pgq.task(name="reports")
    async def reports(ctx: JobContext) -> None:
        await ctx.progress(25)
        await release.wait()

    async with (
        serve(make_app(pgq)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        http.stream("GET", f"{PREFIX}/events") as response,
    ):
        assert response.status_code == 200
        stream = read_events(response)
        first = await collect(stream, until=lambda events: True)
        assert first == [Event("stats", {})]
        job = await reports.enqueue()
        async with pgq.worker():
            running = await collect(stream, until=lambda events: any(
                event.event == "progress" for event in events))
            release.set()
            finished = await collect(stream, until=lambda events: any(
                event.event == "stats" and event.data == {"default": {"succeeded": 1}}
                for event in events))

    assert Event("status", {"id": job.id, "status": "running"}) in running
    assert Event("progress", {"id": job.id, "progress": 25.0, "message": None}) in running
    assert Event("status", {"id": job.id, "status": "succeeded"}) in finished


# -- the router's protection comes from include_router --------------------------------------------


async def require_token(x_token: Annotated[str | None, Header()] = None) -> None:
    if x_token != "s3cret":
        raise HTTPException(401, "token required")


async def test_every_route_honours_include_router_dependencies(pgq: PgQueue):
    job = await add_echo(pgq).enqueue(1)
    router = create_router(pgq)
    app = FastAPI()
    app.include_router(router, prefix=PREFIX, dependencies=[Depends(require_token)])
    values = {"job_id": job.id, "name": "default", "filename": "dashboard.js"}
    routes = [(method, PREFIX + route.path.format(**values))
              for route in router.routes for method in route.methods]
    assert {path for _, path in routes} >= {
        f"{PREFIX}/", f"{PREFIX}/events", f"{PREFIX}/jobs/{job.id}/events",
        f"{PREFIX}/static/dashboard.js", f"{PREFIX}/ui/jobs/{job.id}", f"{PREFIX}/metrics",
    }

    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        for method, path in routes:
            # The bulk routes' filter; an empty change of limits is a valid one.
            body = {"json": {}} if method in ("POST", "PUT") else {}
            async with http.stream(method, path, **body) as response:
                assert response.status_code == 401, (method, path)
            async with http.stream(method, path, headers={"X-Token": "s3cret"},
                                   **body) as response:
                assert response.status_code < 400, (method, path, response.status_code)


# -- the dashboard --------------------------------------------------------------------------------

_LINK = re.compile(r'(?:href|src|data-action)="([^"#][^"]*)"')


@pytest.mark.parametrize(
    ("prefix", "mount", "root_path", "base"),
    [
        (PREFIX, "", "", "/pgqueue/"),
        ("", "", "", "/"),
        ("/admin/queue", "/tools", "", "/tools/admin/queue/"),
        (PREFIX, "", "/behind-proxy", "/behind-proxy/pgqueue/"),
    ],
)
async def test_dashboard_pages_link_within_their_mount_point(
    pgq: PgQueue, prefix: str, mount: str, root_path: str, base: str
):
    echo = add_echo(pgq)
    job = await echo.enqueue(7)
    app = make_app(pgq, prefix)
    if mount:
        outer = FastAPI()
        outer.mount(mount, app)
        app = outer
    async with asgi_client(app, root_path=root_path) as client:
        for page in ["", "ui/jobs", "ui/jobs?status=queued&queue=default", f"ui/jobs/{job.id}"]:
            response = await client.get(base + page)
            assert response.status_code == 200, (page, response.text)
            assert response.headers["content-type"].startswith("text/html")
            html = response.text
            assert f'data-base="{base}"' in html
            assert "echo" in html
            links = _LINK.findall(html)
            assert links and all(link.startswith(base) for link in links), links
            for asset in re.findall(r'(?:href|src)="([^"]+/static/[^"?]+)', html):
                assert (await client.get(asset)).status_code == 200, asset


async def test_job_page_shows_args_result_error_and_logs(pgq: PgQueue, client: httpx.AsyncClient):
    @pgq.task(name="flaky", max_attempts=1)
    async def flaky(word: str, ctx: JobContext) -> None:
        await ctx.log(f"trying {word}")
        raise ValueError(f"cannot {word}")

    job = await flaky.enqueue("<frobnicate>")
    await run_job(pgq, job.id, logs=1)
    html = (await client.get(f"{PREFIX}/ui/jobs/{job.id}")).text
    assert "&lt;frobnicate&gt;" in html and "<frobnicate>" not in html  # escaped
    assert "ValueError: cannot &lt;frobnicate&gt;" in html
    assert "trying &lt;frobnicate&gt;" in html
    assert 'id="retry-job"' in html and 'id="cancel-job"' not in html


# -- lifespan -------------------------------------------------------------------------------------


async def test_lifespan_opens_and_closes_the_pool_and_runs_a_worker(database_url: str):
    pgq = PgQueue(dsn=database_url)
    echo = add_echo(pgq)
    app = FastAPI(lifespan=lifespan(pgq, worker=True, concurrency=2))
    async with app.router.lifespan_context(app):
        assert pgq.is_open
        job = await echo.enqueue(5)
        assert (await pgq.wait(job.id, timeout=TIMEOUT)).result == 5
    assert not pgq.is_open


async def test_lifespan_leaves_an_already_open_pool_open(pgq: PgQueue):
    app = FastAPI(lifespan=lifespan(pgq))
    async with app.router.lifespan_context(app):
        pass
    assert pgq.is_open


# -- the example app ------------------------------------------------------------------------------


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, database_url: str) -> ModuleType:
    """``pgqueue.examples.app`` imported afresh against this test's database, as a user runs it."""
    monkeypatch.setenv("PGQUEUE_PROGRESS_INTERVAL", "0.05")
    monkeypatch.setenv("PGQUEUE_POLL_INTERVAL", "0.2")
    return import_example(monkeypatch, database_url)


async def test_example_register_writes_user_and_job_in_one_transaction(example: ModuleType, db):
    app = example.create_app()
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        response = await client.post("/register", json={"email": "ada@example.com", "name": "Ada"})
        assert response.status_code == 201, response.text
        created = response.json()

        duplicate = await client.post("/register", json={"email": "ADA@example.com", "name": "A"})
        assert duplicate.status_code == 409
        assert "already registered" in duplicate.json()["detail"]

        invalid = await client.post("/register", json={"email": "not an email", "name": "x"})
        assert invalid.status_code == 422

    users = await db.fetch("SELECT id, email, xmin::text AS tx FROM users")
    jobs = await db.fetch("SELECT id, task, args, status::text, xmin::text AS tx FROM pgqueue.jobs")
    assert [(u["id"], u["email"]) for u in users] == [(created["user_id"], "ada@example.com")]
    assert [j["id"] for j in jobs] == [created["job_id"]]  # the duplicate enqueued nothing
    [user], [job] = users, jobs
    assert job["task"] == "pgqueue.examples.tasks.send_welcome_email" and job["status"] == "queued"
    assert job["tx"] == user["tx"]  # written by the same transaction


async def test_example_refuses_what_its_table_cannot_store(example: ModuleType, db):
    """The request model answers 422 for what the database would fail on with a 500: NUL
    (U+0000), which fits a JSON string but not PostgreSQL text, and an email that only outgrows
    its column once lowercased (``İ`` lowers to two characters)."""
    app = example.create_app()
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        for body in ({"email": "ada\x00@example.com", "name": "Ada"},
                     {"email": "ada@example.com", "name": "Ada\x00"},
                     {"email": "İ" * 160 + "@example.com", "name": "Ada"}):
            response = await client.post("/register", json=body)
            assert response.status_code == 422, response.text
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_example_sends_the_welcome_email_with_its_worker(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sys.modules["pgqueue.examples.tasks"], "STEP_SECONDS", 0)
    app = example.create_app(worker=True)
    async with (
        app.router.lifespan_context(app),
        asgi_client(app) as client,
        example.pgq.events.watch() as events,
    ):
        job_id = (await client.post(
            "/register", json={"email": "grace@example.com", "name": "Grace"})).json()["job_id"]
        async with asyncio.timeout(TIMEOUT):  # its last words: the task's final log line
            while (await events.get()).get("message") != "sent to grace@example.com":
                pass
        job = await example.pgq.wait(job_id, timeout=TIMEOUT)
        assert job.status == "succeeded" and job.result == {"sent_to": "grace@example.com"}
        assert job.progress == 100 and job.progress_message == "sent"
        detail = (await client.get(f"{PREFIX}/jobs/{job_id}")).json()
        assert len(detail["logs"]) == 2


async def test_example_dashboard_token(example: ModuleType):
    app = example.create_app(example.Settings(dashboard_token="s3cret"))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        assert (await client.get(f"{PREFIX}/jobs")).status_code == 401
        assert (await client.get(f"{PREFIX}/", params={"token": "wrong"})).status_code == 401
        bearer = await client.get(f"{PREFIX}/jobs", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status_code == 200

        opened = await client.get(f"{PREFIX}/", params={"token": "s3cret"})
        assert opened.status_code == 200
        assert "pgqueue_dashboard_token=s3cret" in opened.headers["set-cookie"]
        # The browser now sends the cookie with the dashboard's own requests.
        assert (await client.get(f"{PREFIX}/static/dashboard.css")).status_code == 200
        assert (await client.get(f"{PREFIX}/stats")).status_code == 200

        client.cookies.clear()
        assert (await client.get(f"{PREFIX}/stats")).status_code == 401
        assert (await client.get("/")).status_code == 200  # the app's own pages are not guarded


async def test_example_dashboard_is_open_without_a_token(example: ModuleType):
    app = example.create_app()
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        assert (await client.get(f"{PREFIX}/jobs")).status_code == 200
        assert (await client.get(f"{PREFIX}/")).status_code == 200
