"""What one job costs the database over its whole life, side by side: ``benchmarks.cost``.

Per contestant (raw SQL, pgqueue, PgQueuer, procrastinate, awa), in a fresh database: N no-op jobs
enqueued one per transaction through one connection, then drained by one worker at concurrency 32.
Around each phase the server's counters are read, as ``shared/bench/scenario.py`` reads them
(``probe`` below): the WAL position, the database's commits, and the rows its tables took in,
updated (HOT or not) and deleted, and how many of those were rows of unlogged tables (which write
no WAL; pgqueue's ready ring is one). The WAL is also broken down by kind of record (row inserts,
updates, locks, index writes, commits...). Statements and round trips are counted on the wire
(``benchmarks.wire``). Index entries written are counted in the WAL itself (``pg_waldump
--stats``: B-tree leaf inserts, including those that split a page, and other index types'
inserts), since no statistics view counts them and a partial index takes only the rows its
predicate admits. Figures are per job.

WAL is cluster-wide, so by default the run starts a private PostgreSQL cluster of its own (the
binaries from tests/servers.py; as root it runs as the ``postgres`` user) where nothing else
writes, with autovacuum off so that no vacuum's WAL lands in a phase by chance (what a job
leaves to vacuum is its dead rows, counted as updates and deletes). ``--dsn-base URL`` uses a
server of yours instead (no index entries then). None of these figures depend on timing: a loaded
machine gives the same table.

    python -m benchmarks.cost                      # all five, N = 20,000 (a few minutes)
    python -m benchmarks.cost --contestants pgqueue,raw --n 500   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .contestants import load
from .harness import (
    REPO_ROOT, add_server_options, fmt, measure_in_subprocess, missing_packages, remove_scratch,
    results_path, run_async, settle, utc_now, write_json, write_markdown_with_reproduce,
)
from .wire import CountingProxy

CONTESTANTS = "raw,pgqueue,pgqueuer,procrastinate,awa"

PROBE = """
SELECT pg_current_wal_lsn()::text AS lsn,
       (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) AS commits,
       coalesce(sum(t.n_tup_ins), 0)::bigint AS inserted,
       coalesce(sum(t.n_tup_upd), 0)::bigint AS updated,
       coalesce(sum(t.n_tup_hot_upd), 0)::bigint AS hot_updated,
       coalesce(sum(t.n_tup_del), 0)::bigint AS deleted,
       coalesce(sum(t.n_tup_ins + t.n_tup_upd + t.n_tup_del)
                FILTER (WHERE c.relpersistence = 'u'), 0)::bigint AS unlogged_written
FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid
"""
FIGURES = ("wal_bytes", "commits", "statements", "round_trips", "rows_written", "unlogged_written",
           "inserted", "updated", "hot_updated", "deleted")
# WAL records that add one index entry each (PostgreSQL 15's record names).
INDEX_INSERTS = ("Btree/INSERT_LEAF", "Btree/INSERT_POST", "Btree/SPLIT_L", "Btree/SPLIT_R",
                 "Hash/INSERT", "Gin/INSERT", "Gist/PAGE_UPDATE", "SPGist/ADD_LEAF",
                 "BRIN/INSERT")
# What each kind of WAL record is for, in the breakdown of a job's WAL.
WAL_KINDS = (("Heap/INSERT", "row inserts"), ("Heap/UPDATE", "row updates"),
             ("Heap/HOT_UPDATE", "row updates"), ("Heap/DELETE", "row deletes"),
             ("Heap/LOCK", "row locks"), ("Heap2/LOCK", "row locks"),
             ("Heap2/MULTI_INSERT", "row inserts"), ("Heap2/", "page pruning, visibility"),
             ("Btree/", "index writes"), ("Hash/", "index writes"), ("Gin/", "index writes"),
             ("Transaction/", "commits"), ("XLOG/FPI", "full-page images"))
_RECORD = re.compile(r"^(\S+/\S+)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)"
                     r"\s+\(\s*[\d.]+\)\s+(\d+)")


def wal_records(waldump: str, waldir: str, start: str, end: str) -> dict[str, Any]:
    """Index entries written, full-page-image bytes, and the bytes of each kind of record
    (``WAL_KINDS``), between two WAL positions."""
    out = subprocess.run([waldump, "--stats=record", "-p", waldir, "-s", start, "-e", end],
                         capture_output=True, text=True, check=True).stdout
    entries = fpi = 0
    kinds: dict[str, int] = {}
    for line in out.splitlines():
        if match := _RECORD.match(line):
            if match[1] in INDEX_INSERTS:
                entries += int(match[2])
            fpi += int(match[4])
            kind = next((k for prefix, k in WAL_KINDS if match[1].startswith(prefix)), "other")
            kinds[kind] = kinds.get(kind, 0) + int(match[5])
    return {"index_entries": entries, "fpi_bytes": fpi, "wal_kinds": kinds}


async def probe(dsn: str) -> dict[str, Any]:
    """The counters now, read on a connection of its own (not counted on the wire). Backends
    report their statistics within a second of going idle, hence the wait."""
    await asyncio.sleep(1.5)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return dict(await conn.fetchrow(PROBE))
    finally:
        await conn.close()


async def _per_job(
    dsn: str, before: dict[str, Any], after: dict[str, Any], jobs: int
) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)",
                                  after["lsn"], before["lsn"])
    finally:
        await conn.close()
    delta = {k: after[k] - before[k] for k in before if k != "lsn"}
    delta["wal_bytes"] = float(wal)
    delta["rows_written"] = delta["inserted"] + delta["updated"] + delta["deleted"]
    return {k: round(delta[k] / jobs, 3) for k in FIGURES}


def _through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}{netloc[1]}127.0.0.1:{port}"))


async def one(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: one contestant's whole-life cost in the fresh database ``args.dsn``."""
    c = load(args.contestant)
    host = urlsplit(args.dsn).hostname or "127.0.0.1"
    proxy = CountingProxy(host, urlsplit(args.dsn).port or 5432).start()
    wired = _through(args.dsn, proxy.port)
    await c.install(args.dsn, "cost")
    await settle(args.dsn)

    async def mark() -> dict[str, Any]:
        return {**await probe(args.dsn), **proxy.snapshot()}

    await c.open_producer(wired)
    try:
        await c.enqueue_one(-1)  # connection set up and statements prepared, as in a live app
        start = await mark()
        for i in range(args.n):
            await c.enqueue_one(i)
    finally:
        await c.close_producer()
    enqueued = await mark()
    done = 0

    def on_job(_i: int) -> None:
        nonlocal done
        done += 1

    await c.run_worker(wired, 32, args.n + 1, on_job, **c.variant("c32")[1])
    drained = await mark()
    proxy.stop()
    phases = {"enqueue": (start, enqueued), "drain": (enqueued, drained), "whole": (start, drained)}
    result: dict[str, Any] = {}
    for name, (a, b) in phases.items():
        wire = {k: round((b[k] - a[k]) / args.n, 3) for k in ("statements", "round_trips")}
        result[name] = {**await _per_job(args.dsn, a, b, args.n), **wire}
        if args.waldir:
            records = wal_records(args.waldump, args.waldir, a["lsn"], b["lsn"])
            kinds = records.pop("wal_kinds")
            result[name].update({k: round(v / args.n, 3) for k, v in records.items()})
            result[name]["wal_kinds"] = {k: round(v / args.n, 1) for k, v in kinds.items()}
    finished = await c.count_done(args.dsn)
    return {"contestant": c.name, "versions": c.versions(), "n": args.n, "handler_calls": done,
            "verified_done": finished, "ok": finished == args.n + 1, "per_job": result}


