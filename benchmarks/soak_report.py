"""The soak's report: what it measured per window, the markdown (SOAK.md) and the plot."""

from __future__ import annotations

import json
from typing import Any

from .harness import fmt, write_markdown_with_reproduce
from .soak_measure import WORKER_VARIANT

METHOD = """\
Per contestant, in a freshly created database bench_<contestant> (dropped afterwards),
in its own process group bounded by --timeout (default minutes*60 + 300 s):

* install the schema, prefill --backlog jobs with the bulk API, ANALYZE + CHECKPOINT
  (no VACUUM: autovacuum stays at the server's defaults and is part of what is measured);
* start ONE worker process with the contestant's ``c32`` drain variant and the no-op
  handler (only the adapter interface of contestants/base.py is used, so a new
  contestant such as pgqueue needs no change here);
* t0 = the worker's first job.  Until t0 + minutes, one producer (its own connection)
  tops the backlog (enqueued - started) back up with --bulk-size batches of the bulk
  API (enqueue_one in a loop if the contestant has none) whenever it has dropped by a
  batch, i.e. the backlog stays between backlog - bulk_size and backlog;
* every --sample-s seconds (and at t0): jobs started by the worker so far (its handler
  counter, reported with CLOCK_MONOTONIC timestamps over a pipe), jobs enqueued, and
  from pg_stat_user_tables for every user table of the database (= the library's
  tables, the database is otherwise empty): pg_total_relation_size, heap and index
  size, n_live_tup, n_dead_tup, n_tup_ins/upd/del, autovacuum count, and count(*).
* with --hold-snapshot: at t0 one more connection opens a REPEATABLE READ transaction, takes an
  xid (SELECT txid_current()) and stays idle in it until the end sample (its state, xid and age
  then are in the JSON as holder_at_end): no VACUUM can remove what dies during the run;
* the final sample at t0 + minutes is the end state; then the producer stops and the
  worker process is terminated (SIGTERM, SIGKILL after 10 s) -- the adapter interface
  has no "stop now", and the end-state numbers are taken before that.
"""

# What each library does with finished jobs by default (read from the installed
# sources; see SOAK.md).  A contestant may declare ``cleanup_note`` on its adapter.
CLEANUP = {  # name -> (short, detail)
    "raw": ("keeps all (status 'done')",
            "no cleanup: finished rows stay in raw_jobs with status 'done'. 2 UPDATEs per job "
            "(claim, done); neither can be HOT because `status` is in the partial index's predicate, "
            "so every job leaves 2 dead tuples plus index entries."),
    "pgqueuer": ("deletes job row; keeps 3 log rows/job",
                 "a finished job's row is DELETEd from `pgqueuer` (the completion query is DELETE ... "
                 "RETURNING -> INSERT INTO pgqueuer_log); pgqueuer_log gets 3 rows per job (queued at "
                 "enqueue, picked at dequeue, successful at completion) and is never pruned by default "
                 "(only clear_queue_log() / TRUNCATE); every 30 s the worker's log aggregation "
                 "(log_aggregation_interval) UPDATEs all new log rows (aggregated = TRUE, 1 dead tuple "
                 "each) and upserts per-second counts into pgqueuer_statistics. The claim is an UPDATE "
                 "(status 'picked') so each job leaves 2 dead tuples in `pgqueuer` (UPDATE + DELETE). "
                 "`pgq autovac` (opt-in CLI) would set aggressive per-table autovacuum settings; "
                 "install() does not."),
    "procrastinate": ("keeps all (status 'succeeded') + 3 event rows/job",
                      "no cleanup by default: Worker(delete_jobs='never') keeps finished jobs in "
                      "procrastinate_jobs with status 'succeeded'; triggers add 3 rows per job to "
                      "procrastinate_events (deferred, started, succeeded). 2 UPDATEs per job "
                      "(todo->doing, doing->succeeded). Pruning is opt-in: delete_jobs='successful' / "
                      "'always', or scheduling the builtin remove_old_jobs task."),
    "awa": ("no row deletes; ring partitions TRUNCATEd when finished",
            "awa 0.6.9's queue storage never UPDATEs or DELETEs a job row: enqueue appends an "
            "immutable row to `awa.ready_entries` (LIST-partitioned by ready_slot, 16 partitions); "
            "a claim advances the lane's claim sequence and appends receipts (`lease_claims` or "
            "`lease_claim_batches`, `ready_claim_attempt_batches`); a successful completion appends "
            "one `receipt_completion_batches` row plus one `lease_claim_closure_batches` row per "
            "completion batch (failed/cancelled/wide rows go to `done_entries`). The maintenance "
            "leader rotates the queue ring every 1 s (16 slots; `queue_storage_queue_rotate_interval_ms` "
            "1000), the lease ring every 250 ms (8 slots) and the claim ring every 1 s (8 slots; its "
            "interval defaults to the queue ring's, awa-worker/src/storage.rs), and "
            "TRUNCATEs a sealed slot's partitions once nothing in it is live (ACCESS EXCLUSIVE "
            "with a lock_timeout, backing off when readers hold it), folding the completed count "
            "into `queue_terminal_rollups`. So finished jobs disappear a ring turn after their "
            "segment is sealed; no cleanup setting is needed (`completed_retention` applies only "
            "to the legacy canonical engine). Source: awa/client.py `AsyncClient.start` defaults, "
            "awa-model/src/queue_storage.rs, docs/configuration.md 'Retention and cleanup' and "
            "'Queue storage tuning' (github:hardbyte/awa v0.6.5)."),
}



