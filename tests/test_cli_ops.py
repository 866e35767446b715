"""The operator's CLI, run as a user runs it (``python -m pgqueue ...`` in a subprocess) against a
real database: output, ``--json``, counts of bulk forms, exit codes, help."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from pgqueue import JobContext, JobStatus, PgQueue
from pgqueue.testing import drain

from .helpers import ROOT


def cli(*args: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    if dsn is not None:
        env["PGQUEUE_DSN"] = dsn
    return subprocess.run([sys.executable, "-m", "pgqueue", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120, check=False)


async def run(*args: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args, dsn=dsn)


@pytest.fixture
async def jobs(pgq: PgQueue) -> dict[str, int]:
    """A failed job in "mail", a succeeded one with log lines, a queued and a scheduled one."""

    @pgq.task(queue="mail", max_attempts=1)
    async def bounce(address: str) -> None:
        raise RuntimeError(f"550 no such user: {address}")

    @pgq.task(queue="mail")
    async def send(address: str, ctx: JobContext) -> dict:
        await ctx.log(f"sending to {address}")
        return {"sent": address}

    failed = await bounce.enqueue("a@example.invalid")
    succeeded = await send.enqueue("b@example.com")
    await drain(pgq)
    queued = await send.using(queue="sms").enqueue("c")
    scheduled = await send.using(delay=3600).enqueue("d")
    return {"failed": failed.id, "succeeded": succeeded.id, "queued": queued.id,
            "scheduled": scheduled.id, "bounce": bounce.name, "send": send.name}


async def test_jobs_list_prints_a_table_and_filters(database_url: str, jobs: dict) -> None:
    out = await run("jobs", "list", dsn=database_url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "QUEUE", "TASK", "ATTEMPTS", "CREATED", "LAST",
                                "CHANGE"]
    assert [line.split()[0] for line in lines[1:]] == [str(jobs[k]) for k in
                                                       ("scheduled", "queued", "succeeded", "failed")]
    assert "due in 59m" in lines[1] and "finished" in lines[3]
    # Aligned: every row's status column starts where the header's does.
    column = lines[0].index("STATUS")
    assert {line[column - 2: column] for line in lines[1:]} == {"  "}

    out = await run("jobs", "list", "--status", "failed", "--queue", "mail", "--dsn", database_url)
    assert [line.split()[:3] for line in out.stdout.splitlines()[1:]] == [
        [str(jobs["failed"]), "failed", "mail"]
    ]
    out = await run("jobs", "list", "--task", "nope", dsn=database_url)
    assert (out.returncode, out.stdout) == (0, "no jobs\n")


async def test_json_output_is_one_document(database_url: str, jobs: dict) -> None:
    out = await run("jobs", "list", "--limit", "2", "--json", dsn=database_url)
    listed = json.loads(out.stdout)
    assert [job["id"] for job in listed] == [jobs["scheduled"], jobs["queued"]]
    assert listed[0]["status"] == "scheduled" and listed[0]["run_at"].startswith("20")

    out = await run("jobs", "show", str(jobs["succeeded"]), "--json", dsn=database_url)
    shown = json.loads(out.stdout)
    assert shown["result"] == {"sent": "b@example.com"}
    assert [line["message"] for line in shown["logs"]] == ["sending to b@example.com"]

    out = await run("queues", "list", "--json", dsn=database_url)
    queues = {q["name"]: q for q in json.loads(out.stdout)}
    assert queues["mail"]["counts"] == {"failed": 1, "scheduled": 1, "succeeded": 1}
    assert queues["sms"]["paused"] is False

    out = await run("workers", "--json", dsn=database_url)
    assert json.loads(out.stdout) == []


async def test_jobs_show_prints_the_error_and_logs(database_url: str, jobs: dict) -> None:
    out = await run("jobs", "show", str(jobs["failed"]), dsn=database_url)
    assert out.returncode == 0
    assert "status:     failed" in out.stdout
    assert "attempts:   1 of 1" in out.stdout
    assert "550 no such user: a@example.invalid" in out.stdout
    assert "logs: none" in out.stdout
    out = await run("jobs", "show", str(jobs["succeeded"]), dsn=database_url)
    assert "sending to b@example.com" in out.stdout and "logs (1):" in out.stdout


async def test_a_missing_job_exits_1(database_url: str, jobs: dict) -> None:
    for args in (["jobs", "show", "999999"], ["jobs", "cancel", "999999"],
                 ["jobs", "retry", str(jobs["failed"]), "999999"]):
        out = await run(*args, dsn=database_url)
        assert out.returncode == 1, args
        assert "no job with id 999999" in out.stderr
    # The job that does exist was retried all the same.
    assert "retried job" in out.stdout


async def test_cancel_and_retry_by_id(pgq: PgQueue, database_url: str, jobs: dict) -> None:
    out = await run("jobs", "cancel", str(jobs["queued"]), str(jobs["succeeded"]), dsn=database_url)
    assert out.returncode == 0
    assert out.stdout.splitlines() == [
        f"cancelled job {jobs['queued']}",
        f"job {jobs['succeeded']} is already succeeded: nothing to cancel",
    ]
    assert (await pgq.get_job(jobs["queued"])).status == JobStatus.CANCELLED
    out = await run("jobs", "retry", str(jobs["queued"]), dsn=database_url)
    assert out.stdout == f"retried job {jobs['queued']}: queued to run now\n"
    assert (await pgq.get_job(jobs["queued"])).status == JobStatus.QUEUED


async def test_bulk_forms_print_how_many_they_changed(
    pgq: PgQueue, database_url: str, jobs: dict
) -> None:
    out = await run("jobs", "retry", "--status", "failed", "--queue", "mail", dsn=database_url)
    assert (out.returncode, out.stdout) == (0, "retried 1 job\n")
    assert (await pgq.get_job(jobs["failed"])).status == JobStatus.QUEUED

    out = await run("jobs", "cancel", "--queue", "mail", "--limit", "1", dsn=database_url)
    assert out.stdout == "cancelled 1 job (the --limit: run it again for the rest)\n"
    out = await run("jobs", "cancel", "--queue", "mail", dsn=database_url)
    assert out.stdout == "cancelled 1 job\n"
    out = await run("jobs", "cancel", "--task", jobs["send"], "--status", "queued",
                    dsn=database_url)
    assert out.stdout == "cancelled 1 job\n"  # the one in "sms"
    assert (await pgq.stats())["mail"] == {"cancelled": 2, "succeeded": 1}


async def test_queues_pause_resume_and_list(pgq: PgQueue, database_url: str, jobs: dict) -> None:
    out = await run("queues", "pause", "sms", dsn=database_url)
    assert out.returncode == 0 and "paused queue 'sms'" in out.stdout
    assert await pgq.paused_queues() == ["sms"]
    out = await run("queues", "list", dsn=database_url)
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["QUEUE", "STATE", "WAITING", "QUEUED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["sms"][:4] == ["sms", "paused", "0", "1"]
    assert rows["mail"][1] == "active"
    out = await run("queues", "resume", "sms", dsn=database_url)
    assert out.returncode == 0 and await pgq.paused_queues() == []


async def test_queues_limit_sets_shows_and_removes_limits(pgq: PgQueue, database_url: str) -> None:
    out = await run("queues", "limit", "mail", "--concurrency", "5", "--rate", "100/60",
                    dsn=database_url)
    assert (out.returncode, out.stdout) == (0, "queue 'mail' limits: 5 at once, 100 per 60s\n")
    assert await pgq.queue_limits("mail") == {
        "concurrency": 5, "rate": 100, "period": 60.0, "group_concurrency": None}

    out = await run("queues", "limit", "mail", "--group-concurrency", "1", "--rate", "7",
                    "--json", dsn=database_url)
    assert json.loads(out.stdout) == {
        "concurrency": 5, "rate": 7, "period": 1.0, "group_concurrency": 1}

    out = await run("queues", "list", dsn=database_url)  # a limited queue with no jobs is listed
    [row] = [line for line in out.stdout.splitlines() if line.startswith("mail ")]
    assert row.endswith("5 at once, 7 per 1s, 1 per group")
    out = await run("queues", "list", "--json", dsn=database_url)
    assert json.loads(out.stdout)[0]["limits"]["group_concurrency"] == 1

    out = await run("queues", "limit", "mail", "--none", dsn=database_url)
    assert out.stdout == "queue 'mail' limits: -\n"
    out = await run("queues", "limit", "mail", "--json", dsn=database_url)  # shows, changes none
    assert json.loads(out.stdout) == {
        "concurrency": None, "rate": None, "period": None, "group_concurrency": None}


async def test_workers_lists_a_running_worker(pgq: PgQueue, database_url: str) -> None:
    async with pgq.worker(queues=["mail"], concurrency=3):
        out = await run("workers", dsn=database_url)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "HOST", "PID", "QUEUES", "RUNNING", "STARTED", "HEARTBEAT"]
    assert lines[1].split()[2:5] == [str(os.getpid()), "mail", "0/3"]


async def test_prune_deletes_finished_jobs_older_than_asked(
    pgq: PgQueue, database_url: str, jobs: dict, db
) -> None:
    out = await run("prune", dsn=database_url)
    assert out.stdout == "pruned 0 finished jobs\n"  # all within the default retention
    await db.execute("UPDATE pgqueue.jobs SET finished_at = now() - interval '2 hours' "
                     "WHERE finished_at IS NOT NULL")
    out = await run("prune", "--older-than", "3600", dsn=database_url)
    assert out.stdout == "pruned 2 finished jobs\n"
    assert await pgq.get_job(jobs["failed"]) is None
    assert (await pgq.stats())["mail"] == {"scheduled": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "cancel"], "give job ids, or at least one filter"),
        (["jobs", "retry", "1", "--queue", "q"], "not both"),
        (["jobs", "cancel", "--status", "failed"], "invalid choice"),
        (["jobs", "show", "abc"], "not a whole number"),
        (["jobs", "list", "--limit", "0"], "must be at least 1"),
        (["queues", "limit", "q", "--rate", "fast"], "write N/SECONDS"),
        (["queues", "limit", "q", "--none", "--concurrency", "2"], "give it alone"),
        (["jobs", "list", "--dsn", "mysql://x/y"], "must be a postgresql:// URL"),
        (["jobs", "list", "--schema", "no way"], "schema"),
    ],
)
def test_bad_usage_exits_2_with_a_message(args: list[str], message: str) -> None:
    out = cli(*args, dsn="postgresql://postgres@127.0.0.1:1/nowhere")
    assert out.returncode == 2, out
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unreachable_database_is_one_line_naming_it() -> None:
    out = cli("queues", "list", "--dsn", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert out.returncode == 3
    assert out.stderr.startswith("pgqueue: cannot reach PostgreSQL at 127.0.0.1:1")
    assert len(out.stderr.splitlines()) == 1 and "PGQUEUE_DSN" in out.stderr


def test_no_dsn_at_all_says_what_to_set() -> None:
    out = cli("jobs", "list")
    assert out.returncode == 2 and "set PGQUEUE_DSN" in out.stderr


async def test_a_database_without_the_schema_says_to_migrate(empty_database_url: str) -> None:
    out = await run("jobs", "list", dsn=empty_database_url)
    assert out.returncode == 3
    assert "python -m pgqueue migrate" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [[], ["jobs"], ["jobs", "cancel"], ["queues", "limit"],
                                  ["workers"], ["prune"]])
def test_help_at_every_level_names_pgqueue_and_shows_examples(args: list[str]) -> None:
    out = cli(*args, "--help")
    assert out.returncode == 0
    assert out.stdout.startswith(f"usage: {' '.join(['pgqueue', *args])}")
    assert "examples:\n  pgqueue" in out.stdout


def test_the_console_script_calls_itself_pgqueue() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "pgqueue")
    if not os.path.exists(script):
        pytest.skip("the pgqueue console script is not installed in this environment")
    out = subprocess.run([script, "jobs", "list", "--help"], capture_output=True, text=True,
                         check=False)
    assert out.stdout.startswith("usage: pgqueue jobs list")


def test_python_m_pgqueue_worker_still_works() -> None:
    out = subprocess.run([sys.executable, "-m", "pgqueue.worker", "--help"], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert out.returncode == 0 and "MODULE:ATTR" in out.stdout
