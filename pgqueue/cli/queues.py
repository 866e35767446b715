"""``pgqueue queues list|pause|resume|limit``, ``pgqueue workers`` and ``pgqueue prune``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..job import JobStatus
from ..limits import QueueInfo
from ..queue import PgQueue
from .common import EXIT_OK, command_parser, plural, positive_int, seconds
from .output import ago, plain, print_json, table


def add_queue_commands(commands: Any) -> None:
    queues = commands.add_parser(
        "queues", help="list queues; pause, resume or limit one",
        description="Queues: their job counts, whether they are paused, their limits.",
        epilog="examples:\n  pgqueue queues list\n  pgqueue queues pause emails\n"
               "  pgqueue queues limit emails --concurrency 5 --rate 100/60",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = queues.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = command_parser(
        actions, "list", help="every queue with its counts per status, paused, limits",
        run=_list,
        description="Every queue that has jobs, is paused or has limits: its jobs per status "
                    "(finished ones until they are pruned), whether it is paused, its limits.",
        examples="  pgqueue queues list\n  pgqueue queues list --json",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array of queues")

    pause = command_parser(
        actions, "pause", help="workers stop claiming from a queue", run=_pause,
        description="Workers stop claiming jobs of this queue; running jobs carry on. A queue "
                    "may be paused before it has any jobs.",
        examples="  pgqueue queues pause emails",
    )
    pause.add_argument("name", metavar="NAME", help="the queue")

    resume = command_parser(
        actions, "resume", help="workers claim from a paused queue again", run=_resume,
        description="Workers claim jobs of this queue again, woken at once.",
        examples="  pgqueue queues resume emails",
    )
    resume.add_argument("name", metavar="NAME", help="the queue")

    limit = command_parser(
        actions, "limit", help="set or remove a queue's limits (all workers together)",
        run=_limit,
        description="Limit a queue across every worker, from the next claim on. Only the limits "
                    "given change; --none removes them all. Without options, show the limits.",
        examples="  pgqueue queues limit emails --concurrency 5\n"
                 "  pgqueue queues limit emails --rate 100/60     # 100 job starts per 60 s\n"
                 "  pgqueue queues limit exports --group-concurrency 1\n"
                 "  pgqueue queues limit emails --none",
    )
    limit.add_argument("name", metavar="NAME", help="the queue")
    limit.add_argument("--concurrency", type=positive_int, metavar="N",
                       help="at most N of its jobs running at once")
    limit.add_argument("--rate", type=rate, metavar="N/SECONDS",
                       help="at most N job starts per SECONDS (N alone: per second)")
    limit.add_argument("--group-concurrency", type=positive_int, metavar="N",
                       help="at most N running jobs per group")
    limit.add_argument("--none", action="store_true", help="remove every limit of the queue")
    limit.add_argument("--json", action="store_true", help="print the limits as a JSON object")
    limit.set_defaults(check=lambda args: _check_limits(limit, args))

    workers = command_parser(
        commands, "workers", help="the workers running now", run=_workers,
        description="Workers that are running (or died less than the rescue window ago), with "
                    "the queues they serve and the jobs they run.",
        examples="  pgqueue workers\n  pgqueue workers --json",
    )
    workers.add_argument("--json", action="store_true", help="print a JSON array of workers")

    prune = command_parser(
        commands, "prune", help="delete finished jobs now", run=_prune,
        description="Delete finished jobs (succeeded, failed, cancelled) past their retention "
                    "(PGQUEUE_RETENTION, PGQUEUE_FAILED_RETENTION), as workers do every minute; "
                    "or every finished job older than --older-than.",
        examples="  pgqueue prune\n  pgqueue prune --older-than 3600",
    )
    prune.add_argument("--older-than", type=seconds, metavar="SECONDS",
                       help="delete every job that finished more than SECONDS ago")


def rate(text: str) -> tuple[int, float]:
    """``"100/60"`` -> (100, 60.0); ``"100"`` -> (100, 1.0)."""
    count, _, period = text.partition("/")
    try:
        n, per = int(count), float(period or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r}; write N/SECONDS, e.g. 100/60 for 100 starts a minute"
        ) from None
    if n < 1 or not per > 0:
        raise argparse.ArgumentTypeError(f"a rate needs N >= 1 and SECONDS > 0, got {text!r}")
    return n, per


def _check_limits(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    given = (args.concurrency, args.rate, args.group_concurrency)
    if args.none and any(value is not None for value in given):
        parser.error("--none removes every limit: give it alone, or give the limits to set")


def requested_limits(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``configure_queue`` that the options ask for."""
    if args.none:
        return {"concurrency": None, "rate": None, "group_concurrency": None}
    changes: dict[str, Any] = {}
    if args.concurrency is not None:
        changes["concurrency"] = args.concurrency
    if args.rate is not None:
        changes["rate"], changes["period"] = args.rate
    if args.group_concurrency is not None:
        changes["group_concurrency"] = args.group_concurrency
    return changes


