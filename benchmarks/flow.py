"""Flow control side by side: concurrency limit, rate limit, fairness between groups.

    python -m benchmarks.flow                       # every scenario, every contestant, one run
    python -m benchmarks.flow --contestants pgqueue --n-limit 100 --n-rate 60 --n-fair 300 \
        --n-drain 300 --reps 1                      # quick (the smoke test)

Each measurement runs in its own child process against a freshly created database (dropped
afterwards). Jobs are enqueued through the library's producer (``contestants/``), the limit is set
the way that library offers, then worker PROCESSES (``benchmarks.flow_workers``, the library's
public worker API) run a task that sleeps and records its own start and end. Every figure below
comes from those recorded times, never from a library's counters:

* **limit**: --processes (4) workers x --concurrency (16), a limit of --limit (5) on the queue,
  --n-limit jobs of --sleep-ms (20 ms): the most runs ever between their start and end at once,
  and jobs/s (jobs / (last end - first start)).
* **rate**: the same workers, a rate of --rate (50) starts per second, --n-rate jobs: the most
  starts in any 1 s sliding window, and jobs/s.
* **fair**: one worker process x --concurrency, --n-fair jobs of group A (--fair-sleep-ms, 5 ms)
  queued; once the worker has run --fair-warmup of them, one job of group B is enqueued; B's
  wait = its recorded start - the time its enqueue returned; the run goes on until every A job
  ran, so A's jobs/s (what fairness costs) compares. Peers have no groups (FIFO).
* **drain**: pgqueue only, the cost of a limit that does not bind on the fast path: --n-drain
  no-op jobs drained by one c32 worker process, unlimited and with concurrency=--drain-limit
  (1000), --reps times alternately; ratio of medians (target >= 0.8).
* **explain**: pgqueue only, the claim function with ``auto_explain`` (nested statements) on a
  backlog: unlimited, concurrency=5 with room, concurrency=5 full, group_concurrency=2; the
  plans and the statements per claim.

Writes results/flow-<time>.json and a markdown report beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import time
from typing import Any

import asyncpg

from .contestants import load
from .flow_workers import CREATE_RUNS, RUNS_TABLE
from .harness import (
    add_server_options,
    fmt,
    machine_info,
    measure_in_subprocess,
    missing_packages,
    module_command,
    now,
    prefill,
    remove_scratch,
    results_path,
    run_async,
    server_info,
    settle,
    utc_now,
    write_json,
    write_markdown_with_reproduce,
)

DRAIN_TARGET = 0.8
B_JOB = 1_000_000
POLL_S = 0.05


def entries(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Per scenario, who runs it and how each library is told the limit: ``pgqueue`` is given to
    ``configure_queue`` by the driver (in the database), ``worker`` to the worker processes;
    ``promise`` is what the library itself says it guarantees."""
    lim, rate = args.limit, args.rate
    return {
        "limit": [
            {"label": "pgqueue", "contestant": "pgqueue", "pgqueue": {"concurrency": lim},
             "setting": f"configure_queue(q, concurrency={lim})",
             "promise": f"at most {lim} running, all processes on all hosts together (counted in "
                        "the claim, in the database)"},
            {"label": "pgqueuer", "contestant": "pgqueuer", "worker": {"concurrency_limit": lim},
             "setting": f"@entrypoint(concurrency_limit={lim})",
             "promise": "per entrypoint; 1.6's docstring says enforced in SQL across all workers"},
            {"label": "awa", "contestant": "awa", "worker": {"max_workers": 1},
             "setting": f"queue max_workers=1 in each of {args.processes} processes",
             "promise": "max_workers is per process (0.6.9 has no cross-process limit; "
                        "global_max_workers is per runtime too): the nearest to "
                        f"{lim} over {args.processes} processes is {args.processes} x 1"},
            {"label": "procrastinate", "contestant": "procrastinate", "worker": {},
             "setting": "none (run unlimited)",
             "promise": "no limit available (a `lock` serializes jobs to 1 at a time)"},
        ],
        "rate": [
            {"label": "pgqueue", "contestant": "pgqueue", "pgqueue": {"rate": rate, "period": 1},
             "setting": f"configure_queue(q, rate={rate}, period=1)",
             "promise": f"at most {rate} starts in any 1 s, all processes together"},
            {"label": "awa", "contestant": "awa",
             "worker": {"rate_limit": [float(rate), 1], "max_workers": args.concurrency},
             "setting": f"queue rate_limit=({rate}.0, burst 1) in each process",
             "promise": "a token bucket in each worker runtime's dispatcher (read from 0.6.9's "
                        "API; nothing says it holds across processes)"},
            {"label": "pgqueuer", "contestant": "pgqueuer", "skip": True, "setting": "-",
             "promise": "not available (1.6 has no rate limit: requests_per_second was removed)"},
            {"label": "procrastinate", "contestant": "procrastinate", "skip": True,
             "setting": "-", "promise": "not available"},
        ],
        "fair": [
            {"label": f"pgqueue group_concurrency={4 * args.concurrency}", "contestant": "pgqueue",
             "group": True, "pgqueue": {"group_concurrency": 4 * args.concurrency},
             "setting": f"using(group=...), group_concurrency={4 * args.concurrency} (above what "
                        "one worker holds, claimed ahead included: the limit never binds alone)",
             "promise": "the next claim serves the group running least first"},
            {"label": "pgqueue group_concurrency=16", "contestant": "pgqueue", "group": True,
             "pgqueue": {"group_concurrency": args.concurrency},
             "setting": f"using(group=...), group_concurrency={args.concurrency} (= the worker's "
                        "concurrency: A alone keeps every slot)",
             "promise": "the next free slot goes to the group running least"},
            {"label": "pgqueue group_concurrency=8", "contestant": "pgqueue", "group": True,
             "pgqueue": {"group_concurrency": 8},
             "setting": "using(group=...), group_concurrency=8 (half the slots per group)",
             "promise": "as above; a group never holds more than 8"},
            {"label": "pgqueue no group limit", "contestant": "pgqueue", "group": True,
             "setting": "using(group=...), no limit: plain FIFO", "promise": "FIFO"},
            {"label": "pgqueuer", "contestant": "pgqueuer", "setting": "FIFO (no groups)",
             "promise": "no groups"},
            {"label": "procrastinate", "contestant": "procrastinate",
             "setting": "FIFO (no groups)", "promise": "no groups"},
            {"label": "awa", "contestant": "awa", "setting": "FIFO (no groups)",
             "promise": "no groups"},
        ],
    }


