"""Soak benchmark: throughput and table growth of a queue under sustained load.

    python -m benchmarks.soak --contestants pgqueue,raw,pgqueuer,procrastinate --minutes 6
    # same thing through the main driver:
    python -m benchmarks.run --contestants pgqueue,raw,pgqueuer,procrastinate --scenarios soak --soak-minutes 6

(needs matplotlib for the plot). A long run: not for a shared development box.
Writes results/soak-<date>.json, results/SOAK.md and results/soak-<date>.png.
The measuring processes are in soak_measure, the report in soak_report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
from typing import Any

import asyncpg

from .contestants import load
from .harness import (
    DEFAULT_DSN_BASE,
    RESULTS_DIR,
    add_server_options,
    admin_dsn,
    fmt,
    machine_info,
    measure_in_subprocess,
    remove_scratch,
    run_async,
    server_info,
    utc_now,
    write_json,
)
from .soak_measure import WORKER_VARIANT, role_run, role_worker
from .soak_report import (
    CLEANUP,
    METHOD,
    headline,
    headline_table,
    plot,
    window_rates,
    with_cleanup_notes,
    write_markdown,
)


def chaos_running() -> bool:
    """Whether a chaos run (this project's or the shared harness's) loads the machine now."""
    try:
        r = subprocess.run(["pgrep", "-f", "benchmarks.chaos|chaos/run.py"], capture_output=True,
                           text=True, timeout=5)
        return bool(r.stdout.strip())
    except Exception:  # noqa: BLE001 - no pgrep: report "not seen"
        return False


def run_contestant(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """One contestant's soak in its own process group and database; progress is echoed live."""
    chaos_before = chaos_running()
    res = measure_in_subprocess(
        "soak",
        ["--role", "run", "--contestant", name, "--minutes", str(args.minutes),
         "--backlog", str(args.backlog), "--bulk-size", str(args.bulk_size),
         "--sample-s", str(args.sample_s), "--loop", args.loop]
        + (["--hold-snapshot"] if args.hold_snapshot else []),
        dsn_base=args.dsn_base, db=f"{args.db_prefix}{name}", label=f"soak_{name}",
        timeout=args.timeout or int(args.minutes * 60 + 300), echo=True)
    res.update(contestant=name, chaos_running_before=chaos_before,
               chaos_running_after=chaos_running())
    if "error_tail" not in res:
        res["ok"] = bool(res.get("samples"))
    return res


async def autovacuum_settings(dsn_base: str) -> dict[str, str]:
    conn = await asyncpg.connect(admin_dsn(dsn_base))
    try:
        return {r["name"]: r["setting"] for r in await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', 'autovacuum_naptime', "
            "'autovacuum_vacuum_scale_factor', 'autovacuum_vacuum_threshold', "
            "'autovacuum_vacuum_insert_scale_factor', 'autovacuum_vacuum_cost_limit', "
            "'autovacuum_vacuum_cost_delay') ORDER BY name")} | {
            "autovacuum_source": await conn.fetchval(
                "SELECT coalesce(regexp_replace(sourcefile, '^.*/', 'server conf.d/'), source) FROM pg_settings WHERE name = 'autovacuum'")}
    finally:
        await conn.close()


