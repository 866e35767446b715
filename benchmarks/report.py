"""The peer run's report: medians, ratios, the performance targets, and the markdown file.

Rebuild the report (and the printout) from a results JSON:

    python -m benchmarks.report benchmarks/results/peers-<time>.json [out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

from .harness import fmt, write_markdown_with_reproduce

THROUGHPUT_KEY = "jobs_per_s"


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

- Every measurement is its own subprocess (`benchmarks.scenario`) against a freshly created
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
    lines.append("- Postgres settings (untouched): " + ", ".join(f"{k}={v}" for k, v in pg["settings"].items()))
    for c in contestants:
        lines.append(f"- {c}: " + ", ".join(f"{k} {v}" for k, v in meta["contestants"][c]["versions"].items()))
    cfg = doc["config"]
    lines.append(f"- N={cfg['n']} no-op async jobs, reps={cfg['reps']}, bulk chunk={cfg['bulk_size']}, "
                 f"latency: {cfg['latency_n']} jobs every {cfg['interval_ms']} ms, event loop={cfg['loop']}, "
                 f"per-run timeout {cfg['timeout']} s\n")

    lines.append("## Throughput (median jobs/s over reps; [min–max])\n")
    scen_order = throughput_scenarios(doc)
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
    best_cells = [f"{fmt(b[0])} ({b[1]})" if (b := best_drain(summary, c)) else "—"
                  for c in contestants]
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
    write_markdown_with_reproduce(path, lines, doc["reproduce"])

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
    scen = throughput_scenarios(doc)
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



def throughput_scenarios(doc: dict[str, Any]) -> list[str]:
    """The throughput scenarios in the order they ran."""
    order: list[str] = []
    for r in doc["runs"]:
        if r["scenario"] != "latency" and r["scenario"] not in order:
            order.append(r["scenario"])
    return order


def write_report(doc: dict[str, Any], json_path: str, md_path: str) -> None:
    """The markdown report next to the JSON it was made from (linked relatively)."""
    rel = os.path.relpath(os.path.abspath(json_path), os.path.dirname(os.path.abspath(md_path)))
    write_markdown(doc, md_path, rel)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="a results/peers-<time>.json")
    p.add_argument("md", nargs="?", help="markdown report (default: next to the JSON, .md)")
    a = p.parse_args()
    md = a.md or os.path.splitext(a.results)[0] + ".md"
    with open(a.results) as f:
        report = json.load(f)
    write_report(report, a.results, md)
    print_summary(report)
    print(f"wrote {md}")