# --------------------------------------------------------------------------- measures

def most_at_once(runs: list[tuple[float, float]]) -> int:
    """The most runs between their start and end at once (an end before a start at a tie)."""
    edges = sorted([(s, 1) for s, _ in runs] + [(e, -1) for _, e in runs])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def most_in_window(starts: list[float], window: float = 1.0) -> int:
    """The most starts in any half-open window of ``window`` seconds."""
    ordered = sorted(starts)
    most = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


# --------------------------------------------------------------------------- one measurement

async def fetch_runs(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(f"SELECT job, started, ended, pid FROM {RUNS_TABLE}")
    finally:
        await conn.close()


class Workers:
    """``benchmarks.flow_workers`` processes in this process group (so a timeout's kill of the
    group takes them too); stopped by SIGTERM (graceful)."""

    def __init__(self, entry: dict[str, Any], dsn: str, count: int, concurrency: int,
                 sleep_ms: float, loop: str) -> None:
        cmd = module_command("flow_workers", "--contestant", entry["contestant"], "--dsn", dsn,
                             "--concurrency", str(concurrency), "--sleep-ms", str(sleep_ms),
                             "--limits", json.dumps(entry.get("worker", {})), "--loop", loop)
        self.procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True) for _ in range(count)]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> list[str]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        outputs = []
        for p in self.procs:
            try:
                out, _ = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            outputs.append(out[-1500:])
        return outputs


async def wait_rows(conn: asyncpg.Connection, workers: Workers, done: str, deadline: float) -> None:
    """Poll ``done`` (a query returning true when finished) until it holds."""
    while not await conn.fetchval(done):
        if not workers.alive():
            raise RuntimeError("a worker process exited early:\n" + "\n".join(workers.stop()))
        if now() > deadline:
            raise TimeoutError(f"not done after the deadline: {done}")
        await asyncio.sleep(POLL_S)


async def enqueue_group(dsn: str, ids: list[int], group: str, bulk: int) -> None:
    """pgqueue's jobs of one group, through ``using(conn, group=...)`` (public API)."""
    from .contestants.pgqueue import make_queue

    _pgq, noop, _state = make_queue(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, len(ids), bulk):
            await noop.using(conn, group=group).enqueue_many(ids[start:start + bulk])
    finally:
        await conn.close()


