"""``pgqueue`` (and ``python -m pgqueue``): run workers and migrations, and operate the queue.

``serve`` runs things (worker, migrate; ``demo`` lives in ``pgqueue.demo``), ``jobs`` and
``queues`` are the operator's commands over an open ``PgQueue``, ``output`` prints for people
and scripts. ``python -m pgqueue.worker`` is ``worker_main``.
"""

from __future__ import annotations

import argparse

from ..demo import add_demo_parser
from .jobs import add_jobs_commands
from .queues import add_queue_commands
from .serve import add_serve_commands, load_queue, worker_main

DESCRIPTION = """\
pgqueue: a PostgreSQL-native durable job queue.

Run workers and migrations, and look after jobs and queues from a shell. Commands that talk to the
database take --dsn and --schema (default: PGQUEUE_DSN and PGQUEUE_SCHEMA). `pgqueue COMMAND -h`
says more about each."""

EPILOG = """\
examples:
  pgqueue migrate
  pgqueue worker myapp.tasks:pgq --concurrency 20
  pgqueue jobs list --status failed
  pgqueue jobs retry --status failed --queue emails
  pgqueue queues list
  pgqueue queues pause emails"""


def parser() -> argparse.ArgumentParser:
    # prog is set: argparse would print `__main__.py` for `python -m pgqueue`.
    top = argparse.ArgumentParser(
        prog="pgqueue", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_commands(commands)
    add_demo_parser(commands)
    add_jobs_commands(commands)
    add_queue_commands(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "check", None) is not None:
        args.check(args)  # relations between options; exits 2 with a message when they clash
    return int(args.run(args))


__all__ = ["load_queue", "main", "parser", "worker_main"]
