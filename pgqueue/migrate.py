"""Apply pgqueue's Alembic migrations, and check that a database has the schema this package needs."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .database import connect
from .errors import SchemaError
from .settings import validate_schema_name

SCHEMA_REVISION = "0006"
"""The migration this version of the package expects; a test keeps it equal to the scripts' head."""

MIGRATE_HINT = "run `python -m pgqueue migrate` (or `alembic upgrade head` from the pgqueue repository)"


def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy URL for a ``postgresql://`` DSN, driven by asyncpg like the rest of pgqueue.

    SQLAlchemy hands the URL's query parameters to asyncpg as keyword arguments, so a DSN with
    libpq parameters (``?sslmode=require``) needs ``engine(dsn)`` instead."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn[len(prefix) :]
    return dsn


def engine(dsn: str) -> AsyncEngine:
    """A SQLAlchemy engine whose connections are opened like every other pgqueue connection
    (``database.connect``), so the DSN's libpq parameters mean the same here. One connection per
    use: migrations are short and rare."""
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=lambda: connect(dsn),
        poolclass=pool.NullPool,
    )


def script_location() -> str:
    """The folder of pgqueue's Alembic scripts: ``pgqueue/_alembic`` in an installed wheel
    (pyproject.toml maps the repository's ``alembic/`` there), else the ``alembic/`` folder next to
    the package in a source checkout. An editable install is such a checkout: setuptools' editable
    finder cannot import a mapped folder that has no ``__init__.py``, and ``alembic/`` must not have
    one, or it would shadow the alembic library wherever the repository root is on ``sys.path``."""
    package = files("pgqueue")
    for folder in (package / "_alembic", package / ".." / "alembic"):
        if folder.joinpath("env.py").is_file():
            return str(folder)
    raise FileNotFoundError(
        f"pgqueue's migration scripts are missing from {package}: reinstall pgqueue"
    )


def alembic_config(dsn: str | None = None, schema: str | None = None) -> Config:
    """An Alembic config for pgqueue's own scripts, without any ini file."""
    config = Config()
    config.set_main_option("script_location", script_location())
    config.attributes["pgqueue_dsn"] = dsn
    config.attributes["pgqueue_schema"] = validate_schema_name(schema) if schema else None
    return config


def upgrade(dsn: str | None = None, schema: str | None = None, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (blocking; call it from a thread inside an event loop)."""
    command.upgrade(alembic_config(dsn, schema), revision)


def downgrade(dsn: str | None = None, schema: str | None = None, revision: str = "base") -> None:
    """Take the schema down to ``revision``; ``base`` removes every pgqueue object."""
    command.downgrade(alembic_config(dsn, schema), revision)


def upgrade_on(connection: Connection, schema: str | None = None, revision: str = "head") -> None:
    """Apply pgqueue's migrations on an open SQLAlchemy ``Connection``, e.g. from the ``env.py``
    of the application's own Alembic environment, so one ``alembic upgrade head`` does both."""
    config = alembic_config(None, schema)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def check_revision(schema: str, has_table: bool, version: str | None) -> None:
    """Raise ``SchemaError`` unless the database is at the revision this package expects."""
    if not has_table or version is None:
        raise SchemaError(
            f"pgqueue's schema {schema!r} is missing from this database: {MIGRATE_HINT}."
        )
    if version != SCHEMA_REVISION:
        raise SchemaError(
            f"pgqueue's schema {schema!r} is at revision {version}, this package needs "
            f"{SCHEMA_REVISION}: {MIGRATE_HINT}."
        )
