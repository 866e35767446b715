"""DSNs as hosting providers hand them out (``?sslmode=require&connect_timeout=10``) work at every
entry point: the pool, dedicated connections, listeners, and the migrations, whether run through the
Python API, ``python -m pgqueue migrate`` or ``alembic upgrade head``. Parameters asyncpg cannot
honour fail with a ConfigurationError that names them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from pgqueue import ConfigurationError, DatabaseUnavailable, PgQueue
from pgqueue.database import DedicatedConnection, connect
from pgqueue.dsn import describe, parse
from pgqueue.migrate import SCHEMA_REVISION, upgrade

from .helpers import ROOT

# What cloud consoles put in their connection strings, with values this server can serve.
PROVIDER_PARAMS = "sslmode=prefer&application_name=x&connect_timeout=5&channel_binding=prefer"
# Any of these alone made asyncpg (through SQLAlchemy) or the server refuse the connection before.
OWN_APP_NAME = "application_name=from_dsn&connect_timeout=5&options=-c%20search_path%3Dfoo"

SELF = "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"


def _with(dsn: str, params: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{params}"


async def _revision(dsn: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT version_num FROM pgqueue.alembic_version")
    finally:
        await conn.close()


async def _server_has_ssl(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SHOW ssl") == "on"
    finally:
        await conn.close()


@pytest.fixture
async def server_ssl(server_dsn: str) -> bool:
    return await _server_has_ssl(server_dsn)


# -- migrations --------------------------------------------------------------------------------


async def test_upgrade_takes_a_providers_dsn(empty_database_url: str) -> None:
    await asyncio.to_thread(upgrade, _with(empty_database_url, PROVIDER_PARAMS), "pgqueue")
    assert await _revision(empty_database_url) == SCHEMA_REVISION


def test_migrate_command_takes_a_providers_dsn(empty_database_url: str, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue", "migrate",
         "--dsn", _with(empty_database_url, PROVIDER_PARAMS)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert asyncio.run(_revision(empty_database_url)) == SCHEMA_REVISION


def test_alembic_cli_takes_a_providers_dsn(empty_database_url: str) -> None:
    env = {**os.environ, "PGQUEUE_DSN": _with(empty_database_url, PROVIDER_PARAMS),
           "PGQUEUE_SCHEMA": "pgqueue"}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert asyncio.run(_revision(empty_database_url)) == SCHEMA_REVISION


def test_migrate_command_names_a_parameter_it_cannot_honour(
    empty_database_url: str, tmp_path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue", "migrate", "--dsn",
         _with(empty_database_url, "sslmode=prefer&channel_binding=require")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "channel_binding=require" in done.stderr
    assert "Traceback" not in done.stderr


# -- the queue's own connections ----------------------------------------------------------------


async def test_the_pool_takes_a_providers_dsn_and_its_application_name(database_url: str) -> None:
    async with PgQueue(dsn=_with(database_url, PROVIDER_PARAMS)) as pgq:
        async with pgq.acquire() as conn:
            assert await conn.fetchval(SELF) == "x"


async def test_single_and_dedicated_connections_take_the_dsn_settings(database_url: str) -> None:
    """Listeners open connections with ``connect``, the worker's hot paths with
    ``DedicatedConnection``, whose own plan settings still win over the DSN's."""
    dsn = _with(database_url, OWN_APP_NAME + "&plan_cache_mode=force_custom_plan")
    conn = await connect(dsn)
    try:
        assert await conn.fetchval(SELF) == "from_dsn"
        assert await conn.fetchval("SHOW search_path") == "foo"
    finally:
        await conn.close()
    dedicated = DedicatedConnection(dsn, plan_cache_mode="force_generic_plan")
    try:
        [row] = await dedicated.fetch(
            f"SELECT ({SELF}) AS name, current_setting('plan_cache_mode') AS plans"
        )
    finally:
        await dedicated.close()
    assert (row["name"], row["plans"]) == ("from_dsn", "force_generic_plan")