def driver(args: argparse.Namespace) -> None:
    contestants = [c.strip() for c in args.contestants.split(",") if c.strip()]
    objs = {c: load(c) for c in contestants}
    started = utc_now()
    stamp = started.strftime("%Y-%m-%d")
    out = args.out or str(RESULTS_DIR / f"soak-{stamp}.json")
    png = args.png or str(RESULTS_DIR / f"soak-{stamp}.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    meta = {
        "machine": machine_info(),
        "postgres": asyncio.run(server_info(args.dsn_base)),
        "autovacuum": asyncio.run(autovacuum_settings(args.dsn_base)),
        "dsn_base": args.dsn_base,
        "contestants": {c: {"versions": o.versions(), "describe": o.describe(),
                            "worker_variant": o.drain_variants[WORKER_VARIANT]} for c, o in objs.items()},
    }
    extra_pkgs = "".join(f" '{pkg}=={ver}'" for c in contestants if c == "awa"  # not in the base list
                         for pkg, ver in meta["contestants"][c]["versions"].items())
    reproduce = ("# from the repository root\n"
                 "python -m venv benchmarks/.venv && benchmarks/.venv/bin/pip install -e . "
                 f"-r benchmarks/requirements.txt matplotlib{extra_pkgs}\n"
                 f"benchmarks/.venv/bin/python -m benchmarks.soak --contestants {','.join(contestants)} --minutes {args.minutes:g} "
                 f"--backlog {args.backlog} --bulk-size {args.bulk_size} --sample-s {args.sample_s:g} --loop {args.loop}"
                 + (" --hold-snapshot" if args.hold_snapshot else "")
                 + ("" if args.dsn_base == DEFAULT_DSN_BASE else f" --dsn-base {args.dsn_base}"))
    print(json.dumps(meta["machine"]), flush=True)
    runs = []
    for c in contestants:
        print(f"== soak {c}: {args.minutes:g} min" + (", snapshot held" if args.hold_snapshot else ""),
              flush=True)
        r = run_contestant(args, c)
        note = getattr(objs[c], "cleanup_note", None)  # fallback for contestants not in CLEANUP
        r["cleanup"], r["cleanup_detail"] = (CLEANUP.get(c) or ((note, note) if note else
                                             ("unknown", "not documented yet (set cleanup_note)")))
        if r.get("ok"):
            r["windows"] = window_rates(r["samples"])
            r["headline"] = headline(r, args.sample_s)
            h = r["headline"]
            print(f"== {c}: total {h['total_jobs']} jobs, first-min {fmt(h['first_min_jobs_per_s'])}/s, "
                  f"last-min {fmt(h['last_min_jobs_per_s'])}/s (x{fmt(h['ratio_last_first'], 2)}), "
                  f"tables at end {h['end_total_mb']:.1f} MB, "
                  f"job-table dead {h['end_job_table_dead']}", flush=True)
        else:
            print(f"== {c}: FAILED rc={r.get('rc')}\n{r.get('error_tail', '')[-1500:]}", flush=True)
        runs.append(r)
    doc = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": utc_now().isoformat(timespec="seconds"),
        "config": {"contestants": contestants, "minutes": args.minutes, "backlog": args.backlog,
                   "bulk_size": args.bulk_size, "sample_s": args.sample_s, "loop": args.loop,
                   "worker_variant": WORKER_VARIANT, "hold_snapshot": args.hold_snapshot},
        "meta": meta,
        "runs": runs,
        "reproduce": reproduce,
    }
    write_json(out, doc)
    remove_scratch()
    print("\n" + "\n".join(headline_table(doc)), flush=True)
    if args.minutes < 2:
        print("note: under 2 minutes the first and the last minute overlap; the ratio says nothing",
              flush=True)
    png_rel = None
    try:
        plot(doc, png)
        png_rel = os.path.relpath(png, os.path.dirname(os.path.abspath(args.md)))
    except Exception as e:  # noqa: BLE001
        print(f"plot failed: {e}", flush=True)
    write_markdown(doc, args.md, os.path.relpath(out, os.path.dirname(os.path.abspath(args.md))), png_rel)
    print(f"wrote {out}, {args.md}" + (f", {png}" if png_rel else ""), flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__ + "\n" + METHOD,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", default="driver", choices=["driver", "run", "worker"])
    p.add_argument("--contestants", default="pgqueue,raw,pgqueuer,procrastinate")
    p.add_argument("--contestant")
    p.add_argument("--dsn")
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--backlog", type=int, default=5000)
    p.add_argument("--bulk-size", type=int, default=1000)
    p.add_argument("--sample-s", type=float, default=30.0)
    p.add_argument("--hold-snapshot", action="store_true",
                   help="hold one idle REPEATABLE READ transaction (with an xid) open from the first "
                        "job to the end of each contestant's run, as a long report or a forgotten "
                        "session would: no row version dead since then can be vacuumed")
    p.add_argument("--timeout", type=int, default=0, help="seconds per contestant (default minutes*60+300)")
    add_server_options(p)
    p.add_argument("--max-s", type=float, default=3600.0, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="results JSON (default results/soak-<date>.json)")
    p.add_argument("--png", default=None, help="plot (default results/soak-<date>.png)")
    p.add_argument("--md", default=str(RESULTS_DIR / "SOAK.md"))
    p.add_argument("--report", default=None, help="only regenerate --md from this results JSON")
    p.add_argument("--also", action="append", help="with --report: add a supplementary run's JSON")
    p.add_argument("--replot", action="store_true", help="with --report: redraw the PNG too")
    p.add_argument("--notes", default=None, help="with --report: markdown inserted after the headline table")
    return p.parse_args(argv)


def rebuild_report(a: argparse.Namespace) -> None:
    """Regenerate --md (and with --replot the plot) from results: --report main.json [--also x.json]."""
    md_dir = os.path.dirname(os.path.abspath(a.md))

    def relative(path: str) -> str:
        return os.path.relpath(os.path.abspath(path), md_dir)

    with open(a.report) as f:
        doc = with_cleanup_notes(json.load(f))
    png = a.png or a.report[:-5] + ".png"
    if a.replot:
        plot(doc, png)
    also = []
    for path in a.also or []:
        with open(path) as f:
            also.append((with_cleanup_notes(json.load(f)), relative(path)))
    notes = open(a.notes).read() if a.notes else None
    write_markdown(doc, a.md, relative(a.report), relative(png) if os.path.exists(png) else None,
                   also, notes)
    print(f"wrote {a.md}")


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    if a.report:
        rebuild_report(a)
        return
    if a.role == "driver":
        driver(a)
        return

    async def measure() -> None:
        if a.role == "worker":
            await role_worker(a)
        else:
            res = await role_run(a)
            res.update(contestant=a.contestant, scenario="soak")
            write_json(a.out, res)

    run_async(measure(), a.loop)


if __name__ == "__main__":
    main()