def _table(runs: list[dict[str, Any]]) -> list[str]:
    names = [r["contestant"] for r in runs if r.get("ok")]
    lines = ["| per job, whole life (enqueue + c32 drain) | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    labels = {"wal_bytes": "WAL bytes", "commits": "commits", "statements": "statements",
              "round_trips": "round trips", "rows_written": "rows written (ins+upd+del)",
              "unlogged_written": "of which in unlogged tables (no WAL)",
              "inserted": "rows inserted", "updated": "rows updated",
              "hot_updated": "of which HOT (no index entry)", "deleted": "rows deleted",
              "index_entries": "index entries written (WAL records)",
              "fpi_bytes": "of the WAL: full-page images, bytes"}
    for key, label in labels.items():
        cells = [fmt(r["per_job"]["whole"].get(key), 0 if key.endswith("bytes") else 2)
                 for r in runs if r.get("ok")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for phase in ("enqueue", "drain"):
        cells = [f'{fmt(r["per_job"][phase]["wal_bytes"])} B, '
                 f'{fmt(r["per_job"][phase]["statements"], 2)} st' for r in runs if r.get("ok")]
        lines.append(f"| {phase} only: WAL, statements | " + " | ".join(cells) + " |")
    return lines


def _wal_table(runs: list[dict[str, Any]]) -> list[str]:
    """Where each contestant's WAL goes: bytes per job over its whole life, by kind of record."""
    done = [r for r in runs if r.get("ok") and "wal_kinds" in r["per_job"]["whole"]]
    if not done:
        return []
    kinds = sorted({k for r in done for k in r["per_job"]["whole"]["wal_kinds"]},
                   key=lambda k: -max(r["per_job"]["whole"]["wal_kinds"].get(k, 0) for r in done))
    lines = ["", "## Where the WAL goes (bytes per job, whole life, by kind of record)", "",
             "| kind of record | " + " | ".join(r["contestant"] for r in done) + " |",
             "|---|" + "---|" * len(done)]
    for kind in kinds:
        cells = [fmt(r["per_job"]["whole"]["wal_kinds"].get(kind, 0)) for r in done]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_options(p)
    p.set_defaults(dsn_base=None)
    p.add_argument("--contestants", default=CONTESTANTS)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out")
    p.add_argument("--role", default="parent", choices=["parent", "one"])
    p.add_argument("--contestant")
    p.add_argument("--dsn")
    p.add_argument("--waldir", help=argparse.SUPPRESS)
    p.add_argument("--waldump", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "one":
        write_json(args.out, run_async(one(args), args.loop))
        return
    started = utc_now()
    cluster = None
    wal: list[str] = []
    if args.dsn_base is None:
        import sys

        sys.path.insert(0, str(REPO_ROOT))
        from tests.servers import PG_BIN, Cluster

        if PG_BIN is None:
            raise SystemExit("no PostgreSQL server binaries found: pass --dsn-base URL")
        cluster = Cluster("bench-cost").initdb(autovacuum="off", wal_keep_size="8GB").start()
        args.dsn_base = cluster.url()
        wal = ["--waldir", str(cluster.data / "pg_wal"), "--waldump", str(PG_BIN / "pg_waldump")]
    runs = []
    try:
        for name in args.contestants.split(","):
            if missing := missing_packages(name):
                print(f"{name}: skipped, missing {', '.join(missing)}", flush=True)
                continue
            print(f"{name}: {args.n} jobs ...", flush=True)
            res = measure_in_subprocess(
                "cost", ["--role", "one", "--contestant", name, "--n", str(args.n),
                         "--loop", args.loop, *wal],
                dsn_base=args.dsn_base, db=f"{args.db_prefix}cost_{name}", label=f"cost-{name}",
                timeout=args.timeout)
            res.setdefault("contestant", name)
            runs.append(res)
            if not res.get("ok"):
                print(f"{name}: FAILED\n{res.get('error_tail', '')}", flush=True)
    finally:
        if cluster is not None:
            cluster.remove()
        remove_scratch()
    path = results_path(args.out, "cost", started)
    write_json(path, {"started": started.isoformat(), "n": args.n,
                      "server": "private cluster" if cluster else args.dsn_base, "runs": runs})
    title = f"# Cost per job, {args.n:,} no-op jobs ({started:%Y-%m-%d %H:%M} UTC)\n"
    lines = [title, *_table(runs), *_wal_table(runs), ""]
    write_markdown_with_reproduce(path.with_suffix(".md"), lines,
                                  f"python -m benchmarks.cost --n {args.n} "
                                  f"--contestants {args.contestants}")
    print("\n".join(lines))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
