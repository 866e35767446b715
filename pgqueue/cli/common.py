"""What every operator command shares: ``--dsn``/``--schema``, argument types, exit codes, and
running a command against an open ``PgQueue`` with errors a person can act on.

Exit codes: 0 done; 1 a job named on the command line does not exist; 2 bad usage (argparse's
own code, also for a bad DSN or filter); 3 the database cannot be used (unreachable, refused the
login, or pgqueue's schema is missing or old: the message says which command to run).
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import DatabaseUnavailable, SchemaError
from ..queue import PgQueue
from .serve import fail, run_async

EXIT_OK = 0
EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3

EXIT_CODES = """\
exit status: 0 done, 1 a job given does not exist, 2 bad usage, 3 the database cannot be used
(unreachable, or pgqueue's schema missing: the message says what to run)."""

Command = Callable[[PgQueue, argparse.Namespace], Awaitable[int]]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("database")
    group.add_argument("--dsn", metavar="URL",
                       help="postgresql:// URL of the database (default: PGQUEUE_DSN)")
    group.add_argument("--schema", metavar="NAME",
                       help="pgqueue's schema (default: PGQUEUE_SCHEMA or 'pgqueue')")


def command_parser(commands: Any, name: str, *, help: str, description: str,
                   examples: str, run: Command) -> argparse.ArgumentParser:
    """A subcommand with its description, examples and the exit codes, taking ``--dsn`` and
    ``--schema``, that runs ``run`` against an open ``PgQueue``."""
    paragraphs = [textwrap.fill(p, 96) for p in description.split("\n\n")]
    parser = commands.add_parser(
        name, help=help, description="\n\n".join(paragraphs),
        epilog=f"examples:\n{examples}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_arguments(parser)
    parser.set_defaults(run=lambda args: run_command(args, run))
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def run_command(args: argparse.Namespace, command: Command) -> int:
    async def session() -> int:
        # Small pool: a command makes a few calls, one at a time.
        pgq = PgQueue(dsn=args.dsn, schema=args.schema, pool_min_size=1, pool_max_size=2)
        async with pgq:
            return await command(pgq, args)

    try:
        return int(run_async(session()))
    except DatabaseUnavailable as exc:
        return fail(f"{exc}. Is the server running, and is --dsn (or PGQUEUE_DSN) right?",
                    EXIT_DATABASE)
    except SchemaError as exc:
        return fail(str(exc), EXIT_DATABASE)
    except ValueError as exc:  # ConfigurationError included: a bad DSN, schema name or filter
        return fail(str(exc), EXIT_USAGE)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"

