"""Enqueue: in the caller's transaction on every supported connection type, with options,
uniqueness, and clear errors before anything is written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from pgqueue import JobContext, JobStatus, PayloadTooLarge, PgQueue
from pgqueue.migrate import sqlalchemy_url


async def count_jobs(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM pgqueue.jobs")


def define(pgq: PgQueue):
    @pgq.task(queue="emails", max_attempts=5, timeout=30)
    async def send_welcome_email(user_id: int, ctx: JobContext) -> dict:
        return {"sent": user_id}

    return send_welcome_email


async def test_enqueue_in_its_own_transaction_returns_the_job(pgq: PgQueue, db) -> None:
    send = define(pgq)
    job = await send.enqueue(42)
    assert job.id > 0
    assert (job.task, job.queue, job.status, job.args, job.kwargs) == (
        send.name, "emails", JobStatus.QUEUED, [42], {}
    )
    assert (job.max_attempts, job.attempts, job.priority) == (5, 0, 0)
    assert send.name == f"{__name__}.define.<locals>.send_welcome_email"
    stored = await pgq.get_job(job.id)
    assert stored is not None and stored.args == [42] and stored.status == JobStatus.QUEUED


async def test_workers_are_woken_once_per_statement_at_commit_and_only_for_ready_jobs(
    pgq: PgQueue, database_url: str, db
) -> None:
    """Each notification names its queue, so the first one to arrive proves the others never came:
    a rolled-back enqueue and a job scheduled for later wake nobody."""
    send = define(pgq)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener("pgqueue_jobs", lambda *args: heard.put_nowait(args[-1]))
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await send.using(conn, queue="rolled-back").enqueue(1)
                raise RuntimeError("the request failed")
        await send.using(conn, queue="later", delay=3600).enqueue(2)
        async with conn.transaction():
            await send.using(conn, queue="bulk").enqueue_many([3, 4, 5])
            await send.using(conn, queue="bulk").enqueue(6)
        await send.using(conn, queue="last").enqueue(7)
    finally:
        await conn.close()
    assert [await asyncio.wait_for(heard.get(), 30) for _ in range(2)] == [
        "queued:bulk",  # the transaction's two statements, one wake-up (same payload, same commit)
        "queued:last",
    ]


async def test_asyncpg_transaction_commit_and_rollback(pgq: PgQueue, database_url: str, db) -> None:
    send = define(pgq)
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            committed = await send.using(conn).enqueue(user_id=1)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await send.using(conn).enqueue(user_id=2)
                raise RuntimeError("the request failed")
    finally:
        await conn.close()
    rows = await db.fetch("SELECT id, kwargs::text FROM pgqueue.jobs")
    assert [(r["id"], r["kwargs"]) for r in rows] == [(committed.id, '{"user_id": 1}')]


async def test_job_is_invisible_to_workers_until_commit(pgq: PgQueue, database_url: str) -> None:
    ran = asyncio.Event()

    @pgq.task
    async def work() -> None:
        ran.set()

    conn = await asyncpg.connect(database_url)
    try:
        async with pgq.worker(concurrency=2):
            tx = conn.transaction()
            await tx.start()
            job = await work.using(conn).enqueue()
            # The worker is awake and polling; an uncommitted row must not be claimable.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ran.wait(), timeout=1.0)
            assert (await pgq.get_job(job.id)) is None
            await tx.commit()
            finished = await pgq.wait(job.id, timeout=30)
            assert finished.status == JobStatus.SUCCEEDED
    finally:
        await conn.close()


async def test_sqlalchemy_async_session_and_connection(pgq: PgQueue, database_url: str, db) -> None:
    send = define(pgq)
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        await_engine_setup = engine.begin()
        async with await_engine_setup as conn:
            await conn.execute(text("CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE)"))
        async with AsyncSession(engine) as session:
            async with session.begin():
                await session.execute(text("INSERT INTO users (email) VALUES ('a@x')"))
                in_session = await send.using(session).enqueue(1)
        async with AsyncSession(engine) as session:
            with pytest.raises(RuntimeError):
                async with session.begin():
                    await session.execute(text("INSERT INTO users (email) VALUES ('b@x')"))
                    await send.using(session).enqueue(2)
                    raise RuntimeError("rollback")
        async with engine.connect() as conn:
            async with conn.begin():
                in_connection = await send.using(conn, priority=3).enqueue(3)
    finally:
        await engine.dispose()
    assert await db.fetchval("SELECT count(*) FROM users") == 1
    rows = await db.fetch("SELECT id, args::text, priority FROM pgqueue.jobs ORDER BY id")
    assert [(r["id"], r["args"], r["priority"]) for r in rows] == [
        (in_session.id, "[1]", 0),
        (in_connection.id, "[3]", 3),
    ]


def test_enqueue_sync_through_a_sqlalchemy_session_needs_no_pool(database_url: str) -> None:
    pgq = PgQueue(dsn=database_url)  # never opened

    @pgq.task
    def resize_image(path: str) -> None: ...

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(engine) as session, session.begin():
            job = resize_image.using(session, delay=60).enqueue_sync("a.png")
        with Session(engine) as session:
            with pytest.raises(RuntimeError), session.begin():
                resize_image.using(session).enqueue_sync("b.png")
                raise RuntimeError("rollback")
        with engine.begin() as conn:
            many = resize_image.using(conn).enqueue_many_sync(["c.png", "d.png"])
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status::text, args::text FROM pgqueue.jobs ORDER BY id")).all()
    finally:
        engine.dispose()
    assert job.status == JobStatus.SCHEDULED
    assert [tuple(r) for r in rows] == [
        (job.id, "scheduled", '["a.png"]'),
        (many[0].id, "queued", '["c.png"]'),
        (many[1].id, "queued", '["d.png"]'),
    ]


async def test_enqueue_many_is_one_statement(pgq: PgQueue, database_url: str, db) -> None:
    send = define(pgq)
    conn = await asyncpg.connect(database_url)
    statements: list[str] = []
    conn.add_query_logger(lambda record: statements.append(record.query))
    try:
        async with conn.transaction():
            jobs = await send.using(conn).enqueue_many([(1,), (2,), {"user_id": 3}, 4])
    finally:
        await conn.close()
    assert len([s for s in statements if "INSERT INTO" in s]) == 1
    assert [job.args for job in jobs] == [[1], [2], [], [4]]
    assert jobs[2].kwargs == {"user_id": 3}
    assert [job.id for job in jobs] == sorted(job.id for job in jobs)
    assert await count_jobs(db) == 4
    assert jobs == [await pgq.get_job(job.id) for job in jobs]  # what was returned is what was stored
    later = await send.using(delay=60, priority=3, max_attempts=2).enqueue_many([5, 6])
    assert later == [await pgq.get_job(job.id) for job in later]


async def test_enqueue_by_name_without_the_function(pgq: PgQueue, db) -> None:
    job = await pgq.enqueue("elsewhere.tasks.reindex", "products", full=True)
    assert (job.task, job.queue, job.args, job.kwargs) == (
        "elsewhere.tasks.reindex", "default", ["products"], {"full": True}
    )
    send = define(pgq)
    by_name = await pgq.enqueue(send.name, 7)
    assert by_name.queue == "emails"  # a registered task's own options apply


async def test_options_delay_run_at_priority_queue_attempts(pgq: PgQueue) -> None:
    send = define(pgq)
    later = await send.using(delay=timedelta(minutes=5)).enqueue(1)
    assert later.status == JobStatus.SCHEDULED
    assert later.run_at > datetime.now(UTC) + timedelta(minutes=4)
    at = datetime.now(UTC) + timedelta(hours=1)
    pinned = await send.using(run_at=at, priority=9, queue="vip", max_attempts=1).enqueue(2)
    assert (pinned.status, pinned.priority, pinned.queue, pinned.max_attempts) == (
        JobStatus.SCHEDULED, 9, "vip", 1
    )
    assert abs((pinned.run_at - at).total_seconds()) < 0.001
    past = await send.using(run_at=datetime.now(UTC) - timedelta(seconds=5)).enqueue(3)
    assert past.status == JobStatus.QUEUED


async def test_bad_options_are_refused(pgq: PgQueue) -> None:
    send = define(pgq)
    with pytest.raises(ValueError, match="timezone-aware"):
        send.using(run_at=datetime.now())
    with pytest.raises(ValueError, match="either delay or run_at"):
        send.using(delay=1, run_at=datetime.now(UTC))
    with pytest.raises(TypeError, match="unknown enqueue option.*colour"):
        send.using(colour="red")
    with pytest.raises(ValueError, match="non-negative"):
        send.using(delay=-1)


async def test_unique_key_returns_the_existing_unfinished_job(pgq: PgQueue, db) -> None:
    send = define(pgq)
    first = await send.using(unique_key="welcome:42").enqueue(42)
    again = await send.using(unique_key="welcome:42").enqueue(42)
    assert again.id == first.id
    assert await count_jobs(db) == 1
    await db.execute("UPDATE pgqueue.jobs SET status = 'succeeded' WHERE id = $1", first.id)
    after_finish = await send.using(unique_key="welcome:42").enqueue(42)
    assert after_finish.id != first.id


async def test_unique_key_under_a_race_writes_one_row_and_never_raises(
    pgq: PgQueue, database_url: str, db
) -> None:
    send = define(pgq)
    conns = [await asyncpg.connect(database_url) for _ in range(8)]
    try:
        jobs = await asyncio.gather(
            *(send.using(conn, unique_key="race").enqueue(1) for conn in conns)
        )
    finally:
        for conn in conns:
            await conn.close()
    assert len({job.id for job in jobs}) == 1
    assert await count_jobs(db) == 1


async def test_unique_key_inside_an_uncommitted_transaction_waits_for_it(
    pgq: PgQueue, database_url: str, db
) -> None:
    send = define(pgq)
    holder = await asyncpg.connect(database_url)
    try:
        tx = holder.transaction()
        await tx.start()
        held = await send.using(holder, unique_key="k").enqueue(1)
        racing = asyncio.create_task(send.using(unique_key="k").enqueue(2))
        await asyncio.sleep(0.3)  # give the racing insert time to block on the uncommitted row
        assert not racing.done()
        await tx.commit()
        assert (await asyncio.wait_for(racing, 30)).id == held.id
    finally:
        await holder.close()


class Address(BaseModel):
    street: str
    city: str


async def test_bad_calls_raise_before_anything_is_written(pgq: PgQueue, db) -> None:
    send = define(pgq)

    @pgq.task
    async def ship(address: Address, when: datetime) -> None: ...

    with pytest.raises(TypeError, match=rf"task {send.name}: missing a required argument: 'user_id'"):
        await send.enqueue()
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        await send.enqueue(1, colour="red")
    with pytest.raises(TypeError, match=r"argument 1 is not JSON-serializable \(object\)"):
        await send.enqueue(object())
    with pytest.raises(TypeError, match=r"argument 'user_id' is not JSON-serializable"):
        await send.enqueue(user_id={1, object()})
    with pytest.raises(ValueError, match="argument 1 is nan, which JSON cannot hold"):
        await send.enqueue(float("nan"))
    with pytest.raises(TypeError, match="missing a required argument"):
        await send.using().enqueue_many([(1,), ()])
    assert await count_jobs(db) == 0
    # Models and datetimes are encoded as JSON.
    job = await ship.enqueue(Address(street="1 Main", city="Oslo"), datetime(2030, 1, 1, tzinfo=UTC))
    assert job.args == [{"street": "1 Main", "city": "Oslo"}, "2030-01-01T00:00:00Z"]


async def test_payload_over_the_limit_is_rejected(database_url: str, db) -> None:
    async with PgQueue(dsn=database_url, max_payload_bytes=1000) as pgq:
        @pgq.task
        async def store(blob: str) -> None: ...

        with pytest.raises(PayloadTooLarge, match="over the limit of 1000"):
            await store.enqueue("x" * 2000)
        await store.enqueue("x" * 10)
    assert await count_jobs(db) == 1


async def test_enqueue_needs_an_open_pool(database_url: str) -> None:
    pgq = PgQueue(dsn=database_url)

    @pgq.task
    async def work() -> None: ...

    with pytest.raises(RuntimeError, match="async with pgq"):
        await work.enqueue()


async def test_calling_the_task_runs_it_in_process(pgq: PgQueue) -> None:
    @pgq.task
    def add(a: int, b: int) -> int:
        return a + b

    @pgq.task(name="custom.name")
    async def double(x: int) -> int:
        return 2 * x

    assert add(2, 3) == 5
    assert await double(4) == 8
    assert double.name == "custom.name"


def test_tasks_are_registered_per_instance() -> None:
    a, b = PgQueue(dsn="postgresql://x/y"), PgQueue(dsn="postgresql://x/y")

    @a.task
    async def only_in_a() -> None: ...

    assert only_in_a.name in a.tasks
    assert only_in_a.name not in b.tasks
    with pytest.raises(ValueError, match="already registered"):
        a.task(name=only_in_a.name)(lambda: None)


def test_bad_settings_say_what_to_do() -> None:
    from pgqueue import ConfigurationError

    with pytest.raises(ConfigurationError, match="invalid pgqueue schema name"):
        PgQueue(dsn="postgresql://x/y", schema="drop table; --")
    with pytest.raises(ConfigurationError, match="postgresql:// URL"):
        asyncio.run(PgQueue(dsn="mysql://x/y").open())
    with pytest.raises(ConfigurationError, match="set PGQUEUE_DSN"):
        asyncio.run(PgQueue(dsn="").open())


async def test_unreachable_database_names_host_and_port() -> None:
    from pgqueue import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable, match="127.0.0.1:1"):
        await PgQueue(dsn="postgresql://postgres@127.0.0.1:1/test").open()
