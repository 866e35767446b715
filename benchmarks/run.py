"""Side-by-side benchmark driver for Postgres job queues: pgqueue and its peers.

    python benchmarks/run.py            # pgqueue, raw, pgqueuer, procrastinate; N=20000, 3 reps
    python benchmarks/run.py --contestants pgqueue,raw --n 2000 --reps 1 --latency-n 200

Every measurement runs in its own subprocess (scenario.py) against a freshly
created database bench_<contestant>, bounded by --timeout (the process group
is killed on expiry), and the database is dropped afterwards.  Contestants run
ALTERNATELY: for each repetition, for each scenario, every contestant in turn
(order rotated each repetition), so slow drifts of this noisy 2-core box hit
everyone alike.  Medians over --reps are reported, plus ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import asyncpg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import DEFAULT_DSN_BASE, admin_dsn, db_dsn, recreate_database, missing_packages  # noqa: E402
from contestants import load  # noqa: E402

BASE_SCENARIOS = ["enqueue_single", "enqueue_bulk", "drain:c1", "drain:c32", "drain:extra", "latency"]
THROUGHPUT_KEY = "jobs_per_s"


async def server_info(base: str) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_dsn(base))
    try:
        settings = {}
        for k in ("shared_buffers", "synchronous_commit", "fsync", "max_connections", "wal_level"):
            settings[k] = await conn.fetchval(f"SHOW {k}")
        return {
            "version": await conn.fetchval("SELECT version()"),
            "server_version": await conn.fetchval("SHOW server_version"),
            "settings": settings,
        }
    finally:
        await conn.close()


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "nproc_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "mem_total": mem,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_at_start": os.getloadavg(),
    }


def expand(scenarios: list[str], contestant) -> list[str]:
    out = []
    for s in scenarios:
        if s == "drain:extra":
            out += [f"drain:{v}" for v in contestant.drain_variants if v not in ("c1", "c32")]
        elif s.startswith("drain:"):
            if s.split(":", 1)[1] in contestant.drain_variants:
                out.append(s)
        elif s == "enqueue_bulk" and not contestant.supports_bulk:
            continue
        else:
            out.append(s)
    return out


def run_one(args, contestant: str, scenario: str, rep: int) -> dict[str, Any]:
    db = f"{args.db_prefix}{contestant}"
    dsn = db_dsn(args.dsn_base, db)
    scratch = os.path.join(HERE, "results", "scratch", str(os.getpid()))
    os.makedirs(scratch, exist_ok=True)
    out = os.path.join(scratch, f"{contestant}_{scenario.replace(':', '_')}_{rep}.json")
    if os.path.exists(out):
        os.unlink(out)
    asyncio.run(recreate_database(args.dsn_base, db))
    cmd = [
        sys.executable, os.path.join(HERE, "scenario.py"),
        "--contestant", contestant, "--dsn", dsn, "--scenario", scenario,
        "--n", str(args.n), "--bulk-size", str(args.bulk_size),
        "--latency-n", str(args.latency_n), "--interval-ms", str(args.interval_ms),
        "--loop", args.loop, "--out", out,
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=args.timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        rc = "timeout"
    wall = time.monotonic() - t0
    try:
        asyncio.run(recreate_database(args.dsn_base, db, drop_only=True))
    except Exception as e:  # noqa: BLE001
        print(f"  warning: drop {db} failed: {e}", flush=True)
    res: dict[str, Any] = {"contestant": contestant, "scenario": scenario, "rep": rep,
                           "rc": rc, "wall_s": wall}
    if rc == 0 and os.path.exists(out):
        with open(out) as f:
            res.update(json.load(f))
        os.unlink(out)
        res["rep"] = rep
    else:
        res["ok"] = False
        res["error_tail"] = (output or "")[-2000:]
    return res


def med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for r in runs:
        key = f"{r['contestant']}|{r['scenario']}"
        s = summary.setdefault(key, {"contestant": r["contestant"], "scenario": r["scenario"],
                                     "runs": 0, "ok_runs": 0, "values": {}})
        s["runs"] += 1
        if not r.get("ok"):
            continue
        s["ok_runs"] += 1
        fields = ["p50_ms", "p95_ms", "p99_ms", "max_ms"] if r["scenario"] == "latency" else [THROUGHPUT_KEY, "elapsed_s"]
        for fld in fields:
            s["values"].setdefault(fld, []).append(r.get(fld))
    for s in summary.values():
        s["median"] = {k: med(v) for k, v in s["values"].items()}
        s["min"] = {k: min(v) for k, v in s["values"].items() if v}
        s["max"] = {k: max(v) for k, v in s["values"].items() if v}
    return summary


def ratios(summary: dict[str, Any], contestants: list[str]) -> dict[str, Any]:
    """ratio[scenario][a][b] = median(a) / median(b) (throughput: >1 = a faster;
    latency p50/p95/p99: >1 = a slower)."""
    out: dict[str, Any] = {}
    scen = sorted({s["scenario"] for s in summary.values()})
    for sc in scen:
        metric = ["p50_ms", "p95_ms", "p99_ms"] if sc == "latency" else [THROUGHPUT_KEY]
        for m in metric:
            tab: dict[str, dict[str, float]] = {}
            for a in contestants:
                va = summary.get(f"{a}|{sc}", {}).get("median", {}).get(m)
                for b in contestants:
                    vb = summary.get(f"{b}|{sc}", {}).get("median", {}).get(m)
                    if a != b and va and vb:
                        tab.setdefault(a, {})[b] = va / vb
            out[f"{sc}:{m}"] = tab
    return out


METHOD = """\
## Method

