"""Arguments that are not JSON: refused at enqueue, naming the task and the argument, with nothing
written, on every path (own transaction, asyncpg and SQLAlchemy connections, batches, sync)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from pgqueue import PgQueue
from pgqueue.migrate import sqlalchemy_url


async def count_jobs(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM pgqueue.jobs")


class Signup(BaseModel):
    email: str


@pytest.mark.parametrize(
    ("value", "kind"),
    [({1, 2}, "set"), (frozenset({1}), "frozenset"), (b"raw", "bytes"),
     (bytearray(b"raw"), "bytearray"), (datetime(2030, 1, 1, tzinfo=UTC), "datetime"),
     (Signup(email="a@example.com"), "Signup"), ([1, {2}], "set"), ({"tags": {"a"}}, "set")],
)
async def test_an_untyped_parameter_takes_plain_json_values_only(
    pgq: PgQueue, db, value: object, kind: str
) -> None:
    """json.dumps-like conversion would turn a set into a list and bytes into a string, and the
    task would get something other than what the caller passed."""

    @pgq.task
    async def store(value, *more, **options) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(TypeError, match=rf"task {store.name}: argument 1 is a {kind}, not a JSON"):
        await store.enqueue(value)
    with pytest.raises(TypeError, match=rf"task {store.name}: argument 3 is a {kind}"):
        await store.enqueue(1, 2, value)
    with pytest.raises(TypeError, match=rf"task {store.name}: argument 'extra' is a {kind}"):
        await store.enqueue(1, extra=value)
    with pytest.raises(TypeError, match=rf"argument 1 is a {kind}"):
        await store.enqueue_many([(1,), (value,)])
    with pytest.raises(TypeError, match=rf"argument 1 is a {kind}"):
        await pgq.enqueue("defined.elsewhere", value)  # no signature to go by: plain JSON too
    assert await count_jobs(db) == 0


async def test_keys_must_be_strings_and_typed_parameters_keep_pydantic_conversion(
    pgq: PgQueue, db
) -> None:
    @pgq.task
    async def store(value) -> None: ...  # type: ignore[no-untyped-def]

    @pgq.task
    async def tag(names: set[str], when: datetime, signup: Signup) -> None: ...

    with pytest.raises(TypeError, match="argument 1 has a int key; JSON keys are strings"):
        await store.enqueue({1: "one"})
    assert await count_jobs(db) == 0
    job = await tag.enqueue({"a"}, datetime(2030, 1, 1, tzinfo=UTC), Signup(email="a@example.com"))
    assert job.args == [["a"], "2030-01-01T00:00:00Z", {"email": "a@example.com"}]


async def test_a_string_holding_nul_is_refused_at_enqueue_on_every_path(
    pgq: PgQueue, database_url: str, db
) -> None:
    """PostgreSQL's jsonb cannot store U+0000: without the check the INSERT fails in the middle of
    the caller's transaction (UntranslatableCharacterError)."""

    @pgq.task
    async def welcome(email: str, profile: dict, signup: Signup | None = None) -> None: ...

    @pgq.task
    async def untyped(value) -> None: ...  # type: ignore[no-untyped-def]

    nul = "ada\x00@example.com"
    name = welcome.name
    with pytest.raises(ValueError, match=rf"task {name}: argument 1 holds the character U\+0000"):
        await welcome.enqueue(nul, {})
    with pytest.raises(ValueError, match=rf"task {name}: argument 'email' holds the character"):
        await welcome.enqueue(email=nul, profile={})
    with pytest.raises(ValueError, match=rf"task {name}: argument 2 holds the character"):
        await welcome.enqueue("a", {"nested": [nul]})
    with pytest.raises(ValueError, match=rf"task {name}: argument 2 holds the character"):
        await welcome.enqueue("a", {nul: 1})
    with pytest.raises(ValueError, match=rf"task {name}: argument 'signup' holds the character"):
        await welcome.enqueue("a", {}, signup=Signup(email=nul))
    with pytest.raises(ValueError, match=rf"task {untyped.name}: argument 1 holds the character"):
        await untyped.using(db).enqueue(nul)
    with pytest.raises(ValueError, match=r"argument 1 holds the character U\+0000"):
        await welcome.using(db).enqueue_many([("a", {}), (nul, {})])

    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine) as session, session.begin():
            with pytest.raises(ValueError, match="argument 1 holds the character U\\+0000"):
                await welcome.using(session).enqueue(nul, {})
            await welcome.using(session).enqueue("fine@example.com", {})  # the transaction lives
    finally:
        await engine.dispose()
    sync_engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with Session(sync_engine) as session, session.begin():
            with pytest.raises(ValueError, match="argument 1 holds the character U\\+0000"):
                welcome.using(session).enqueue_sync(nul, {})
    finally:
        sync_engine.dispose()
    assert await db.fetchval("SELECT array_agg(args->>0) FROM pgqueue.jobs") == ["fine@example.com"]