# --------------------------------------------------------------------------- analysis

def window_rates(samples: list[dict[str, Any]]) -> list[dict[str, float]]:
    out = []
    for a, b in zip(samples, samples[1:]):
        ta, tb = a["started_t_s"] or a["t_s"], b["started_t_s"] or b["t_s"]
        out.append({"t_mid_s": (ta + tb) / 2, "t_end_s": b["t_s"],
                    "jobs": b["started"] - a["started"], "jobs_per_s": (b["started"] - a["started"]) / (tb - ta)})
    return out


def rate_between(samples: list[dict[str, Any]], i: int, j: int) -> float | None:
    if i < 0 or j >= len(samples) or i >= j:
        return None
    a, b = samples[i], samples[j]
    ta, tb = a["started_t_s"] or a["t_s"], b["started_t_s"] or b["t_s"]
    return (b["started"] - a["started"]) / (tb - ta)


def headline(res: dict[str, Any], sample_s: float) -> dict[str, Any]:
    s = res["samples"]
    per_min = max(1, int(round(60 / sample_s)))
    first = rate_between(s, 0, min(per_min, len(s) - 1))
    last = rate_between(s, max(0, len(s) - 1 - per_min), len(s) - 1)
    end = s[-1]
    jt = res.get("job_table")
    jt_end = end["tables"].get(jt, {}) if jt else {}
    return {
        "total_jobs": end["started"],
        "first_min_jobs_per_s": first,
        "last_min_jobs_per_s": last,
        "ratio_last_first": (last / first) if first and last else None,
        "end_total_mb": end["total_bytes"] / 2**20,
        "start_total_mb": s[0]["total_bytes"] / 2**20,
        "job_table": jt,
        "end_job_table_mb": jt_end.get("total_bytes", 0) / 2**20 if jt_end else None,
        "end_job_table_dead": jt_end.get("n_dead_tup"),
        "end_job_table_live": jt_end.get("n_live_tup"),
        "end_job_table_rows": jt_end.get("rows"),
        "end_job_table_autovacuums": jt_end.get("autovacuum_count"),
        "end_rows_all_tables": end["rows_all_tables"],
        "end_dead_all_tables": end["dead_all_tables"],
    }