- Every measurement is its own subprocess (`scenario.py`) against a freshly created
  database `bench_<contestant>`, dropped afterwards; each run is bounded by `--timeout`.
- Contestants run alternately: for each repetition, for each scenario, each contestant
  in turn (order rotated per repetition). Tables show the median over repetitions.
- `VACUUM ANALYZE` + `CHECKPOINT` on the bench database before every timed phase.
- **enqueue_single**: one producer connection, N sequential enqueues, each its own
  transaction (autocommit statement), after one warm-up enqueue.
- **enqueue_bulk**: the library's bulk API, one call (one statement/transaction) per
  chunk of `--bulk-size` jobs.
- **drain:<variant>**: N jobs pre-filled with the bulk API (untimed); then one worker in
  the measuring process; time = worker start → worker fully stopped after the N-th job
  started (includes worker startup, ~20–150 ms, and the graceful shutdown that persists
  the last completions). Each run verifies N jobs recorded done and 0 pending.
  `c1` / `c32` = concurrency 1 / 32 (library's closest setting, see configurations);
  extra variants (e.g. `batch100`) are each contestant's best batch setting.
- **latency**: an idle worker (contestant's `latency_variant`) in a separate process,
  LISTENing; after one warm-up job, the producer enqueues one job every `--interval-ms`
  (absolute schedule) for `--latency-n` jobs. latency = handler start (worker) − time the
  producer's enqueue call returned (commit acknowledged), both CLOCK_MONOTONIC.
  Per run p50/p95/p99 over the jobs; the table shows the median of those over reps.
- **raw** is no library: a bare table + partial index and asyncpg. `c1` = claim-one
  `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING` + mark-done
  UPDATE; `c32` = the same with 32 concurrent loops over a 4-connection pool;
  `batch100` = claim 100 per statement, complete with one `UPDATE … WHERE id = ANY($1)`.
  Its enqueue sends no NOTIFY (the libraries' enqueues do); a NOTIFY trigger is
  installed only for its latency run. `raw` rows are the physical limit of this box.
- **pgqueue** is driven through its public API only (`benchmarks/contestants/pgqueue.py`):
  `noop.using(conn).enqueue(i)` / `.enqueue_many(ids)` on the producer's one asyncpg
  connection, `pgq.worker(concurrency=N)` + `worker.stop()`. `c1`/`c32`/`c100`/`c200` =
  concurrency; the worker claims up to min(free slots, 100) jobs per statement and writes
  outcomes in batches. Defaults are durable (logged tables, synchronous_commit on).

## Caveats

- 2 cores shared by producer/worker Python processes and Postgres: absolute numbers
  are small and noisy; compare ratios measured in the same run, not across runs.
- pgqueuer `c1` is `max_concurrent_tasks=2, batch_size=1`: pgqueuer rejects a cap below
  2 × batch_size, so 2 in flight is its closest worker-level setting to 1.
  `c32` = cap 32, batch 16 (largest batch the cap allows); `batch100` = no cap,
  batch_size 100 (best of 10/32/100 in a short tuning pass). Its periodic log
  aggregation (default 30 s) and heartbeat buffers stay at defaults.
- procrastinate fetches one job per query whatever the concurrency; pool sizes 3–34
  and `delete_jobs=successful` were tried and made no measurable difference, so library
  defaults (psycopg pool size 4, keep finished jobs) are used. Its PsycopgConnector
  always creates the pool with `check=check_connection` (one extra round trip per
  checkout), which is part of the library as shipped.
- uvloop is used for every contestant (pgqueuer's CLI uses it; procrastinate's CLI uses
  plain asyncio, so its own CLI may be a little slower than shown).
- Latency can be understated by the producer's return path (~0.1 ms): NOTIFY fires at
  commit, before the producer sees the acknowledgement.
"""


def fmt(x: float | None, nd: int = 0) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def write_markdown(doc: dict[str, Any], path: str, json_rel: str) -> None:
    contestants = doc["config"]["contestants"]
    summary = doc["summary"]
    lines: list[str] = []
    meta = doc["meta"]
    lines.append("# Postgres job-queue peer benchmark\n")
    lines.append(f"Run: {doc['started_at']} → {doc['finished_at']} ({doc['duration_s']:.0f} s). "
                 f"Raw data: `{json_rel}`.\n")
    lines.append("## Machine and versions\n")
    m = meta["machine"]
    lines.append(f"- nproc: {m['nproc']} ({m['cpu_model']}), {m['mem_total']} RAM, {m['platform']}, Python {m['python']}; "
                 f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}")
    pg = meta["postgres"]
    lines.append(f"- PostgreSQL: {pg['version']}")
    lines.append(f"- Postgres settings (untouched): " + ", ".join(f"{k}={v}" for k, v in pg["settings"].items()))
    for c in contestants:
        lines.append(f"- {c}: " + ", ".join(f"{k} {v}" for k, v in meta["contestants"][c]["versions"].items()))
    cfg = doc["config"]
    lines.append(f"- N={cfg['n']} no-op async jobs, reps={cfg['reps']}, bulk chunk={cfg['bulk_size']}, "
                 f"latency: {cfg['latency_n']} jobs every {cfg['interval_ms']} ms, event loop={cfg['loop']}, "
                 f"per-run timeout {cfg['timeout']} s\n")

    lines.append("## Throughput (median jobs/s over reps; [min–max])\n")
    scen_order: list[str] = []
    for r in doc["runs"]:
        if r["scenario"] != "latency" and r["scenario"] not in scen_order:
            scen_order.append(r["scenario"])
    header = "| scenario | " + " | ".join(contestants) + " |"
    lines.append(header)
    lines.append("|" + "---|" * (len(contestants) + 1))
    for sc in scen_order:
        cells = []
        for c in contestants:
            s = summary.get(f"{c}|{sc}")
            if not s or not s["median"].get(THROUGHPUT_KEY):
                cells.append("—")
                continue
            cells.append(f"**{fmt(s['median'][THROUGHPUT_KEY])}** [{fmt(s['min'][THROUGHPUT_KEY])}–{fmt(s['max'][THROUGHPUT_KEY])}]"
                         + ("" if s["ok_runs"] == s["runs"] else f" ({s['ok_runs']}/{s['runs']} ok)"))
        lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    best_cells = []
    for c in contestants:
        cands = [(s["median"][THROUGHPUT_KEY], s["scenario"].split(":", 1)[1])
                 for s in summary.values()
                 if s["contestant"] == c and s["scenario"].startswith("drain:") and s["median"].get(THROUGHPUT_KEY)]
        best_cells.append(f"{fmt(max(cands)[0])} ({max(cands)[1]})" if cands else "—")
    lines.append("| drain, best variant | " + " | ".join(best_cells) + " |")
    lines.append("")

    lines.append("## End-to-end latency (ms, median over reps of each run's percentile)\n")
    lines.append("| contestant | variant | p50 | p95 | p99 | max |")
    lines.append("|---|---|---|---|---|---|")
    for c in contestants:
        s = summary.get(f"{c}|latency")
        if not s or not s["median"]:
            lines.append(f"| {c} | — | n/a | n/a | n/a | n/a |")
            continue
        var = meta["contestants"][c]["latency_variant"]
        md = s["median"]
        lines.append(f"| {c} | {var} | {fmt(md.get('p50_ms'), 2)} | {fmt(md.get('p95_ms'), 2)} | "
                     f"{fmt(md.get('p99_ms'), 2)} | {fmt(md.get('max_ms'), 2)} |")
    lines.append("")

    lines.append("## Ratios (row / column, medians)\n")
    lines.append("Throughput: >1 means the row contestant is faster. Latency: >1 means the row is slower.\n")
    for key, tab in doc["ratios"].items():
        if not tab:
            continue
        lines.append(f"**{key}**\n")
        lines.append("| row / col | " + " | ".join(contestants) + " |")
        lines.append("|" + "---|" * (len(contestants) + 1))
        for a in contestants:
            row = [("—" if a == b else (f"{tab.get(a, {}).get(b):.2f}" if tab.get(a, {}).get(b) else "n/a"))
                   for b in contestants]
            lines.append(f"| {a} | " + " | ".join(row) + " |")
        lines.append("")

    lines.append("## Targets (pgqueue, from the performance issue)\n")
    lines.append("| target | measured | status |")
    lines.append("|---|---|---|")
    for name, measured, ok in targets(doc):
        lines.append(f"| {name} | {measured} | {'met' if ok else ('MISSED' if ok is not None else 'n/a')} |")
    lines.append("")

    lines.append(METHOD)
    lines.append("## Configuration of each contestant\n")
    for c in contestants:
        lines.append(f"### {c}\n")
        lines.append("```json")
        lines.append(json.dumps(meta["contestants"][c]["describe"], indent=2, default=str))
        lines.append("```\n")
    failed = [r for r in doc["runs"] if not r.get("ok")]
    if failed:
        lines.append("## Failed / unverified runs\n")
        for r in failed:
            lines.append(f"- {r['contestant']} {r['scenario']} rep {r['rep']}: rc={r.get('rc')} "
                         f"{(r.get('error_tail') or '')[-300:]!r}")
        lines.append("")
    lines.append("## Reproduce\n")
    lines.append("```sh")
    lines.append(doc["reproduce"])
    lines.append("```\n")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def _median(summary: dict[str, Any], contestant: str, scenario: str, field: str) -> float | None:
    return summary.get(f"{contestant}|{scenario}", {}).get("median", {}).get(field)


def best_drain(summary: dict[str, Any], contestant: str) -> tuple[float, str] | None:
    cands = [(s["median"][THROUGHPUT_KEY], s["scenario"].split(":", 1)[1])
             for s in summary.values()
             if s["contestant"] == contestant and s["scenario"].startswith("drain:")
             and s["median"].get(THROUGHPUT_KEY)]
    return max(cands) if cands else None


# (label, kind, scenario of pgqueue, peer, scenario of the peer, wanted ratio or bound)
TARGETS = [
    ("drain c32 >= 3x PgQueuer c32", "ratio", "drain:c32", "pgqueuer", "drain:c32", 3.0),
    ("drain c32 >= 25x procrastinate c32", "ratio", "drain:c32", "procrastinate", "drain:c32", 25.0),
    ("best drain >= 60% of raw batch100", "ratio", "best", "raw", "drain:batch100", 0.6),
    ("enqueue single >= 80% of raw", "ratio", "enqueue_single", "raw", "enqueue_single", 0.8),
    ("enqueue bulk >= 70% of raw", "ratio", "enqueue_bulk", "raw", "enqueue_bulk", 0.7),
    ("enqueue bulk >= 2x PgQueuer", "ratio", "enqueue_bulk", "pgqueuer", "enqueue_bulk", 2.0),
    ("latency p50 <= 1.2 ms", "max", "latency", "p50_ms", None, 1.2),
    ("latency p99 <= 3 ms", "max", "latency", "p99_ms", None, 3.0),
]


def targets(doc: dict[str, Any], me: str = "pgqueue") -> list[tuple[str, str, bool | None]]:
    """Each target of the performance issue with the measured figure; ok is None without data."""
    summary = doc["summary"]
    out: list[tuple[str, str, bool | None]] = []
    if me not in doc["config"]["contestants"]:
        return out
    for label, kind, scenario, other, other_scenario, want in TARGETS:
        if kind == "max":
            v = _median(summary, me, scenario, other)
            out.append((label, "n/a" if v is None else f"{v:.2f} ms", None if v is None else v <= want))
            continue
        if scenario == "best":
            best = best_drain(summary, me)
            mine, note = (best[0], f" ({best[1]})") if best else (None, "")
        else:
            mine, note = _median(summary, me, scenario, THROUGHPUT_KEY), ""
        theirs = _median(summary, other, other_scenario, THROUGHPUT_KEY)
        if not mine or not theirs:
            out.append((label, "n/a", None))
            continue
        r = mine / theirs
        out.append((label, f"{r:.2f}x ({fmt(mine)} vs {fmt(theirs)} jobs/s{note})", r >= want))
    return out


def print_summary(doc: dict[str, Any], me: str = "pgqueue") -> None:
    """The tables a person wants at the end of a run, on stdout."""
    contestants = doc["config"]["contestants"]
    summary = doc["summary"]
    scen: list[str] = []
    for r in doc["runs"]:
        if r["scenario"] != "latency" and r["scenario"] not in scen:
            scen.append(r["scenario"])
    w = max([16] + [len(c) for c in contestants]) + 1
    print("\nThroughput, jobs/s (median over reps)", flush=True)
    print(f"{'scenario':18s}" + "".join(f"{c:>{w}s}" for c in contestants))
    for sc in scen:
        print(f"{sc:18s}" + "".join(f"{fmt(_median(summary, c, sc, THROUGHPUT_KEY)):>{w}s}"
                                    for c in contestants))
    print(f"{'drain best':18s}" + "".join(
        f"{(fmt(b[0]) + ' ' + b[1]) if (b := best_drain(summary, c)) else 'n/a':>{w}s}"
        for c in contestants))
    if any(f"{c}|latency" in summary for c in contestants):
        print("\nEnd-to-end latency, ms (median over reps of each run's percentile)")
        print(f"{'contestant':16s}{'variant':>10s}{'p50':>10s}{'p95':>10s}{'p99':>10s}{'max':>10s}")
        for c in contestants:
            md = summary.get(f"{c}|latency", {}).get("median", {})
            var = doc["meta"]["contestants"][c]["latency_variant"]
            print(f"{c:16s}{var:>10s}" + "".join(f"{fmt(md.get(k), 2):>10s}"
                                                 for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")))
    if me in contestants and len(contestants) > 1:
        others = [c for c in contestants if c != me]
        print(f"\nRatios {me} / peer (throughput: >1 = {me} faster; latency: <1 = {me} faster)")
        print(f"{'scenario':18s}" + "".join(f"{c:>{w}s}" for c in others))
        for sc in scen:
            mine = _median(summary, me, sc, THROUGHPUT_KEY)
            cells = []
            for c in others:
                theirs = _median(summary, c, sc, THROUGHPUT_KEY)
                cells.append(f"{mine / theirs:.2f}" if mine and theirs else "—")
            print(f"{sc:18s}" + "".join(f"{x:>{w}s}" for x in cells))
        mb = best_drain(summary, me)
        print(f"{'drain best/best':18s}" + "".join(
            f"{(mb[0] / b[0]) if mb and (b := best_drain(summary, c)) else float('nan'):>{w}.2f}"
            for c in others))
        for k in ("p50_ms", "p99_ms"):
            mine = _median(summary, me, "latency", k)
            cells = []
            for c in others:
                theirs = _median(summary, c, "latency", k)
                cells.append(f"{mine / theirs:.2f}" if mine and theirs else "—")
            print(f"{'latency ' + k[:3]:18s}" + "".join(f"{x:>{w}s}" for x in cells))
        rows = targets(doc, me)
        if rows:
            print(f"\nTargets for {me} (from the performance issue)")
            for label, measured, ok in rows:
                status = "met" if ok else ("MISSED" if ok is not None else "n/a")
                print(f"  {status:7s} {label:38s} {measured}")
    print(flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contestants", default="pgqueue,raw,pgqueuer,procrastinate",
                   help="comma list of contestants/<name>.py (also: awa)")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scenarios", default=",".join(BASE_SCENARIOS),
                   help="comma list from: " + ", ".join(BASE_SCENARIOS) + " (or drain:<variant>)")
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--latency-n", type=int, default=1000)
    p.add_argument("--interval-ms", type=float, default=10.0)
    p.add_argument("--timeout", type=int, default=300, help="seconds per single run")
    p.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    p.add_argument("--dsn-base", default=DEFAULT_DSN_BASE,
                   help="server where databases may be created (env PGQUEUE_BENCH_DSN); a DSN naming "
                        "a database works too: that database is used to CREATE/DROP the bench ones")
    p.add_argument("--db-prefix", default="bench_",
                   help="throw-away databases are named <prefix><contestant>")
    p.add_argument("--out", default=None, help="results JSON (default results/peers-<time>.json)")
    p.add_argument("--md", default=None, help="markdown report (default: next to the JSON, .md)")
    p.add_argument("--soak-minutes", type=float, default=6.0, help="--scenarios soak: minutes per contestant")
    args = p.parse_args()
    if "soak" in args.scenarios.split(","):  # the soak scenario has its own driver: soak.py
        if args.scenarios != "soak":
            raise SystemExit("run --scenarios soak on its own")
        import soak
        soak.main(["--contestants", args.contestants, "--minutes", str(args.soak_minutes),
                   "--bulk-size", str(args.bulk_size), "--loop", args.loop, "--dsn-base", args.dsn_base,
                   "--db-prefix", args.db_prefix])
        return

    contestants = []
    for c in (c.strip() for c in args.contestants.split(",")):
        if not c:
            continue
        if missing := missing_packages(c):
            print(f"skipping {c}: {', '.join(missing)} not installed "
                  f"(pip install -r {os.path.relpath(os.path.join(HERE, 'requirements.txt'))})",
                  flush=True)
            continue
        contestants.append(c)
    if not contestants:
        raise SystemExit("no contestant left to run")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    objs = {c: load(c) for c in contestants}
    started = dt.datetime.now(dt.timezone.utc)
    out = args.out or os.path.join(HERE, "results", f"peers-{started.strftime('%Y-%m-%dT%H%M%S')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    md_path = args.md or os.path.splitext(out)[0] + ".md"
    partial = os.path.join(HERE, "results", "scratch", str(os.getpid()), "partial.json")
    os.makedirs(os.path.dirname(partial), exist_ok=True)

    meta = {
        "machine": machine_info(),
        "postgres": asyncio.run(server_info(args.dsn_base)),
        "contestants": {c: {"versions": o.versions(), "describe": o.describe(),
                            "drain_variants": o.drain_variants,
                            "latency_variant": o.latency_variant} for c, o in objs.items()},
    }
    reproduce = ("# from the repository root\n"
                 "python -m venv benchmarks/.venv && benchmarks/.venv/bin/pip install -e . -r benchmarks/requirements.txt\n"
                 f"benchmarks/.venv/bin/python benchmarks/run.py --contestants {','.join(contestants)} --n {args.n} --reps {args.reps} "
                 f"--scenarios {','.join(scenarios)} --bulk-size {args.bulk_size} --latency-n {args.latency_n} "
                 f"--interval-ms {args.interval_ms:g} --timeout {args.timeout} --loop {args.loop}")
    print(json.dumps(meta["machine"]), flush=True)
    print(meta["postgres"]["version"], flush=True)

    runs: list[dict[str, Any]] = []
    t_start = time.monotonic()
    for rep in range(args.reps):
        order = contestants[rep % len(contestants):] + contestants[: rep % len(contestants)]
        for sc in scenarios:
            for c in order:
                for concrete in expand([sc], objs[c]):
                    r = run_one(args, c, concrete, rep)
                    runs.append(r)
                    val = (f"p50={fmt(r.get('p50_ms'), 2)} p95={fmt(r.get('p95_ms'), 2)} p99={fmt(r.get('p99_ms'), 2)} ms"
                           if concrete == "latency" else f"{fmt(r.get(THROUGHPUT_KEY))} jobs/s")
                    print(f"rep {rep} {concrete:16s} {c:14s} {val}  ok={r.get('ok')} "
                          f"wall={r['wall_s']:.1f}s", flush=True)
                    if not r.get("ok"):
                        print("   " + (r.get("error_tail") or "")[-800:].replace("\n", "\n   "), flush=True)
                    with open(partial, "w") as f:
                        json.dump(runs, f)
    finished = dt.datetime.now(dt.timezone.utc)
    summary = summarize(runs)
    doc = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "duration_s": time.monotonic() - t_start,
        "config": {"contestants": contestants, "scenarios": scenarios, "n": args.n, "reps": args.reps,
                   "bulk_size": args.bulk_size, "latency_n": args.latency_n, "interval_ms": args.interval_ms,
                   "timeout": args.timeout, "loop": args.loop},
        "meta": meta,
        "runs": runs,
        "summary": summary,
        "ratios": ratios(summary, contestants),
        "reproduce": reproduce,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    write_markdown(doc, md_path, os.path.relpath(os.path.abspath(out),
                                                  os.path.dirname(os.path.abspath(md_path))))
    if os.path.exists(partial):
        os.unlink(partial)
    try:
        os.rmdir(os.path.dirname(partial))
    except OSError:
        pass
    print_summary(doc)
    print(f"wrote {out} and {md_path}", flush=True)


if __name__ == "__main__":
    main()
