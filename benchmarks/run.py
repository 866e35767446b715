"""Side-by-side benchmark driver for Postgres job queues: pgqueue and its peers.

    python -m benchmarks.run            # pgqueue, raw, pgqueuer, procrastinate; N=20000, 3 reps
    python -m benchmarks.run --contestants pgqueue,raw --n 2000 --reps 1 --latency-n 200

Every measurement runs in its own subprocess (benchmarks.scenario) against a freshly
created database <prefix><contestant>, bounded by --timeout (the process group
is killed on expiry), and the database is dropped afterwards.  Contestants run
ALTERNATELY: for each repetition, for each scenario, every contestant in turn
(order rotated each repetition), so slow drifts of this noisy 2-core box hit
everyone alike.  Medians over --reps are reported, plus ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from .contestants import Contestant, load
from .harness import (
    BENCH_DIR,
    add_server_options,
    fmt,
    machine_info,
    measure_in_subprocess,
    missing_packages,
    remove_scratch,
    results_path,
    scratch_path,
    server_info,
    utc_now,
    write_json,
)
from .report import THROUGHPUT_KEY, print_summary, ratios, summarize, write_report

BASE_SCENARIOS = ["enqueue_single", "enqueue_bulk", "drain:c1", "drain:c32", "drain:extra", "latency"]


def expand(scenarios: list[str], contestant: Contestant) -> list[str]:
    """The concrete scenarios ``contestant`` runs: ``drain:extra`` becomes its own extra drain
    variants, and what it cannot do (a variant it lacks, bulk without a bulk API) is left out."""
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


def run_one(args: argparse.Namespace, contestant: str, scenario: str, rep: int) -> dict[str, Any]:
    res = measure_in_subprocess(
        "scenario",
        ["--contestant", contestant, "--scenario", scenario, "--n", str(args.n),
         "--bulk-size", str(args.bulk_size), "--latency-n", str(args.latency_n),
         "--interval-ms", str(args.interval_ms), "--loop", args.loop],
        dsn_base=args.dsn_base, db=f"{args.db_prefix}{contestant}",
        label=f"{contestant}_{scenario.replace(':', '_')}_{rep}", timeout=args.timeout)
    res.update(contestant=contestant, scenario=scenario, rep=rep)
    return res


def parse() -> argparse.Namespace:
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
    add_server_options(p)
    p.add_argument("--out", default=None, help="results JSON (default results/peers-<time>.json)")
    p.add_argument("--md", default=None, help="markdown report (default: next to the JSON, .md)")
    p.add_argument("--soak-minutes", type=float, default=6.0, help="--scenarios soak: minutes per contestant")
    return p.parse_args()


def runnable(names: str) -> list[str]:
    """The contestants named, less those whose packages are not installed (said so)."""
    contestants = []
    for c in filter(None, (c.strip() for c in names.split(","))):
        if missing := missing_packages(c):
            requirements = os.path.relpath(BENCH_DIR / "requirements.txt")
            print(f"skipping {c}: {', '.join(missing)} not installed (pip install -r {requirements})",
                  flush=True)
            continue
        contestants.append(c)
    if not contestants:
        raise SystemExit("no contestant left to run")
    return contestants


def main() -> None:
    args = parse()
    if "soak" in args.scenarios.split(","):  # the soak scenario has its own driver
        if args.scenarios != "soak":
            raise SystemExit("run --scenarios soak on its own")
        from . import soak

        soak.main(["--contestants", args.contestants, "--minutes", str(args.soak_minutes),
                   "--bulk-size", str(args.bulk_size), "--loop", args.loop, "--dsn-base", args.dsn_base,
                   "--db-prefix", args.db_prefix])
        return

    contestants = runnable(args.contestants)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    objs = {c: load(c) for c in contestants}
    started = utc_now()
    out = results_path(args.out, "peers", started)
    md_path = args.md or str(out.with_suffix(".md"))
    partial = scratch_path("partial.json")

    meta = {
        "machine": machine_info(),
        "postgres": asyncio.run(server_info(args.dsn_base)),
        "contestants": {c: {"versions": o.versions(), "describe": o.describe(),
                            "drain_variants": o.drain_variants,
                            "latency_variant": o.latency_variant} for c, o in objs.items()},
    }
    reproduce = ("# from the repository root\n"
                 "python -m venv benchmarks/.venv && benchmarks/.venv/bin/pip install -e . -r benchmarks/requirements.txt\n"
                 f"benchmarks/.venv/bin/python -m benchmarks.run --contestants {','.join(contestants)} --n {args.n} --reps {args.reps} "
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
                    write_json(partial, runs)
    summary = summarize(runs)
    doc = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": utc_now().isoformat(timespec="seconds"),
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
    write_json(out, doc)
    write_report(doc, str(out), md_path)
    remove_scratch()
    print_summary(doc)
    print(f"wrote {out} and {md_path}", flush=True)


if __name__ == "__main__":
    main()