async def test_a_parameter_that_would_weaken_the_connection_is_refused(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"channel_binding=require.*asyncpg"):
        await PgQueue(dsn=_with(database_url, "channel_binding=require")).open()
    with pytest.raises(ConfigurationError, match=r"gssencmode=require"):
        await connect(_with(database_url, "gssencmode=require"))


async def test_a_misspelt_parameter_is_named(database_url: str) -> None:
    """Names asyncpg does not know go to the server as settings; its refusal names the culprit."""
    with pytest.raises(ConfigurationError, match=r'"sslmdoe".*fix or remove it'):
        await PgQueue(dsn=_with(database_url, "sslmdoe=require")).open()


async def test_sslmode_require_without_ssl_on_the_server_is_refused(
    database_url: str, server_ssl: bool
) -> None:
    if server_ssl:
        pytest.skip("this server speaks SSL; see the test below")
    with pytest.raises(DatabaseUnavailable, match="SSL"):
        await asyncio.to_thread(upgrade, _with(database_url, "sslmode=require"), "pgqueue")
    with pytest.raises(DatabaseUnavailable, match="SSL"):
        await PgQueue(dsn=_with(database_url, "sslmode=require")).open()


async def test_sslmode_require_encrypts_every_connection(
    database_url: str, server_ssl: bool
) -> None:
    if not server_ssl:
        pytest.skip("this server has ssl = off")
    dsn = _with(database_url, "sslmode=require")
    await asyncio.to_thread(upgrade, dsn, "pgqueue")
    async with PgQueue(dsn=dsn) as pgq:
        async with pgq.acquire() as conn:
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


# -- parsing ------------------------------------------------------------------------------------


def test_parse_keeps_what_asyncpg_reads_and_takes_out_the_rest() -> None:
    args = parse(
        "postgresql://u:p%40ss@db.example.com/app?sslmode=verify-full&connect_timeout=7"
        "&target_session_attrs=read-write&fallback_application_name=fb&statement_timeout=5s"
    )
    assert args.dsn == (
        "postgresql://u:p%40ss@db.example.com/app"
        "?sslmode=verify-full&target_session_attrs=read-write"
    )
    assert args.timeout == 7.0
    assert args.server_settings == {"statement_timeout": "5s", "application_name": "fb"}


def test_options_become_settings_and_an_explicit_parameter_wins() -> None:
    args = parse(
        "postgresql://h/db?options=-c%20search_path%3Da,b%20--lock-timeout%3D1s"
        "%20-capplication_name%3Do%20endpoint%3Dep\\%20x"
        "&application_name=explicit&fallback_application_name=fb"
    )
    assert args.server_settings == {
        "search_path": "a,b", "lock_timeout": "1s", "application_name": "explicit",
        "options": "endpoint=ep\\ x",
    }


@pytest.mark.parametrize("params", [
    "channel_binding=prefer", "gssencmode=disable", "sslsni=1", "keepalives=0", "sslcompression=0",
    "load_balance_hosts=disable",
])
def test_harmless_libpq_parameters_are_dropped(params: str) -> None:
    assert parse(f"postgresql://h/db?{params}").dsn == "postgresql://h/db"


@pytest.mark.parametrize("params", [
    "channel_binding=require", "hostaddr=10.0.0.1", "keepalives_idle=30",
    "require_auth=scram-sha-256", "connect_timeout=0", "connect_timeout=nan", "sslmode",
])
def test_parameters_that_cannot_be_honoured_are_refused(params: str) -> None:
    name = params.partition("=")[0]
    with pytest.raises(ConfigurationError, match=name):
        parse(f"postgresql://h/db?{params}")


def test_describe_reads_a_host_given_as_a_parameter() -> None:
    described = describe("postgresql://u:secret@/app?host=/run/postgresql&port=5433")
    assert described == "/run/postgresql:5433/app"
