"""Alembic environment for pgqueue's own migrations.

These scripts live once, here; ``alembic.ini`` points at this folder and the wheel ships it as
``pgqueue._alembic`` (see ``pgqueue.migrate.script_location``). Connections are opened by
``pgqueue.migrate.engine``, so the DSN's libpq parameters mean what they mean everywhere in pgqueue.

The target schema comes from ``config.attributes["pgqueue_schema"]`` (set by ``pgqueue.migrate``)
or else from the settings (``PGQUEUE_SCHEMA``); the DSN likewise from ``config.attributes`` or
``PGQUEUE_DSN``. The version table lives inside that schema, so it never meets the application's own
``alembic_version``.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, text

from pgqueue.migrate import engine
from pgqueue.settings import Settings, validate_schema_name

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
settings = Settings()
schema = validate_schema_name(config.attributes.get("pgqueue_schema") or settings.schema)
config.attributes["pgqueue_schema"] = schema


def _run(connection: Connection) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        version_table="alembic_version",
        version_table_schema=schema,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    dsn = config.attributes.get("pgqueue_dsn") or settings.dsn
    if not dsn:
        raise SystemExit("pgqueue: set PGQUEUE_DSN (a postgresql:// URL) to migrate")
    asyncio.run(_run_async(dsn))


async def _run_async(dsn: str) -> None:
    migrations = engine(dsn)
    try:
        async with migrations.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await migrations.dispose()


if context.is_offline_mode():
    raise SystemExit("pgqueue's migrations run online only: set PGQUEUE_DSN and run upgrade")
run_migrations_online()
