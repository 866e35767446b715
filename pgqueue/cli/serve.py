"""The commands that run pgqueue: ``worker`` (also ``python -m pgqueue.worker``) and ``migrate``.

Errors a user can fix (no database, no schema, a wrong import path) end the command with one
paragraph saying what to do and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Any

from ..errors import ConfigurationError, DatabaseUnavailable, SchemaError

EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2

WORKER_DESCRIPTION = """\
Run a pgqueue worker for the PgQueue object at an import path.

The worker claims jobs from PostgreSQL (FOR UPDATE SKIP LOCKED), is woken by LISTEN/NOTIFY when jobs
are committed, and runs up to --concurrency of them at once: async tasks on the event loop, plain
functions in threads. Run as many workers as you like, on as many machines, against one database.

SIGTERM or Ctrl-C stops claiming and lets running jobs finish within the grace period
(PGQUEUE_SHUTDOWN_GRACE, default 30 s); a second signal stops waiting. The database comes from the
PgQueue's settings (PGQUEUE_DSN)."""

WORKER_EPILOG = """\
examples:
  python -m pgqueue.worker myapp.tasks:pgq
  python -m pgqueue.worker myapp.tasks:pgq --queue emails --queue default --concurrency 50
  python -m pgqueue.worker myapp.tasks:pgq --metrics-port 9100
  PGQUEUE_DSN=postgresql://app@db/app python -m pgqueue.worker myapp.tasks:pgq --burst"""


def load_queue(path: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable, as with uvicorn)."""
    from ..queue import PgQueue

    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"{path!r} is not an import path of the form module:attribute, e.g. myapp.tasks:pgq"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import module {module_name!r} (from {path!r}): run the worker from the "
                "directory that contains your package, or install it"
            ) from None
        raise
    try:
        obj = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigurationError(
            f"module {module_name!r} has no attribute {attribute!r} (from {path!r})"
        ) from None
    if not isinstance(obj, PgQueue):
        raise ConfigurationError(f"{path!r} is a {type(obj).__name__}, not a PgQueue")
    return obj


def _worker_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=WORKER_DESCRIPTION,
        epilog=WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_worker_arguments(parser)
    return parser


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", metavar="MODULE:ATTR", help="where the PgQueue is, e.g. myapp.tasks:pgq")
    parser.add_argument("-q", "--queue", dest="queues", action="append", metavar="NAME",
                        help="serve this queue (repeat for several); default: every queue")
    parser.add_argument("-c", "--concurrency", type=int, default=10, metavar="N",
                        help="jobs run at once by this worker (default: 10)")
    parser.add_argument("--burst", action="store_true",
                        help="exit once there is nothing left to claim")
    parser.add_argument("--shutdown-grace", type=float, metavar="SECONDS",
                        help="how long running jobs may finish after SIGTERM "
                             "(default: PGQUEUE_SHUTDOWN_GRACE or 30)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: "
                             "PGQUEUE_METRICS_PORT, else none; HOST: PGQUEUE_METRICS_HOST, "
                             "default 0.0.0.0); needs pip install 'pgqueue[metrics]'")
    parser.add_argument("--log-level", default=os.environ.get("PGQUEUE_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default: INFO, or PGQUEUE_LOG_LEVEL)")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def fail(message: str, code: int) -> int:
    """Say what went wrong in one line on stderr; return the exit code."""
    print(f"pgqueue: {message}", file=sys.stderr)
    return code


def run_async(main: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _serve(args: argparse.Namespace) -> str | None:
    """Run the worker; return why it stopped by itself, if it did."""
    # Signal handlers go in before the user's module is imported, so a SIGTERM that arrives while
    # the worker is still starting still means "stop gracefully" (Worker.stop works before run).
    pending: list[int] = []
    worker: Any = None

    def on_signal() -> None:
        if worker is None:
            pending.append(1)
        else:
            worker.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    pgq = load_queue(args.app)
    worker = pgq.worker(queues=args.queues, concurrency=args.concurrency, burst=args.burst,
                        shutdown_grace=args.shutdown_grace, metrics_port=args.metrics_port)
    for _ in pending:
        worker.stop()
    await worker.run()
    return worker.gave_up


def run_worker(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    try:
        gave_up = run_async(_serve(args))
    except DatabaseUnavailable as exc:
        return fail(f"{exc}. Is the server running, and is PGQUEUE_DSN right?", EXIT_UNAVAILABLE)
    except SchemaError as exc:
        return fail(str(exc), EXIT_UNAVAILABLE)
    except ConfigurationError as exc:
        return fail(str(exc), EXIT_USAGE)
    if gave_up is not None:
        return fail(f"the worker stopped by itself: {gave_up}", EXIT_UNAVAILABLE)
    return 0


def worker_main(argv: list[str] | None = None) -> int:
    return run_worker(_worker_parser("python -m pgqueue.worker").parse_args(argv))


def run_migrate(args: argparse.Namespace) -> int:
    from ..database import check_dsn
    from ..migrate import downgrade, upgrade
    from ..settings import load_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = load_settings(dsn=args.dsn, schema=args.schema)
        dsn = check_dsn(settings.dsn)
        if args.downgrade:
            downgrade(dsn, settings.schema, args.downgrade)
        else:
            upgrade(dsn, settings.schema, args.revision)
    except ConfigurationError as exc:
        return fail(str(exc), EXIT_USAGE)
    except (OSError, DatabaseUnavailable) as exc:
        return fail(f"cannot migrate: {exc}", EXIT_UNAVAILABLE)
    print(f"pgqueue: schema {settings.schema!r} is {'at ' + args.downgrade if args.downgrade else 'up to date'}")
    return 0


def add_serve_commands(commands: Any) -> None:
    """Add ``worker`` and ``migrate`` to the top-level subparsers."""
    worker = commands.add_parser("worker", help="run a worker", description=WORKER_DESCRIPTION,
                                 epilog=WORKER_EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_worker_arguments(worker)
    worker.set_defaults(run=run_worker)

    migrate = commands.add_parser(
        "migrate", help="create or upgrade pgqueue's schema",
        description="Apply pgqueue's migrations (the same Alembic scripts `alembic upgrade head` "
                    "runs). pgqueue keeps its own version table inside its schema.",
        epilog="examples:\n  pgqueue migrate --dsn postgresql://app@db/app\n"
               "  pgqueue migrate --downgrade base      # remove everything of pgqueue's",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("--dsn", help="postgresql:// URL (default: PGQUEUE_DSN)")
    migrate.add_argument("--schema", help="schema name (default: PGQUEUE_SCHEMA or 'pgqueue')")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", metavar="REVISION",
                         help="downgrade to REVISION instead; 'base' removes everything")
    migrate.set_defaults(run=run_migrate)
