"""Profiler part ``drain``: jobs/s and where the CPU goes, worker side and server side.

Per ``contestant:variant``: this process's CPU per job, its database backends' CPU per job
(sampled from /proc), server transactions per job; for pgqueue also a cProfile of the run.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import time
from typing import Any

import asyncpg

from .contestants import Contestant, load
from .harness import db_dsn, prefill, recreate_database, settle
from .profile_output import by_module, top, us

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """A process's name and the fields after it in /proc/<pid>/stat (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.find("(") + 1 : data.rfind(")")], data[data.rfind(")") + 2 :].split()


def postgres_cpu_s() -> float:
    """CPU seconds of every process named postgres on this machine: utime+stime of the live ones
    plus cutime+cstime (the postmaster's reaped children: backends that exited meanwhile).
    Machine-wide: other sessions' queries count too."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        stat = _stat(pid)
        if stat and stat[0].startswith("postgres"):
            total += sum(int(x) for x in stat[1][11:15])
    return total / TICK


def _proc_cpu(pid: int) -> float | None:
    stat = _stat(pid)
    return None if stat is None else (int(stat[1][11]) + int(stat[1][12])) / TICK


class BackendCpu:
    """CPU seconds used by the server backends of this database (other than our own stats
    connection), sampled every 20 ms from /proc while a run goes on: a backend's last sample
    counts, so backends that exit early are counted up to their last sample."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.last: dict[int, float] = {}
        self.first: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        me = self.conn.get_server_pid()
        pids = [r[0] for r in await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1", me)]
        for pid in pids:
            cpu = _proc_cpu(pid)
            if cpu is not None:
                self.first.setdefault(pid, cpu if self._task is None else 0.0)
                self.last[pid] = cpu

    async def start(self) -> None:
        await self._sample()

        async def loop() -> None:
            while True:
                await asyncio.sleep(0.02)
                await self._sample()

        self._task = asyncio.create_task(loop())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self._sample()
        return sum(v - self.first.get(pid, 0.0) for pid, v in self.last.items())


async def xact_commits(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )



async def _prefilled(base: str, db: str, spec: str, n: int,
                     bulk: int) -> tuple[Contestant, str, int, dict[str, Any]]:
    """A fresh database ``db`` holding ``n`` queued jobs of ``spec`` (contestant:variant), settled;
    returns the contestant, the DSN, the variant's concurrency and its other options."""
    name, variant = spec.split(":", 1)
    c = load(name)
    concurrency, opts = c.variant(variant)
    await recreate_database(base, db)
    dsn = db_dsn(base, db)
    await c.install(dsn, "drain")
    await prefill(c, dsn, n, bulk)
    await settle(dsn)
    return c, dsn, concurrency, opts


async def part_drain(base: str, db: str, spec: str, n: int, bulk: int, n_top: int) -> None:
    """One drain under cProfile, with the CPU of every postgres process on the machine."""
    try:
        c, dsn, concurrency, opts = await _prefilled(base, db, spec, n, bulk)
        stats_conn = await asyncpg.connect(dsn)
        x0 = await xact_commits(stats_conn)
        pg0, cpu0, t0 = postgres_cpu_s(), time.process_time(), time.perf_counter()
        profile = cProfile.Profile()
        profile.enable()
        await c.run_worker(dsn, concurrency, n, lambda i: None, **opts)
        profile.disable()
        wall, cpu, pg = time.perf_counter() - t0, time.process_time() - cpu0, postgres_cpu_s() - pg0
        await asyncio.sleep(0.6)  # stats are flushed by backends at most every 0.5 s
        x1 = await xact_commits(stats_conn)
        await stats_conn.close()
        done = await c.count_done(dsn)
        print(f"\n=== drain {spec}: N={n} (under cProfile, so slower than the harness) ===")
        print(f"  {n / wall:,.0f} jobs/s; this process CPU {us(cpu, n)} ({cpu / wall * 100:.0f}% of "
              f"one core); all postgres CPU {us(pg, n)}; server transactions/job "
              f"{(x1 - x0) / n:.3f}; done={done}")
        by_module(profile, n, f"drain {spec}")
        top(profile, n_top, f"drain {spec}")
    finally:
        await recreate_database(base, db, drop_only=True)


async def part_drain_plain(base: str, db: str, spec: str, n: int, bulk: int) -> None:
    """The same without cProfile: honest CPU split."""
    try:
        c, dsn, concurrency, opts = await _prefilled(base, db, spec, n, bulk)
        stats_conn = await asyncpg.connect(dsn)
        x0 = await xact_commits(stats_conn)
        backends = BackendCpu(stats_conn)
        await backends.start()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await c.run_worker(dsn, concurrency, n, lambda i: None, **opts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        pg = await backends.stop()
        await asyncio.sleep(0.6)
        x1 = await xact_commits(stats_conn)
        await stats_conn.close()
        print(f"  {spec:16s} {n / wall:8,.0f} jobs/s; wall {us(wall, n)}; worker process CPU "
              f"{us(cpu, n)} (incl. the 20 ms sampler); its backends' CPU {us(pg, n)}; "
              f"server xacts/job {(x1 - x0) / n:.3f}")
    finally:
        await recreate_database(base, db, drop_only=True)
