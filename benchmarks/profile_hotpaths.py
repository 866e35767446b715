"""Where does pgqueue's time go? Enqueue and drain hot paths, next to raw asyncpg.

    python benchmarks/profile_hotpaths.py                       # all parts, N=2000
    python benchmarks/profile_hotpaths.py --parts enqueue_one --n 3000 --top 25
    python benchmarks/profile_hotpaths.py --parts drain --drain pgqueue:c32,raw:batch100

Each part runs in a fresh database ``<prefix>prof`` (dropped afterwards), in this process.

* enqueue_one / enqueue_many: µs per job of
    - the public API (``noop.using(conn).enqueue(i)`` / ``.enqueue_many(ids)``),
    - pgqueue's own INSERT statement sent directly with ready-made parameters (= SQL + round trip),
    - raw asyncpg's INSERT (contestants/raw.py) and ``SELECT 1`` (a bare round trip);
  API minus statement = pgqueue's Python overhead per job. Then the top functions of a cProfile
  of the API loop.
* drain: one worker in this process per ``contestant:variant``: jobs/s, this process's CPU per
  job, the CPU of all ``postgres`` processes per job (machine-wide: other load shows up), server
  transactions per job (pg_stat_database), and the top functions of a cProfile of the run.
* sql: per-statement server time of a claim of 100 and a completion of 100 (pgqueue's statements
  vs raw's), measured over a backlog, plus the round-trip floor.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from typing import Any

import asyncpg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import DEFAULT_DSN_BASE, db_dsn, recreate_database
from contestants import load
from contestants.pgqueue import SCHEMA, _make_queue
from contestants.raw import CLAIM_MANY, DONE_MANY
from contestants.raw import DDL as RAW_DDL


async def settle(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def postgres_cpu_s() -> float:
    """CPU seconds of every process named postgres on this machine: utime+stime of the live ones
    plus cutime+cstime (the postmaster's reaped children: backends that exited meanwhile).
    Machine-wide: other sessions' queries count too."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.find("(") + 1 : data.rfind(")")]
        if comm != "postgres" and not comm.startswith("postgres"):
            continue
        fields = data[data.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / tick


def _proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def by_module(profile: cProfile.Profile, jobs: int, label: str) -> None:
    """Own time grouped by where the code lives (a pgqueue module, a package, a stdlib module)."""
    stats = pstats.Stats(profile)
    groups: dict[str, float] = {}
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tt
        if "/pgqueue/" in filename and "site-packages" not in filename:
            key = "pgqueue/" + filename.split("/pgqueue/", 1)[1]
        elif "site-packages/" in filename:
            key = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        elif filename.startswith("~") or filename == "<string>":
            key = f"builtins/C ({func.split(' ')[0] if func.startswith('<') else func})"[:60]
        else:
            key = "stdlib " + os.path.basename(filename)
        groups[key] = groups.get(key, 0.0) + tt
    print(f"\n--- cProfile {label}: own time by module (total {total / jobs * 1e6:.1f} µs/job "
          f"under the profiler) ---")
    for key, tt in sorted(groups.items(), key=lambda kv: -kv[1])[:18]:
        print(f"  {tt / total * 100:5.1f}%  {tt / jobs * 1e6:6.1f} µs/job  {key}")


def top(profile: cProfile.Profile, n: int, label: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(n)
    text = out.getvalue()
    body = text[text.find("   ncalls") :]
    print(f"\n--- cProfile {label}: top {n} by own time ---")
    print(body.rstrip())


def us(total_s: float, n: int) -> str:
    return f"{total_s / n * 1e6:8.1f} µs/job"


# --------------------------------------------------------------------------- enqueue

async def part_enqueue(dsn: str, n: int, many: bool, bulk: int, n_top: int) -> None:
    from pgqueue.migrate import upgrade

    await asyncio.to_thread(upgrade, dsn, SCHEMA)
    conn = await asyncpg.connect(dsn)
    await conn.execute(RAW_DDL)
    await settle(dsn)
    pgq, noop, _state = _make_queue(dsn)
    st = pgq.statements
    label = "enqueue_many" if many else "enqueue_one"

    def params(ids: list[int]) -> list[Any]:
        """The insert's parameters, made ready without the API (see ``Statements.insert``)."""
        args = json.dumps([[i] for i in ids]) if len(ids) > 1 else json.dumps([ids[0]])
        kwargs = json.dumps([{}] * len(ids)) if len(ids) > 1 else "{}"
        return [noop.name, noop.queue, noop.priority, args, kwargs, noop.max_attempts, None, None]

    # Each variant runs in blocks, interleaved round-robin, so drifts of a shared box (other
    # processes' fsyncs, checkpoints) hit them alike; the median block is reported.
    def blocks_of(ids_all: list[int]) -> list[list[int]]:
        per = max(1, len(ids_all) // rounds)
        return [ids_all[s:s + per] for s in range(0, len(ids_all), per)]

    async def api(ids: list[int]) -> None:
        if many:
            for s in range(0, len(ids), bulk):
                await noop.using(conn).enqueue_many(ids[s:s + bulk])
        else:
            for i in ids:
                await noop.using(conn).enqueue(i)

    async def statement(ids: list[int]) -> None:
        if many:
            for s in range(0, len(ids), bulk):
                chunk = ids[s:s + bulk]
                await conn.fetch(st.insert(many=len(chunk) > 1, unique=False), *params(chunk))
        else:
            for i in ids:
                await conn.fetch(st.insert(many=False, unique=False), *params([i]))

    async def raw(ids: list[int]) -> None:
        if many:
            for s in range(0, len(ids), bulk):
                await conn.execute("INSERT INTO raw_jobs (queue, payload) SELECT $1, unnest($2::jsonb[])",
                                   "default", [json.dumps({"i": i}) for i in ids[s:s + bulk]])
        else:
            for i in ids:
                await conn.execute("INSERT INTO raw_jobs (queue, payload) VALUES ($1, $2::jsonb)",
                                   "default", json.dumps({"i": i}))

    async def select1(ids: list[int]) -> None:
        for _ in range(len(ids) if not many else max(1, len(ids) // bulk)):
            await conn.fetchval("SELECT 1")

    def no_flush(fn):
        """The same with synchronous_commit off for this session: what is left without the
        WAL flush at commit (diagnostic only; pgqueue itself never changes it)."""
        async def run(ids: list[int]) -> None:
            await conn.execute("SET synchronous_commit = off")
            try:
                await fn(ids)
            finally:
                await conn.execute("RESET synchronous_commit")
        return run

    variants = {"api": api, "statement": statement,
                "raw INSERT": raw, "SELECT 1" + (" per chunk" if many else ""): select1,
                "api, no WAL flush": no_flush(api), "statement, no WAL flush": no_flush(statement),
                "raw INSERT, no WAL flush": no_flush(raw)}
    rounds = max(1, min(10, n // (bulk if many else 100)))
    try:
        for fn in variants.values():
            await fn(list(range(min(n, bulk if many else 50))))  # warm-up: prepared statements
        per_job: dict[str, list[float]] = {k: [] for k in variants}
        cpu_job: dict[str, list[float]] = {k: [] for k in variants}
        for block in blocks_of(list(range(n))):
            for k, fn in variants.items():
                c0, t0 = time.process_time(), time.perf_counter()
                await fn(block)
                per_job[k].append((time.perf_counter() - t0) / len(block))
                cpu_job[k].append((time.process_time() - c0) / len(block))
        results = {k: statistics.median(v) for k, v in per_job.items()}
        cpu = {k: statistics.median(v) for k, v in cpu_job.items()}
        print(f"\n=== {label}: N={n}" + (f" in chunks of {bulk}" if many else "")
              + f", {rounds} interleaved blocks per variant, median block ===")
        for k, v in results.items():
            print(f"  {k:28s} {v * 1e6:8.1f} µs/job   {1 / v:10,.0f} jobs/s   "
                  f"client CPU {cpu[k] * 1e6:6.1f} µs/job")
        py = results["api"] - results["statement"]
        print(f"  {'=> pgqueue Python overhead':28s} {py * 1e6:8.1f} µs/job   "
              f"({py / results['api'] * 100:.0f}% of the API time)")
        py = results["api, no WAL flush"] - results["statement, no WAL flush"]
        print(f"  {'=> Python overhead, no flush':28s} {py * 1e6:8.1f} µs/job")
        py = cpu["api"] - cpu["statement"]
        print(f"  {'=> Python CPU: api - stmt':28s} {py * 1e6:8.1f} µs/job (client process CPU)")
        sq = results["statement, no WAL flush"] - results["raw INSERT, no WAL flush"]
        print(f"  {'=> statement vs raw, no flush':28s} {sq * 1e6:8.1f} µs/job")
        profile = cProfile.Profile()
        profile.enable()
        await api(list(range(n)))
        profile.disable()
        by_module(profile, n, label)
        top(profile, n_top, label)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- drain

async def _prefilled(base: str, db: str, spec: str, n: int, bulk: int) -> tuple[Any, str, int, dict]:
    """A fresh database ``db`` holding ``n`` queued jobs of ``spec`` (contestant:variant), settled;
    returns the contestant, the DSN, the variant's concurrency and its other options."""
    name, variant = spec.split(":", 1)
    c = load(name)
    opts = dict(c.drain_variants[variant])
    concurrency = opts.pop("concurrency")
    await recreate_database(base, db)
    dsn = db_dsn(base, db)
    await c.install(dsn, "drain")
    await c.open_producer(dsn)
    for s in range(0, n, bulk):
        await c.enqueue_many(list(range(s, min(n, s + bulk))))
    await c.close_producer()
    await settle(dsn)
    return c, dsn, concurrency, opts


async def part_drain(base: str, db: str, spec: str, n: int, bulk: int, n_top: int) -> None:
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


# --------------------------------------------------------------------------- sql

async def part_sql(dsn: str, backlog: int, rounds: int) -> None:
    """Client-side time of each statement (round trip included), interleaved, median of rounds."""
    from pgqueue.migrate import upgrade

    await asyncio.to_thread(upgrade, dsn, SCHEMA)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(RAW_DDL)
        await conn.execute(
            f"INSERT INTO {SCHEMA}.jobs (task, queue, args) "
            f"SELECT 'noop', 'default', jsonb_build_array(g) FROM generate_series(1, $1) g", backlog)
        await conn.execute(
            "INSERT INTO raw_jobs (queue, payload) SELECT 'default', jsonb_build_object('i', g) "
            "FROM generate_series(1, $1) g", backlog)
        await settle(dsn)
        pgq, _noop, _ = _make_queue(dsn)
        st = pgq.statements
        wid = await conn.fetchval(st.register_worker, "profiler", os.getpid(), None, 100)
        claims = {
            "pgqueue claim_from_all_queues": (st.claim_from_all_queues, None),
            "pgqueue claim_from_queues": (st.claim_from_queues, ["default"]),
        }
        times: dict[str, list[float]] = {}

        async def timed(label: str, coro) -> Any:
            t = time.perf_counter()
            result = await coro
            times.setdefault(label, []).append(time.perf_counter() - t)
            return result

        for size in (100, 1):
            for r in range(rounds):
                for label, (sql, queues) in claims.items():
                    rows = await timed(f"{label}({size})", conn.fetch(sql, queues, size, wid))
                    k = len(rows)
                    args = ([row["id"] for row in rows], [row["attempts"] for row in rows],
                            ["succeeded"] * k, [None] * k, [None] * k, [0.0] * k)
                    await timed(f"pgqueue complete({size})", conn.fetch(st.complete, *args))
                rows = await timed(f"raw CLAIM_MANY({size})", conn.fetch(CLAIM_MANY, "default", size))
                await timed(f"raw DONE_MANY({size})", conn.execute(DONE_MANY, [row["id"] for row in rows]))
                if size == 1:
                    await timed("SELECT 1 (round-trip floor)", conn.fetchval("SELECT 1"))
                    await timed("asyncpg pool reset query (run on every pool release)",
                                conn.execute(conn.get_reset_query()))
        print(f"\n=== sql: client-side ms per statement (round trip included), median of {rounds} "
              f"interleaved rounds over a backlog of {backlog:,} queued rows ===")
        for k, v in times.items():
            print(f"  {k:56s} {statistics.median(v) * 1e3:7.3f} ms")
    finally:
        await conn.close()


async def main(a: argparse.Namespace) -> None:
    base, db = a.dsn_base, f"{a.db_prefix}prof"
    parts = a.parts.split(",")
    for part in parts:
        if part in ("enqueue_one", "enqueue_many", "sql"):
            await recreate_database(base, db)
            try:
                if part == "sql":
                    await part_sql(db_dsn(base, db), a.backlog, a.rounds)
                else:
                    await part_enqueue(db_dsn(base, db), a.n, part == "enqueue_many", a.bulk_size, a.top)
            finally:
                await recreate_database(base, db, drop_only=True)
        elif part == "drain":
            print(f"\n=== drain without profiler: N={a.n} ===")
            for spec in a.drain.split(","):
                await part_drain_plain(base, db, spec, a.n, a.bulk_size)
            for spec in a.drain.split(","):
                if spec.startswith("pgqueue") and a.top > 0:
                    await part_drain(base, db, spec, a.n, a.bulk_size, a.top)
        else:
            raise SystemExit(f"unknown part {part}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="enqueue_one,enqueue_many,drain,sql")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--drain", default="pgqueue:c32,pgqueue:c100,raw:batch100,raw:c32")
    p.add_argument("--backlog", type=int, default=20000, help="sql: queued rows to claim from")
    p.add_argument("--rounds", type=int, default=40, help="sql: claim+complete rounds")
    p.add_argument("--top", type=int, default=20, help="cProfile lines to show (0: no cProfile runs)")
    p.add_argument("--dsn-base", default=DEFAULT_DSN_BASE)
    p.add_argument("--db-prefix", default="bench_")
    p.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    args = p.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
