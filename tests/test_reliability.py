"""Faults caused for real: killed workers, signals, terminated backends, a restarted server.

Workers here are subprocesses (``python -m pgqueue.worker tests.worker_tasks:pgq``) and every job
records its runs in ``test_runs`` itself, so "nothing lost, nothing run twice" is checked against
what actually ran, not against what pgqueue believes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg
import pytest

from pgqueue import JobStatus, PgQueue

from . import worker_tasks
from .conftest import FAST, RESCUE_QUICKLY
from .helpers import ROOT, eventually, start_worker, stop_worker

# For the worker that rescues the jobs of one killed before: the only one alive, so a short window
# cannot declare a live worker dead.
RESCUES_QUICKLY = {"TEST_RESCUE_AFTER": str(RESCUE_QUICKLY)}


async def _statuses(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT status::text, count(*) FROM pgqueue.jobs GROUP BY 1")
    return {row["status"]: row["count"] for row in rows}


@pytest.mark.slow
async def test_three_worker_processes_run_1500_jobs_once_each(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    # No worker may be declared dead here, however loaded the machine: the long default window.
    workers = [start_worker(database_url, "--concurrency", "20") for _ in range(3)]
    try:
        await worker_tasks.noop.enqueue_many(range(1500))

        async def all_done() -> bool:
            return (await _statuses(tasks_db)).get("succeeded") == 1500

        await eventually(all_done, timeout=180, what="1500 jobs to succeed")
    finally:
        outputs = [stop_worker(proc) for proc in workers]
    assert [proc.returncode for proc in workers] == [0, 0, 0], outputs
    runs = await tasks_db.fetch("SELECT job_id, count(*) AS n FROM test_runs GROUP BY job_id")
    assert len(runs) == 1500
    twice = await tasks_db.fetch(
        "SELECT r.job_id, r.pid, r.attempt, r.at, j.attempts FROM test_runs r "
        "JOIN pgqueue.jobs j ON j.id = r.job_id WHERE r.job_id IN "
        "(SELECT job_id FROM test_runs GROUP BY job_id HAVING count(*) > 1) ORDER BY r.at"
    )
    assert not twice, (twice, [proc.pid for proc in workers], outputs)
    assert await tasks_db.fetchval("SELECT count(DISTINCT pid) FROM test_runs") >= 2
    assert await _statuses(tasks_db) == {"succeeded": 1500}
    assert await tasks_db.fetchval("SELECT max(attempts) FROM pgqueue.jobs") == 1


async def test_sigkilled_worker_job_is_rescued_and_completed_by_another(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    doomed = start_worker(database_url)
    job = await worker_tasks.sleepy.enqueue(3600, only_first_attempt=True)

    async def started() -> bool:
        return await tasks_db.fetchval("SELECT count(*) FROM test_runs WHERE event = 'start'") == 1

    await eventually(started, what="the job to start on the first worker")
    stop_worker(doomed, signal.SIGKILL)
    survivor = start_worker(database_url, env=RESCUES_QUICKLY)
    try:
        done = await producer.wait(job.id, timeout=120)
    finally:
        assert "Traceback" not in stop_worker(survivor)
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 2  # the run lost with the killed worker counts
    runs = await tasks_db.fetch("SELECT pid, event FROM test_runs ORDER BY at")
    assert [(r["pid"], r["event"]) for r in runs] == [
        (doomed.pid, "start"), (survivor.pid, "start"), (survivor.pid, "end")
    ]
    assert await tasks_db.fetchval("SELECT count(*) FROM pgqueue.workers WHERE pid = $1", doomed.pid) == 0


async def test_a_job_that_keeps_killing_its_workers_ends_failed(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    job = await worker_tasks.crash.enqueue()  # max_attempts=2
    killed = 0
    while (await producer.get_job(job.id)).status != JobStatus.FAILED:
        assert killed <= 4, "the job was not failed after its attempts"
        proc = start_worker(database_url, env=RESCUES_QUICKLY)
        try:
            # Each worker either dies running the job or rescues (and fails) it after its
            # predecessor stopped heartbeating.
            done = await asyncio.to_thread(_wait_exit, proc, 15)
        finally:
            stop_worker(proc)
        killed += 1 if done == -signal.SIGKILL else 0
    final = await producer.get_job(job.id)
    assert final.attempts == 2
    assert "stopped heartbeating during attempt 2" in final.error
    assert killed == 2


def _wait_exit(proc: subprocess.Popen[str], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


async def test_sigterm_lets_the_running_job_finish_and_exits_zero(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    proc = start_worker(database_url)
    job = await worker_tasks.sleepy.enqueue(1.0)

    async def started() -> bool:
        return bool(await tasks_db.fetchval("SELECT count(*) FROM test_runs"))

    await eventually(started, what="the job to start")
    output = await asyncio.to_thread(stop_worker, proc, signal.SIGTERM)
    assert proc.returncode == 0, output
    done = await producer.get_job(job.id)
    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 1), output
    assert await tasks_db.fetchval("SELECT count(*) FROM pgqueue.workers") == 0


async def test_sigterm_hands_back_jobs_that_outlive_the_grace_period(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    proc = start_worker(database_url, "--shutdown-grace", "0.5")
    job = await worker_tasks.sleepy.enqueue(3600)

    async def started() -> bool:
        return bool(await tasks_db.fetchval("SELECT count(*) FROM test_runs"))

    await eventually(started, what="the job to start")
    output = await asyncio.to_thread(stop_worker, proc, signal.SIGTERM)
    assert proc.returncode == 0, output
    assert "handed back to the queue" in output
    back = await producer.get_job(job.id)
    assert (back.status, back.attempts, back.worker_id) == (JobStatus.QUEUED, 0, None)


async def test_second_signal_stops_waiting(
    database_url: str, tasks_db: asyncpg.Connection, producer: PgQueue
) -> None:
    proc = start_worker(database_url, "--shutdown-grace", "3600")
    job = await worker_tasks.sleepy.enqueue(3600)

    async def started() -> bool:
        return bool(await tasks_db.fetchval("SELECT count(*) FROM test_runs"))

    await eventually(started, what="the job to start")
    proc.send_signal(signal.SIGTERM)

    async def stopping() -> bool:
        return await tasks_db.fetchval("SELECT count(*) FROM pgqueue.jobs WHERE status = 'running'") == 1

    await eventually(stopping)
    await asyncio.sleep(0.2)  # let the first signal's log line out; the second must still work
    output = await asyncio.to_thread(stop_worker, proc, signal.SIGINT)
    assert proc.returncode == 0, output
    assert (await producer.get_job(job.id)).status == JobStatus.QUEUED


async def test_worker_survives_terminated_backends_while_200_jobs_flow(
    database_url: str, db: asyncpg.Connection
) -> None:
    """In-process worker; every pgqueue connection (pool, listener) is killed repeatedly."""
    pgq = PgQueue(dsn=database_url, **FAST)

    @pgq.task
    async def step(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    async with pgq:
        jobs = await step.enqueue_many(range(200))
        async with pgq.worker(concurrency=8):
            kills = 0
            while (await _statuses(db)).get("succeeded", 0) < 200:
                kills += await db.fetchval(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'pgqueue' "
                    "AND pid <> pg_backend_pid()) t"
                )
                await asyncio.sleep(0.1)
            results = {job.id: (await pgq.get_job(job.id)).result for job in jobs[:5]}
    assert kills > 0
    assert await _statuses(db) == {"succeeded": 200}
    assert list(results.values()) == [0, 1, 2, 3, 4]


def test_unreachable_database_is_one_line_and_a_non_zero_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue.worker", "tests.worker_tasks:pgq"],
        cwd=ROOT, env={**os.environ, "PGQUEUE_DSN": "postgresql://postgres@127.0.0.1:1/nothing"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.nothing_here:pgq", "cannot import module 'tests.nothing_here'"),
        ("tests.worker_tasks:nope", "has no attribute 'nope'"),
        ("tests.worker_tasks", "module:attribute"),
        ("tests.worker_tasks:noop", "is a Task, not a PgQueue"),
    ],
)
def test_bad_import_paths_are_explained(path: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue.worker", path],
        cwd=ROOT, env={**os.environ, "PGQUEUE_DSN": "postgresql://postgres@127.0.0.1:1/x"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
async def test_worker_survives_a_server_restart(tmp_path) -> None:
    """A private embedded server (so other tests keep theirs) is stopped and started mid-flow."""
    embedded = pytest.importorskip("pgqueue.embedded")
    from pgqueue.migrate import upgrade

    server = embedded.EmbeddedPostgres(tmp_path / "pgdata")
    dsn = server.start()
    try:
        await asyncio.to_thread(upgrade, dsn, "pgqueue")
        pgq = PgQueue(dsn=dsn, **FAST)
        gate = asyncio.Event()

        @pgq.task
        async def step(i: int) -> int:
            if i >= 10:
                await gate.wait()
            return i

        async with pgq:
            jobs = await step.enqueue_many(range(40))
            async with pgq.worker(concurrency=4):
                for job in jobs[:10]:
                    await pgq.wait(job.id, timeout=60)
                booted = await _boot_time(dsn)
                await asyncio.to_thread(server.stop)
                await asyncio.to_thread(server.start)
                assert await _boot_time(dsn) > booted  # it really was a restart
                gate.set()
                done = [await pgq.wait(job.id, timeout=120) for job in jobs]
        assert {job.status for job in done} == {JobStatus.SUCCEEDED}
        assert [job.result for job in done] == list(range(40))
    finally:
        server.stop()


@pytest.mark.slow
async def test_a_worker_stopping_while_the_database_is_down_exits_and_its_job_is_rescued(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """The outcome of a job that finished during the outage cannot be written: the worker still
    stops (it does not wait forever), and the job is rescued and run again, not lost."""
    embedded = pytest.importorskip("pgqueue.embedded")
    from pgqueue.migrate import upgrade

    server = embedded.EmbeddedPostgres(tmp_path / "pgdata")
    dsn = server.start()
    try:
        await asyncio.to_thread(upgrade, dsn, "pgqueue")
        pgq = PgQueue(dsn=dsn, **{**FAST, "shutdown_grace": 1.0, "rescue_after": RESCUE_QUICKLY})
        started, gate = asyncio.Event(), asyncio.Event()
        runs = 0

        @pgq.task
        async def gated() -> int:
            nonlocal runs
            runs += 1
            started.set()
            await gate.wait()
            return runs

        async with pgq:
            job = await gated.enqueue()
            async with pgq.worker():
                await started.wait()
                await asyncio.to_thread(server.stop)
                gate.set()
            assert "were not written before stopping" in caplog.text

            await asyncio.to_thread(server.start)
            async with pgq.worker():
                done = await pgq.wait(job.id, timeout=120)
        assert done.status == JobStatus.SUCCEEDED
        assert (runs, done.result, done.attempts) == (2, 2, 2)
    finally:
        server.stop()


async def _boot_time(dsn: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await conn.close()


async def test_the_jobs_table_is_vacuumed_once_dead_rows_pile_up(pgq: PgQueue, db) -> None:
    """Autovacuum is off on some servers (this project's CI among them): the worker's vacuumer
    keeps the claim from wading through dead row versions."""
    from pgqueue.worker.maintenance import Vacuumer

    vacuumer = Vacuumer(pgq.backend)
    await db.execute(
        "INSERT INTO pgqueue.jobs (task) SELECT 't' FROM generate_series(1, $1)",
        2 * vacuumer.min_dead,
    )
    await db.execute("UPDATE pgqueue.jobs SET status = 'succeeded'")  # one dead version each
    await db.execute("SELECT pg_stat_force_next_flush()")

    async def dead_rows() -> int:
        return await db.fetchval(
            "SELECT n_dead_tup FROM pg_stat_user_tables "
            "WHERE schemaname = 'pgqueue' AND relname = 'jobs'"
        )

    await eventually(lambda: _at_least(dead_rows, 2 * vacuumer.min_dead), what="statistics")
    await vacuumer.tick()
    vacuumed = await db.fetchval(
        "SELECT vacuum_count FROM pg_stat_user_tables "
        "WHERE schemaname = 'pgqueue' AND relname = 'jobs'"
    )
    assert vacuumed == 1
    await vacuumer.tick()  # nothing to do now: no second vacuum
    await db.execute("SELECT pg_stat_clear_snapshot()")
    assert await db.fetchval(
        "SELECT vacuum_count FROM pg_stat_user_tables "
        "WHERE schemaname = 'pgqueue' AND relname = 'jobs'"
    ) == 1


async def _at_least(value: object, floor: int) -> bool:
    return await value() >= floor  # type: ignore[operator]