def describe_limits(limits: Mapping[str, Any]) -> str:
    parts = []
    if limits.get("concurrency") is not None:
        parts.append(f"{limits['concurrency']} at once")
    if limits.get("rate") is not None:
        parts.append(f"{limits['rate']} per {limits.get('period') or 1:g}s")
    if limits.get("group_concurrency") is not None:
        parts.append(f"{limits['group_concurrency']} per group")
    return ", ".join(parts) or "-"


async def _list(pgq: PgQueue, args: argparse.Namespace) -> int:
    queues = await pgq.queues()
    if args.json:
        print_json([{**plain(q), "held_back": q.held_back} for q in queues])
    elif not queues:
        print("no queues yet: a queue appears with its first job")
    else:
        statuses = [str(s) for s in JobStatus]
        rows = [
            (q.name, "paused" if q.paused else "active",
             *(f"{q.counts.get(s, 0):,}" for s in statuses), _limits_cell(q))
            for q in queues
        ]
        headers = ["QUEUE", "STATE", *(s.upper() for s in statuses), "LIMITS"]
        print(table(headers, rows, right=[s.upper() for s in statuses]))
    return EXIT_OK


def _limits_cell(queue: QueueInfo) -> str:
    held = f" ({queue.held_back:,} held back)" if queue.held_back else ""
    return describe_limits(queue.limits) + held


async def _pause(pgq: PgQueue, args: argparse.Namespace) -> int:
    await pgq.pause_queue(args.name)
    print(f"paused queue {args.name!r}: workers claim none of its jobs until it is resumed")
    return EXIT_OK


async def _resume(pgq: PgQueue, args: argparse.Namespace) -> int:
    await pgq.resume_queue(args.name)
    print(f"resumed queue {args.name!r}")
    return EXIT_OK


async def _limit(pgq: PgQueue, args: argparse.Namespace) -> int:
    changes = requested_limits(args)
    limits = (await pgq.configure_queue(args.name, **changes) if changes
              else await pgq.queue_limits(args.name))
    if args.json:
        print_json(limits)
    else:
        print(f"queue {args.name!r} limits: {describe_limits(limits)}")
    return EXIT_OK


async def _workers(pgq: PgQueue, args: argparse.Namespace) -> int:
    workers = await pgq.workers()
    if args.json:
        print_json(workers)
    elif not workers:
        print("no worker is running")
    else:
        rows = [
            (w.id, w.hostname, w.pid, ", ".join(w.queues) if w.queues else "all",
             f"{w.running}/{w.concurrency}", ago(w.started_at), ago(w.heartbeat_at))
            for w in workers
        ]
        print(table(["ID", "HOST", "PID", "QUEUES", "RUNNING", "STARTED", "HEARTBEAT"], rows,
                    right=["ID", "PID", "RUNNING"]))
    return EXIT_OK


async def _prune(pgq: PgQueue, args: argparse.Namespace) -> int:
    n = await pgq.prune(args.older_than)
    print(f"pruned {plural(n, 'finished job')}")
    return EXIT_OK