def plot(doc: dict[str, Any], path: str) -> None:
    """jobs/s per window and total table size over time, one line per contestant (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"raw": "tab:green", "pgqueuer": "tab:blue", "procrastinate": "tab:orange", "pgqueue": "tab:red",
              "awa": "tab:purple"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for r in doc["runs"]:
        if not r.get("ok"):
            continue
        w = r["windows"]
        xs = [x["t_end_s"] / 60 for x in w]
        col = colors.get(r["contestant"])
        ax1.plot(xs, [x["jobs_per_s"] for x in w], marker="o", ms=3, label=r["contestant"], color=col)
        s = r["samples"]
        ax2.plot([x["t_s"] / 60 for x in s], [x["total_bytes"] / 2**20 for x in s], marker="o", ms=3,
                 label=r["contestant"], color=col)
    cfg = doc["config"]
    ax1.set_title(f"jobs/s per {cfg['sample_s']:g} s window (worker c32, backlog ~{cfg['backlog']})", fontsize=10)
    ax1.set_xlabel("minutes since first job")
    ax1.set_ylabel("jobs/s")
    ax1.set_ylim(bottom=0)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=9)
    ax2.set_title("library tables + indexes (pg_total_relation_size)", fontsize=10)
    ax2.set_xlabel("minutes since first job")
    ax2.set_ylabel("MB")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def headline_table(doc: dict[str, Any]) -> list[str]:
    L = ["| contestant | total jobs | first-min jobs/s | last-min jobs/s | last/first | "
         "tables+indexes MB at end | dead tuples at end (job table) | rows left in job table | "
         "rows in all tables | default cleanup of finished jobs |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        c = r["contestant"]
        if not r.get("ok"):
            L.append(f"| {c} | failed (rc={r.get('rc')}) | | | | | | | | |")
            continue
        h = r["headline"]
        L.append(f"| {c} | {fmt(h['total_jobs'])} | {fmt(h['first_min_jobs_per_s'])} | "
                 f"{fmt(h['last_min_jobs_per_s'])} | {fmt(h['ratio_last_first'], 2)} | "
                 f"{fmt(h['end_total_mb'], 1)} | {fmt(h['end_job_table_dead'])} | {fmt(h['end_job_table_rows'])} | "
                 f"{fmt(h['end_rows_all_tables'])} | {r['cleanup']} |")
    L.append("")
    return L


def end_state_table(doc: dict[str, Any]) -> list[str]:
    L = ["| contestant | table | MB (heap+idx+toast) | heap MB | index MB | rows | n_live_tup | n_dead_tup | "
         "inserts | updates (HOT) | deletes | autovacuums |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        if not r.get("ok"):
            continue
        tabs = r["samples"][-1]["tables"]
        for t, v in tabs.items():
            if v["total_bytes"] < 100 * 1024 and not v["rows"]:
                continue
            if v.get("parent") in tabs and tabs[v["parent"]].get("relkind") == "p":
                continue  # a partition: shown summed in its parent's row
            if v.get("relkind") == "p":
                t = f"{t} ({v.get('partitions')} partitions, summed)"
            L.append(f"| {r['contestant']} | {t} | {v['total_bytes'] / 2**20:.1f} | {v['heap_bytes'] / 2**20:.1f} | "
                     f"{v['index_bytes'] / 2**20:.1f} | {fmt(v['rows'])} | {fmt(v['n_live_tup'])} | "
                     f"{fmt(v['n_dead_tup'])} | {fmt(v['n_tup_ins'])} | {fmt(v['n_tup_upd'])} ({fmt(v['n_tup_hot_upd'])}) | "
                     f"{fmt(v['n_tup_del'])} | {v['autovacuum_count']} |")
    L.append("")
    return L


def write_markdown(doc: dict[str, Any], path: str, json_rel: str, png_rel: str | None,
                   also: list[tuple[dict[str, Any], str]] | None = None, notes: str | None = None) -> None:
    cfg, meta = doc["config"], doc["meta"]
    L: list[str] = []
    L.append("# Soak benchmark: sustained drain with a standing backlog\n")
    L.append(f"Run: {doc['started_at']} → {doc['finished_at']}. Raw data: `{json_rel}`"
             + (f", plot: `{png_rel}`" if png_rel else "") + ".\n")
    m = meta["machine"]
    L.append(f"- {m['nproc']} cores ({m['cpu_model']}), {m['platform']}, Python {m['python']}; "
             f"PostgreSQL {meta['postgres']['server_version']} "
             f"(settings untouched: {', '.join(f'{k}={v}' for k, v in meta['postgres']['settings'].items())})")
    av = meta["autovacuum"]
    L.append(f"- server: `{meta.get('dsn_base', '?')}`; autovacuum settings as found (not changed): "
             + ", ".join(f"{k}={v}" for k, v in av.items()))
    if av.get("autovacuum") == "off":
        L.append(f"- **autovacuum is OFF on this server** ({av.get('autovacuum_source', 'server config')}), and "
                 "the harness runs no VACUUM: dead tuples are only reclaimed by what the library itself "
                 "does plus PostgreSQL's on-access page pruning, so table growth below is the no-vacuum worst case.")
    for c in cfg["contestants"]:
        L.append(f"- {c}: " + ", ".join(f"{k} {v}" for k, v in meta["contestants"][c]["versions"].items())
                 + f"; worker = `{WORKER_VARIANT}` drain variant {json.dumps(meta['contestants'][c]['worker_variant'])}")
    L.append(f"- {cfg['minutes']:g} min per contestant (one after another), backlog ~{cfg['backlog']} "
             f"(topped up in bulk batches of {cfg['bulk_size']}), sample every {cfg['sample_s']:g} s, "
             f"no-op async handler, event loop {cfg['loop']}")
    if cfg.get("hold_snapshot"):
        L.append("- **snapshot held**: one idle REPEATABLE READ transaction with an xid, opened at each "
                 "contestant's first job and kept to the end of its run, so no vacuum could reclaim "
                 "the row versions that died during it")
    chaos = [r["contestant"] for r in doc["runs"] if r.get("chaos_running_before") or r.get("chaos_running_after")]
    L.append("- other load: " + (f"chaos harness was running during {', '.join(chaos)} (contention)" if chaos
                                   else "chaos harness not running at the start or end of any run (pgrep; per-sample load averages are in the JSON)") + "\n")
    L.append("## Headline\n")
    L += headline_table(doc)
    if notes:
        L.append(notes.strip() + "\n")
    L.append("Default cleanup of finished jobs (read from the installed sources):\n")
    for r in doc["runs"]:
        L.append(f"- **{r['contestant']}**: {r.get('cleanup_detail', r.get('cleanup'))}")
    L.append("")
    L.append("Job table: " + "; ".join(f"{r['contestant']} = `{r.get('job_table')}`"
                                       + ("" if r.get("job_table_how") == "declared" else f" ({r.get('job_table_how')})")
                                       for r in doc["runs"] if r.get("ok")) + ".\n")
    L.append("## End state per table\n")
    L += end_state_table(doc)
    L.append("## jobs/s per window\n")
    runs_ok = [r for r in doc["runs"] if r.get("ok")]
    if runs_ok:
        n = max(len(r["windows"]) for r in runs_ok)
        L.append("| window end (s) | " + " | ".join(r["contestant"] for r in runs_ok) + " |")
        L.append("|" + "---|" * (len(runs_ok) + 1))
        for i in range(n):
            t = next((r["windows"][i]["t_end_s"] for r in runs_ok if i < len(r["windows"])), 0)
            cells = [fmt(r["windows"][i]["jobs_per_s"]) if i < len(r["windows"]) else "" for r in runs_ok]
            L.append(f"| {t:.0f} | " + " | ".join(cells) + " |")
        L.append("")
    if png_rel:
        L.append(f"![jobs/s and table size over time]({png_rel})\n")
    for extra, rel in (also or []):
        av = extra["meta"]["autovacuum"]
        # optional keys of a supplementary JSON: "title" (heading), "label" (text under it),
        # "show_tables" (also list its end state per table), "notes" (text after its table)
        L.append("## " + (extra.get("title") or
                          f"Supplementary run: `{extra['meta'].get('dsn_base')}`, autovacuum={av.get('autovacuum')}")
                 + "\n")
        if extra.get("label"):
            L.append(extra["label"] + "\n")
        L.append(f"Run {extra['started_at']} → {extra['finished_at']}, same settings otherwise; raw data `{rel}`"
                 + (f", plot `{rel[:-5]}.png`" if rel.endswith(".json") else "") + ". Autovacuum settings: "
                 + ", ".join(f"{k}={v}" for k, v in av.items()) + ".\n")
        L += headline_table(extra)
        if extra.get("notes"):
            L.append(extra["notes"].strip() + "\n")
        if extra.get("show_tables"):
            L.append("Default cleanup of finished jobs (read from the installed sources):\n")
            L += [f"- **{r['contestant']}**: {r.get('cleanup_detail', r.get('cleanup'))}" for r in extra["runs"]]
            L.append("")
            L.append("Job table: " + "; ".join(f"{r['contestant']} = `{r.get('job_table')}`" for r in extra["runs"]
                                               if r.get("ok")) + ". End state per table (partitions summed):\n")
            L += end_state_table(extra)
        L.append("```sh\n" + extra["reproduce"] + "\n```\n")
        L.append("Autovacuum runs on the job table during the run: " + "; ".join(
            f"{r['contestant']} {r['headline']['end_job_table_autovacuums']}" for r in extra["runs"] if r.get("ok")) + ".\n")
    if doc.get("merged_from"):
        L.append("Merged from: " + "; ".join(f"`{k}` ({v})" for k, v in doc["merged_from"].items()) + ".\n")
    L.append("## Method\n")
    L.append(METHOD)
    L.append("jobs/s = handler starts (the no-op handler returns at once) per window, timed by the worker's own "
             "CLOCK_MONOTONIC reports; first minute = t0 → t0+60 s, last minute = the last 60 s. "
             "Table sizes/tuple counts are the whole database's user tables, i.e. the library's tables "
             "(statistics lag up to ~1 s behind the backends). Only one repetition per contestant: "
             "compare shapes (drift, growth) rather than small throughput differences.\n")
    write_markdown_with_reproduce(path, L, doc["reproduce"])


def with_cleanup_notes(doc: dict[str, Any]) -> dict[str, Any]:
    """Results written before the cleanup notes had two parts get both from CLEANUP."""
    for r in doc["runs"]:
        if "cleanup_detail" not in r and r["contestant"] in CLEANUP:
            r["cleanup"], r["cleanup_detail"] = CLEANUP[r["contestant"]]
    return doc