async def configure(dsn: str, limits: dict[str, Any] | None) -> None:
    if not limits:
        return
    from pgqueue import PgQueue

    from .pgqueue_internals import SCHEMA

    async with PgQueue(dsn=dsn, schema=SCHEMA) as pgq:
        await pgq.configure_queue("default", **limits)


async def role_measure(args: argparse.Namespace) -> dict[str, Any]:
    entry = entries(args)[args.scenario][args.entry]
    c = load(entry["contestant"])
    await c.install(args.dsn, "flow")
    conn = await asyncpg.connect(args.dsn)
    await conn.execute(CREATE_RUNS)
    fair = args.scenario == "fair"
    n = {"limit": args.n_limit, "rate": args.n_rate, "fair": args.n_fair}[args.scenario]
    if entry.get("group"):
        await enqueue_group(args.dsn, list(range(n)), "A", args.bulk_size)
    else:
        await prefill(c, args.dsn, n, args.bulk_size)
    await configure(args.dsn, entry.get("pgqueue"))
    await settle(args.dsn)
    workers = Workers(entry, args.dsn, 1 if fair else args.processes, args.concurrency,
                      args.fair_sleep_ms if fair else args.sleep_ms, args.loop)
    deadline = now() + args.timeout - 30
    result: dict[str, Any] = {"label": entry["label"], "n": n}
    try:
        if fair:
            await wait_rows(conn, workers, f"SELECT count(*) >= {args.fair_warmup} FROM "
                                           f"{RUNS_TABLE}", deadline)
            if entry.get("group"):
                await enqueue_group(args.dsn, [B_JOB], "B", 1)
            else:
                await c.open_producer(args.dsn)
                await c.enqueue_many([B_JOB])
                await c.close_producer()
            result["b_enqueued"] = time.time()
            # Then every A job too, so that A's jobs/s (what fairness costs) compares.
            await wait_rows(conn, workers, f"SELECT count(DISTINCT job) > {n} FROM {RUNS_TABLE}",
                            deadline)
        else:
            await wait_rows(conn, workers, f"SELECT count(DISTINCT job) >= {n} FROM {RUNS_TABLE}",
                            deadline)
    finally:
        outputs = workers.stop()
        await conn.close()
    runs = await fetch_runs(args.dsn)
    result.update(summarize(args, runs, result))
    if entry["contestant"] == "pgqueue" and not fair:
        result["pgqueue_claims"] = await claim_diagnostic(args.dsn, runs)
    result["worker_output_tail"] = [o for o in outputs if o.strip()][:2]
    return result


def summarize(args: argparse.Namespace, runs: list[asyncpg.Record],
              result: dict[str, Any]) -> dict[str, Any]:
    starts = [r["started"] for r in runs]
    span = max(r["ended"] for r in runs) - min(starts)
    out: dict[str, Any] = {"runs": len(runs), "distinct_jobs": len({r["job"] for r in runs}),
                           "processes_seen": len({r["pid"] for r in runs})}
    if args.scenario == "fair":
        b = min(r["started"] for r in runs if r["job"] == B_JOB)
        a_done = [r for r in runs if r["job"] != B_JOB]
        out.update(b_wait_s=b - result["b_enqueued"],
                   a_started_before_b=sum(1 for r in a_done if r["started"] < b),
                   a_jobs_per_s=len(a_done) / (max(r["ended"] for r in a_done)
                                               - min(r["started"] for r in a_done)),
                   most_a_at_once=most_at_once([(r["started"], r["ended"]) for r in a_done]))
        return out
    out.update(most_at_once=most_at_once([(r["started"], r["ended"]) for r in runs]),
               most_starts_in_1s=most_in_window(starts), jobs_per_s=len(runs) / span,
               span_s=span)
    return out


async def claim_diagnostic(dsn: str, runs: list[asyncpg.Record]) -> dict[str, Any]:
    """Beside the measure, pgqueue's own record: the most claims in any 1 s (what its rate limit
    counts) and how long after its claim each task started (a job claimed ahead of a free slot
    starts later than the claim counted it). Not used for the tables' figures."""
    from .pgqueue_internals import claim_times

    conn = await asyncpg.connect(dsn)
    try:
        claimed = await claim_times(conn)
    finally:
        await conn.close()
    lags = sorted(r["started"] - claimed[r["job"]] for r in runs if r["job"] in claimed)
    return {"most_claims_in_1s": most_in_window(list(claimed.values())),
            "start_after_claim_ms": {"p50": 1000 * statistics.median(lags),
                                     "max": 1000 * lags[-1]} if lags else None}


