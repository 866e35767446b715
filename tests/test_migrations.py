"""Schema management: Alembic up and down, the migrate command, and the refusal to run without it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from pgqueue import PgQueue, SchemaError
from pgqueue.migrate import SCHEMA_REVISION, alembic_config, downgrade, upgrade

from .helpers import ROOT


async def _objects(dsn: str, schema: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1
            UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = $1
            UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = $1 AND t.typtype = 'e'
            """,
            schema,
        )
        return sorted(row["name"] for row in rows)
    finally:
        await conn.close()


async def _public_tables(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [row["tablename"] for row in rows]
    finally:
        await conn.close()


def test_package_revision_is_the_scripts_head() -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head == SCHEMA_REVISION


async def test_upgrade_creates_everything_in_its_schema_and_downgrade_removes_it(
    empty_database_url: str,
) -> None:
    await asyncio.to_thread(upgrade, empty_database_url, "jobs_here")
    objects = await _objects(empty_database_url, "jobs_here")
    assert {"jobs", "job_logs", "workers", "queues", "alembic_version", "job_status"} <= set(objects)
    assert await _public_tables(empty_database_url) == []

    await asyncio.to_thread(downgrade, empty_database_url, "jobs_here")
    remaining = await _objects(empty_database_url, "jobs_here")
    assert remaining == ["alembic_version", "alembic_version_pkc"]


def test_alembic_cli_from_the_repository_root(empty_database_url: str) -> None:
    env = {**os.environ, "PGQUEUE_DSN": empty_database_url, "PGQUEUE_SCHEMA": "pgqueue"}
    for command in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", *command], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert "jobs" in asyncio.run(_objects(empty_database_url, "pgqueue"))


def test_migrate_command_works_outside_the_repository(empty_database_url: str, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue", "migrate", "--dsn", empty_database_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_users_can_keep_their_own_alembic_version_table(empty_database_url: str) -> None:
    """pgqueue's version table lives in its schema, so an app's own public.alembic_version is
    untouched."""
    async def make_app_table() -> None:
        conn = await asyncpg.connect(empty_database_url)
        await conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        await conn.execute("INSERT INTO alembic_version VALUES ('app_rev_1')")
        await conn.close()

    asyncio.run(make_app_table())
    upgrade(empty_database_url, "pgqueue")

    async def versions() -> tuple[str, str]:
        conn = await asyncpg.connect(empty_database_url)
        try:
            return (
                await conn.fetchval("SELECT version_num FROM public.alembic_version"),
                await conn.fetchval("SELECT version_num FROM pgqueue.alembic_version"),
            )
        finally:
            await conn.close()

    assert asyncio.run(versions()) == ("app_rev_1", SCHEMA_REVISION)


async def test_opening_without_the_schema_says_which_command_to_run(empty_database_url: str) -> None:
    with pytest.raises(SchemaError, match="python -m pgqueue migrate"):
        await PgQueue(dsn=empty_database_url).open()


async def test_opening_an_older_schema_says_which_command_to_run(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.execute("UPDATE pgqueue.alembic_version SET version_num = '0000'")
    await conn.close()
    with pytest.raises(SchemaError, match="revision 0000.*python -m pgqueue migrate"):
        await PgQueue(dsn=database_url).open()


def test_worker_cli_exits_non_zero_without_the_schema(empty_database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue.worker", "tests.worker_tasks:pgq"],
        cwd=ROOT, env={**os.environ, "PGQUEUE_DSN": empty_database_url},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "python -m pgqueue migrate" in done.stderr
    assert "Traceback" not in done.stderr


def test_alembic_config_is_what_the_ini_points_at() -> None:
    ini = Config(str(ROOT / "alembic.ini"))
    assert ScriptDirectory.from_config(ini).get_current_head() == SCHEMA_REVISION


def test_migrations_run_from_an_applications_own_alembic_env(empty_database_url: str) -> None:
    """What the README shows: the app's env.py calls ``upgrade_on(connection)``."""
    from sqlalchemy import create_engine, text

    from pgqueue.migrate import upgrade_on

    engine = create_engine(empty_database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE users (id serial PRIMARY KEY)"))  # the app's own
            upgrade_on(connection)
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM pgqueue.alembic_version")).scalar()
    finally:
        engine.dispose()
    assert version == SCHEMA_REVISION
