"""``pgqueue jobs list|show|cancel|retry``: look at jobs, and cancel or retry them one by one or
in bulk by filter."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..bulk import DEFAULT_LIMIT
from ..job import RETRYABLE_STATUSES, UNFINISHED_STATUSES, JobStatus
from ..queue import PgQueue
from .common import EXIT_MISSING, EXIT_OK, command_parser, plural, positive_int
from .output import jobs_table, plain, print_json, stamp
from .serve import fail


def _statuses(allowed: frozenset[JobStatus] | None = None) -> list[str]:
    return [str(s) for s in JobStatus if allowed is None or s in allowed]


def add_jobs_commands(commands: Any) -> None:
    jobs = commands.add_parser(
        "jobs", help="list, show, cancel or retry jobs",
        description="Look at jobs, and cancel or retry them: by id, or in bulk by filter.",
        epilog="examples:\n  pgqueue jobs list --status failed\n  pgqueue jobs show 42\n"
               "  pgqueue jobs retry --status failed --queue emails",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = command_parser(
        actions, "list", help="list jobs, newest first", run=_list,
        description="List jobs, newest first, optionally filtered.",
        examples="  pgqueue jobs list\n  pgqueue jobs list --status failed --queue emails\n"
                 "  pgqueue jobs list --task myapp.tasks.send_email --limit 200 --json",
    )
    _add_filters(listing, _statuses())
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N",
                         help="show at most N jobs (default: 50)")
    listing.add_argument("--json", action="store_true", help="print a JSON array of jobs")

    show = command_parser(
        actions, "show", help="one job in full, with its log lines", run=_show,
        description="Show one job: every field, its error with the traceback, its log lines.",
        examples="  pgqueue jobs show 42\n  pgqueue jobs show 42 --json",
    )
    show.add_argument("id", type=positive_int, metavar="ID", help="the job's id")
    show.add_argument("--json", action="store_true",
                      help="print the job as a JSON object (log lines under \"logs\")")

    cancel = command_parser(
        actions, "cancel", help="cancel jobs by id, or every unfinished job matching a filter",
        run=_cancel,
        description="Cancel jobs that have not finished. Queued and scheduled jobs are cancelled "
                    "at once; a running job is stopped on its worker within a second.\n\nGive "
                    "job ids, or filters to cancel every matching job in one statement (at most "
                    "--limit of them; the count says how many).",
        examples="  pgqueue jobs cancel 42 43\n  pgqueue jobs cancel --queue emails\n"
                 "  pgqueue jobs cancel --status scheduled --task myapp.tasks.remind",
    )
    _add_ids_and_filters(cancel, _statuses(UNFINISHED_STATUSES), "all three")

    retry = command_parser(
        actions, "retry", help="retry jobs by id, or every failed job matching a filter",
        run=_retry,
        description="Put failed or cancelled jobs back in their queue, to run now with at least "
                    "one more attempt.\n\nGive job ids, or filters to retry every matching job "
                    "in one statement (at most --limit of them; the count says how many).",
        examples="  pgqueue jobs retry 42\n  pgqueue jobs retry --status failed\n"
                 "  pgqueue jobs retry --status failed --queue emails --task myapp.tasks.send",
    )
    _add_ids_and_filters(retry, _statuses(RETRYABLE_STATUSES), "failed")


def _add_filters(parser: argparse.ArgumentParser, statuses: list[str],
                 status_default: str | None = None) -> None:
    group = parser.add_argument_group("filters")
    default = f" (default: {status_default})" if status_default else ""
    group.add_argument("--status", choices=statuses, metavar="STATUS",
                       help=f"only jobs in this status: {', '.join(statuses)}{default}")
    group.add_argument("--queue", metavar="Q", help="only jobs of this queue")
    group.add_argument("--task", metavar="T", help="only jobs of this task (its full name)")


def _add_ids_and_filters(parser: argparse.ArgumentParser, statuses: list[str],
                         status_default: str) -> None:
    parser.add_argument("ids", nargs="*", type=positive_int, metavar="ID",
                        help="the jobs' ids (or use filters instead)")
    _add_filters(parser, statuses, status_default)
    parser.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                        help=f"bulk: change at most N jobs (default: {DEFAULT_LIMIT:,})")
    parser.set_defaults(check=lambda args: _check_ids_or_filters(parser, args))


def _check_ids_or_filters(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    has_filter = any(v is not None for v in (args.status, args.queue, args.task))
    if args.ids and has_filter:
        parser.error("give job ids or filters (--status, --queue, --task), not both")
    if not args.ids and not has_filter:
        parser.error("give job ids, or at least one filter (--status, --queue, --task) to "
                     f"{args.action} matching jobs in bulk")


async def _list(pgq: PgQueue, args: argparse.Namespace) -> int:
    jobs = await pgq.list_jobs(status=args.status, queue=args.queue, task=args.task,
                               limit=args.limit)
    if args.json:
        print_json(jobs)
    elif jobs:
        print(jobs_table(jobs))
    else:
        print("no jobs")
    return EXIT_OK


async def _show(pgq: PgQueue, args: argparse.Namespace) -> int:
    job = await pgq.get_job(args.id)
    if job is None:
        return _missing(args.id)
    logs = await pgq.job_logs(args.id)
    if args.json:
        print_json({**plain(job), "logs": logs})
        return EXIT_OK
    fields = [
        ("id", job.id), ("task", job.task), ("queue", job.queue), ("status", job.status),
        ("attempts", f"{job.attempts} of {job.max_attempts}"), ("priority", job.priority),
        ("args", _json(job.args)), ("kwargs", _json(job.kwargs)),
        ("created", stamp(job.created_at)), ("run at", stamp(job.run_at)),
        ("started", stamp(job.started_at)), ("finished", stamp(job.finished_at)),
        ("progress", "-" if job.progress is None
         else f"{job.progress:g}%" + (f" {job.progress_message}" if job.progress_message else "")),
        ("group", job.group or "-"), ("unique key", job.unique_key or "-"),
        ("worker", job.worker_id or "-"),
        ("result", "-" if job.result is None else _json(job.result)),
    ]
    for name, value in fields:
        print(f"{name + ':':<12}{value}")
    if job.error:
        print("error:")
        print("  " + job.error.rstrip().replace("\n", "\n  "))
    print(f"logs ({len(logs)}):" if logs else "logs: none")
    for line in logs:
        print(f"  {line.at.astimezone().strftime('%H:%M:%S')}  {line.message}")
    return EXIT_OK


async def _cancel(pgq: PgQueue, args: argparse.Namespace) -> int:
    if not args.ids:
        n = await pgq.cancel_jobs(args.status, args.queue, args.task, limit=args.limit)
        return _counted("cancelled", n, args.limit)
    code = EXIT_OK
    for job_id in args.ids:
        if await pgq.cancel(job_id):
            print(f"cancelled job {job_id}")
        elif (job := await pgq.get_job(job_id)) is None:
            code = _missing(job_id)
        else:
            print(f"job {job_id} is already {job.status}: nothing to cancel")
    return code


async def _retry(pgq: PgQueue, args: argparse.Namespace) -> int:
    if not args.ids:
        n = await pgq.retry_jobs(args.status or "failed", args.queue, args.task, limit=args.limit)
        return _counted("retried", n, args.limit)
    code = EXIT_OK
    for job_id in args.ids:
        if await pgq.retry(job_id):
            print(f"retried job {job_id}: queued to run now")
        elif (job := await pgq.get_job(job_id)) is None:
            code = _missing(job_id)
        else:
            print(f"job {job_id} is {job.status}: only failed or cancelled jobs can be retried")
    return code


def _counted(done: str, n: int, limit: int) -> int:
    more = " (the --limit: run it again for the rest)" if n == limit else ""
    print(f"{done} {plural(n, 'job')}{more}")
    return EXIT_OK


def _json(value: object) -> str:
    return json.dumps(plain(value), ensure_ascii=False)


def _missing(job_id: int) -> int:
    return fail(f"no job with id {job_id}", EXIT_MISSING)