# --------------------------------------------------------------------------- pgqueue only

async def role_drain(args: argparse.Namespace) -> dict[str, Any]:
    """One c32 worker (this process) drains --n-drain no-op jobs, with or without a limit."""
    c = load("pgqueue")
    await c.install(args.dsn, "flow")
    await prefill(c, args.dsn, args.n_drain, args.bulk_size)
    limits = {"concurrency": args.drain_limit} if args.limited else None
    await configure(args.dsn, limits)
    await settle(args.dsn)
    concurrency, opts = c.variant("c32")
    t0 = now()
    await c.run_worker(args.dsn, concurrency, args.n_drain, lambda i: None, **opts)
    elapsed = now() - t0
    done = await c.count_done(args.dsn)
    if done != args.n_drain:
        raise RuntimeError(f"drained {done} of {args.n_drain}")
    return {"limits": limits, "elapsed_s": elapsed, "jobs_per_s": args.n_drain / elapsed}


async def role_explain(args: argparse.Namespace) -> dict[str, Any]:
    from pgqueue import PgQueue

    from . import pgqueue_internals as internals
    from .contestants.pgqueue import make_queue

    await asyncio.to_thread(internals.install_schema, args.dsn)
    backlog = args.explain_backlog
    conn = await asyncpg.connect(args.dsn)
    try:
        _pgq, noop, _s = make_queue(args.dsn)
        for queue in ("free", "limited"):
            await noop.using(conn, queue=queue).enqueue_many(list(range(backlog)))
        for g in range(10):
            await noop.using(conn, queue="grouped", group=f"g{g}").enqueue_many(
                list(range(backlog // 10)))
        async with PgQueue(dsn=args.dsn, schema=internals.SCHEMA) as pgq:
            await pgq.configure_queue("limited", concurrency=5)
            await pgq.configure_queue("grouped", group_concurrency=2)
            limits = {q: await pgq.queue_limits(q) for q in ("free", "limited", "grouped")}
        await settle(args.dsn)
        cases = [("unlimited queue (fast path)", ["free"]),
                 ("concurrency=5, 0 running (room 5)", ["limited"]),
                 ("concurrency=5, 5 running (full: the limit binds)", ["limited"]),
                 ("group_concurrency=2, 10 groups, 0 running", ["grouped"])]
        plans = []
        for i, (name, queues) in enumerate(cases):
            if i == 2:  # fill the limit: a committed claim holds 5 slots
                await internals.claim_now(conn, queues, 100)
            notices = await internals.explain_claim(conn, internals.statements_only(), queues, 100)
            plans.append({"case": name, "queues": queues, "statements": len(notices) - 1,
                          "queries": [statement_head(p) for p in notices], "plans": notices})
    finally:
        await conn.close()
    return {"backlog_per_queue": backlog, "limits": limits, "cases": plans}


def statement_head(notice: str) -> str:
    """The first line of an auto_explain notice's query text (which statement it was)."""
    text = notice.split("Query Text:", 1)[-1].strip()
    return " ".join(text.split())[:110]


# --------------------------------------------------------------------------- driver

def child_args(args: argparse.Namespace, role: str, *extra: str) -> list[str]:
    common = ["--role", role, "--loop", args.loop, "--timeout", str(args.timeout)]
    for name in ("n_limit", "n_rate", "n_fair", "n_drain", "limit", "rate", "processes",
                 "concurrency", "sleep_ms", "fair_sleep_ms", "fair_warmup", "bulk_size",
                 "drain_limit", "explain_backlog"):
        common += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return [*common, *extra]


def measure(args: argparse.Namespace, role: str, label: str, *extra: str) -> dict[str, Any]:
    db = f"{args.db_prefix}flow_{label}".replace("-", "_")[:60]
    res = measure_in_subprocess("flow", child_args(args, role, *extra), dsn_base=args.dsn_base,
                                db=db, label=label, timeout=args.timeout)
    res.setdefault("ok", True)
    return res


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    chosen = args.contestants.split(",")
    doc: dict[str, Any] = {"started": utc_now().isoformat(), "machine": machine_info(),
                           "uptime": uptime(), "args": vars(args), "scenarios": {}}
    doc["server"] = asyncio.run(server_info(args.dsn_base))
    for scenario, listed in entries(args).items():
        if scenario not in args.scenarios:
            continue
        rows = []
        for i, entry in enumerate(listed):
            if entry["contestant"] not in chosen:
                continue
            row = {k: entry[k] for k in ("label", "setting", "promise")}
            missing = missing_packages(entry["contestant"])
            if entry.get("skip") or missing:
                row.update(ok=None, note="not available" if entry.get("skip")
                           else f"skipped: missing {missing}")
            else:
                print(f"{scenario}: {entry['label']} ...", flush=True)
                row.update(measure(args, "measure", f"{scenario}{i}", "--scenario", scenario,
                                   "--entry", str(i)))
                if not row["ok"]:
                    print(row.get("error_tail", "")[-2000:], flush=True)
            rows.append(row)
        doc["scenarios"][scenario] = rows
    if "drain" in args.scenarios and "pgqueue" in chosen:
        runs = []
        for rep in range(args.reps):
            for limited in ((False, True) if rep % 2 == 0 else (True, False)):
                print(f"drain c32 rep {rep + 1}: {'limited' if limited else 'unlimited'} ...",
                      flush=True)
                res = measure(args, "drain", f"drain{rep}{int(limited)}",
                              *(["--limited"] if limited else []))
                res["limited"] = limited
                runs.append(res)
        doc["scenarios"]["drain"] = drain_summary(runs)
    if "explain" in args.scenarios and "pgqueue" in chosen:
        print("explain ...", flush=True)
        doc["scenarios"]["explain"] = measure(args, "explain", "explain")
    doc["uptime_at_end"] = uptime()
    return doc


def drain_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(limited: bool) -> float | None:
        vals = [r["jobs_per_s"] for r in runs if r.get("ok") and r["limited"] == limited]
        return statistics.median(vals) if vals else None

    free, limited = median(False), median(True)
    ratio = limited / free if free and limited else None
    return {"runs": runs, "unlimited_jobs_per_s": free, "limited_jobs_per_s": limited,
            "ratio": ratio, "target": DRAIN_TARGET,
            "met": None if ratio is None else ratio >= DRAIN_TARGET}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"loadavg {os.getloadavg()}"


# --------------------------------------------------------------------------- report

def report_lines(doc: dict[str, Any]) -> list[str]:
    a = doc["args"]
    sc = doc["scenarios"]
    lines = ["# Flow control side by side\n",
             (f"Started {doc['started']}; load at start: `{doc['uptime']}`; at end: "
             f"`{doc['uptime_at_end']}`. Every figure comes from the times the tasks recorded "
             "themselves (wall clock read in the task), never from a library's counters.\n")]

    def table(title: str, head: list[str], rows: list[list[str]]) -> None:
        lines.extend([f"## {title}\n", "| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows), ""])

    def failed(r: dict[str, Any]) -> str | None:
        if r.get("ok") is None:
            return r.get("note", "not run")
        return None if r.get("ok") else "FAILED (see JSON)"

    if "limit" in sc:
        table(f"Concurrency limit {a['limit']}: {a['processes']} worker processes x concurrency "
              f"{a['concurrency']}, {a['n_limit']} jobs of {a['sleep_ms']:g} ms",
              ["contestant", "setting", "most running at once", "jobs/s", "what it promises"],
              [[r["label"], r["setting"], failed(r) or str(r["most_at_once"]),
                failed(r) or fmt(r["jobs_per_s"]), r["promise"]] for r in sc["limit"]])
    if "rate" in sc:
        table(f"Rate limit {a['rate']}/s: same workers, {a['n_rate']} jobs",
              ["contestant", "setting", "most starts in any 1 s", "jobs/s", "what it promises"],
              [[r["label"], r["setting"], failed(r) or str(r["most_starts_in_1s"]),
                failed(r) or fmt(r["jobs_per_s"], 1), r["promise"]] for r in sc["rate"]])
        diag = next((r.get("pgqueue_claims") for r in sc["rate"] if r.get("pgqueue_claims")),
                    None)
        if diag and diag["start_after_claim_ms"]:
            lines.append(f"pgqueue's own record, for diagnosis only: at most "
                         f"{diag['most_claims_in_1s']} claims in any 1 s (what the limit counts); "
                         f"a task started {fmt(diag['start_after_claim_ms']['p50'], 1)} ms after "
                         f"its claim at the median, {fmt(diag['start_after_claim_ms']['max'], 1)}"
                         " ms at most.\n")
    if "fair" in sc:
        table(f"Fairness: {a['n_fair']} jobs of group A queued, one worker process x "
              f"{a['concurrency']}, jobs of {a['fair_sleep_ms']:g} ms; one job of group B "
              f"enqueued after {a['fair_warmup']} A jobs ran",
              ["contestant", "setting", "B waited (s)", "A jobs started before B",
               "A jobs/s (all of A)", "most A jobs running at once"],
              [[r["label"], r["setting"], failed(r) or fmt(r["b_wait_s"], 3),
                failed(r) or str(r["a_started_before_b"]),
                failed(r) or fmt(r["a_jobs_per_s"]), failed(r) or str(r["most_a_at_once"])]
               for r in sc["fair"]])
    if "drain" in sc:
        d = sc["drain"]
        verdict = {True: "met", False: "MISSED", None: "n/a"}[d["met"]]
        lines += [(f"## Drain c32, a limit that does not bind ({a['n_drain']} no-op jobs, one "
                  f"worker process, {a['reps']} reps alternating)\n"),
                  (f"unlimited {fmt(d['unlimited_jobs_per_s'])} jobs/s, concurrency="
                  f"{a['drain_limit']} {fmt(d['limited_jobs_per_s'])} jobs/s: ratio "
                  f"{fmt(d['ratio'], 2)} (target >= {DRAIN_TARGET}: {verdict})\n")]
    if "explain" in sc and sc["explain"].get("ok", True) and "cases" in sc["explain"]:
        e = sc["explain"]
        lines.append(f"## The claim with auto_explain ({e['backlog_per_queue']} jobs queued per "
                     "queue, claim of up to 100)\n")
        lines += ["| case | statements the function runs |", "|---|---|"]
        lines += [f"| {c['case']} | {c['statements']} |" for c in e["cases"]]
        lines.append("")
        for c in e["cases"]:
            lines += [f"### {c['case']}\n", "```", *c["plans"], "```\n"]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_options(p)
    p.add_argument("--role", default="driver", choices=["driver", "measure", "drain", "explain"])
    p.add_argument("--contestants", default="pgqueue,pgqueuer,procrastinate,awa")
    p.add_argument("--scenarios", default="limit,rate,fair,drain,explain")
    p.add_argument("--n-limit", type=int, default=2000)
    p.add_argument("--n-rate", type=int, default=500)
    p.add_argument("--n-fair", type=int, default=10000)
    p.add_argument("--n-drain", type=int, default=10000)
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--rate", type=int, default=50)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sleep-ms", type=float, default=20)
    p.add_argument("--fair-sleep-ms", type=float, default=5)
    p.add_argument("--fair-warmup", type=int, default=100)
    p.add_argument("--drain-limit", type=int, default=1000)
    p.add_argument("--explain-backlog", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out", default=None)
    p.add_argument("--md", default=None)
    p.add_argument("--dsn", help="(child roles) the database to use")
    p.add_argument("--scenario", help="(measure role)")
    p.add_argument("--entry", type=int, help="(measure role)")
    p.add_argument("--limited", action="store_true", help="(drain role)")
    args = p.parse_args()
    if args.role != "driver":
        role = {"measure": role_measure, "drain": role_drain, "explain": role_explain}[args.role]
        write_json(args.out, run_async(role(args), args.loop))
        return
    started = utc_now()
    out = results_path(args.out, "flow", started)
    doc = run_all(args)
    remove_scratch()
    write_json(out, doc)
    md = args.md or out.with_suffix(".md")
    lines = report_lines(doc)
    write_markdown_with_reproduce(md, lines, "python -m benchmarks.flow")
    print("\n".join(line for line in lines if not line.startswith("###")).split("## The claim")[0])
    if "explain" in doc["scenarios"] and "cases" in doc["scenarios"]["explain"]:
        for c in doc["scenarios"]["explain"]["cases"]:
            print(f"claim, {c['case']}: {c['statements']} statements")
            for q in c["queries"]:
                print(f"    {q}")
    print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
